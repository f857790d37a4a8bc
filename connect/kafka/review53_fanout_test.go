package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/stage"
)

type r53Part struct {
	p        int32
	off      int64
	part     string
	attempts int
}

// TestReview53FanOutRetry: a record fans out (FlatMap) to two outputs; one
// fails in a Forward stage on its first attempt, so its forwarded *stage.Error
// reaches the sink.
//
// Doc sentences checked: package doc "A record that failed (a forwarded
// *stage.Error ...) holds the watermark: it is tried again, up to Attempts
// times, then sent to the DeadLetter topic; without one, the run fails";
// stage.Ack "An item that fans out ... is done when all its outputs are".
// With Attempts(2) the record must come back with Attempts 2 and, once it and
// everything else is committed, the drained run commits one past the last
// offset of each partition. With Attempts(1) and no dead-letter topic, the run
// must fail, and the committed offset of that partition must not pass it.
func TestReview53FanOutRetry(t *testing.T) {
	const parts, perPart = 2, 10
	const badP, badOff = 1, 4
	for _, attempts := range []int{2, 1} {
		t.Run("attempts"+string(rune('0'+attempts)), func(t *testing.T) {
			_, addrs := newCluster(t, parts, "t")
			for p := range int32(parts) {
				produceTo(t, addrs, "t", p, int(p)*perPart, perPart)
			}
			group := "g"
			stopCtx, drain := context.WithCancel(context.Background())
			defer drain()
			src := stage.Until(kafka.Source(memberOpts(addrs, group, "t"), decodeInt, kafka.Attempts(attempts)), stopCtx)
			fan := stage.FlatMap(src, func(ctx context.Context, r kafka.Record[int]) ([]r53Part, error) {
				return []r53Part{{r.Partition, r.Offset, "a", r.Attempts}, {r.Partition, r.Offset, "b", r.Attempts}}, nil
			})
			failing := stage.Map(fan, func(ctx context.Context, x r53Part) (r53Part, error) {
				if x.p == badP && x.off == badOff && x.part == "b" && x.attempts == 1 {
					return x, errR53Boom
				}
				return x, nil
			}, stage.OnError(stage.Forward))
			done := map[string]map[string]bool{}
			retried := false
			forwarded := 0
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			err := stage.Run(ctx, failing, func(ctx context.Context, x r53Part, err error) error {
				if err != nil {
					if !errors.Is(err, errR53Boom) {
						t.Errorf("forwarded error %v does not wrap errR53Boom", err)
					}
					forwarded++
					return nil
				}
				pl := place(x.p, x.off)
				if done[pl] == nil {
					done[pl] = map[string]bool{}
				}
				done[pl][x.part] = true
				if x.p == badP && x.off == badOff && x.attempts == 2 {
					retried = true
				}
				all := len(done) == parts*perPart
				for _, d := range done {
					all = all && len(d) == 2
				}
				if all {
					drain()
				}
				return nil
			})
			got := committedNow(t, addrs, group, "t", parts)
			if attempts == 2 {
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				if !retried {
					t.Errorf("record %d/%d was not tried again with Attempts 2", badP, badOff)
				}
				for p := range int32(parts) {
					if got[p] != perPart {
						t.Errorf("partition %d: committed %d at the stop, want %d (all settled)", p, got[p], perPart)
					}
				}
				return
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("run hung (watchdog); got %v", err)
			}
			if err == nil {
				t.Errorf("Attempts(1) without a dead-letter topic: run returned nil after a failed record")
			}
			if got[badP] > badOff {
				t.Errorf("partition %d: committed %d, past the failed record %d", badP, got[badP], badOff)
			}
			if retried {
				t.Errorf("record tried again despite Attempts(1)")
			}
		})
	}
}
