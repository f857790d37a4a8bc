package kafka_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/stage"
)

// TestReview53UnbatchOwnAcks: Batch then Unbatch, then a Forward stage that
// fails one record once.
//
// Doc sentences checked: stage.Unbatch "Straight after a Batch, each element
// takes back its own item's acknowledgement (see Ack), so that elements are
// settled one by one"; kafka "A record that failed (a forwarded *stage.Error
// ...) ... is tried again". Only the failed record may come back (Attempts 2);
// its batch-mates were committed and must not be tried again. The drained run
// then commits to the end of the partition.
//
// A second variant puts a Map between Batch and Unbatch ("elsewhere they
// share their slice's"): then the whole batch must be tried again.
func TestReview53UnbatchOwnAcks(t *testing.T) {
	const n, bad = 12, 5
	for _, straight := range []bool{true, false} {
		name := "straight"
		if !straight {
			name = "mapped"
		}
		t.Run(name, func(t *testing.T) {
			_, addrs := newCluster(t, 1, "t")
			produceTo(t, addrs, "t", 0, 0, n)
			stopCtx, drain := context.WithCancel(context.Background())
			defer drain()
			src := stage.Until(kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.Attempts(3)), stopCtx)
			// A timeout, so that a record tried again alone is flushed (with 0 a
			// batch leaves only when full: a lone retry would wait for ever).
			batches := stage.Batch(src, 4, 20*time.Millisecond)
			var mu sync.Mutex
			var mates []int64 // the first batch that held the bad record (mapped)
			if !straight {
				batches = stage.Map(batches, func(ctx context.Context, b []kafka.Record[int]) ([]kafka.Record[int], error) {
					mu.Lock()
					defer mu.Unlock()
					for _, r := range b {
						if r.Offset == bad && r.Attempts == 1 {
							for _, m := range b {
								mates = append(mates, m.Offset)
							}
						}
					}
					return b, nil
				})
			}
			retried := map[int64]int{}
			failing := stage.Map(stage.Unbatch(batches), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
				if r.Attempts > 1 {
					mu.Lock()
					retried[r.Offset] = r.Attempts
					mu.Unlock()
				}
				if r.Offset == bad && r.Attempts == 1 {
					return r, errR53Boom
				}
				return r, nil
			}, stage.OnError(stage.Forward))
			done := map[int64]bool{}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			err := stage.Run(ctx, failing, func(ctx context.Context, r kafka.Record[int], err error) error {
				if err != nil {
					return nil
				}
				done[r.Offset] = true
				if len(done) == n {
					mu.Lock()
					ok := retried[bad] > 0
					mu.Unlock()
					if ok {
						drain()
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if straight {
				for off := range retried {
					if off != bad {
						t.Errorf("record %d was tried again though only %d failed (retried %v)", off, bad, retried)
					}
				}
			} else {
				for _, off := range mates {
					if retried[off] == 0 {
						t.Errorf("record %d shares its batch's failure but was not tried again (retried %v)", off, retried)
					}
				}
				if len(mates) < 2 {
					t.Logf("the bad record's batch held %v: the variant proves little", mates)
				}
			}
			if got := committedNow(t, addrs, "g", "t", 1); got[0] != n {
				t.Errorf("committed %d at the stop, want %d", got[0], n)
			}
		})
	}
}
