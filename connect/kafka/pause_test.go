package kafka_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// "Each partition holds at most MaxPending records that are not settled",
// also when a settlement gives a full partition room while a poll is in
// flight. The poll was sized without that partition (it was full), so it
// must not bring the partition's records: with MaxPending(k), partition 0
// full and partition 1 idle, the poll in flight may bring k records. The
// settlement of partition 0's first record then gives room for 1, and no
// more than k of partition 0's records may be out at once.
//
// The hook holds the settlement for a while after it freed the room and
// before it ends the poll: a source that resumed the partition in the
// client at the settlement (as this one did) lets that poll bring k more
// records in the meantime. The pause only widens that window; no verdict
// depends on how long it lasts.
func TestSettlementDuringAPollKeepsMaxPending(t *testing.T) {
	const k, n = 4, 30
	_, addrs := newCluster(t, 2, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, n)
	var once sync.Once
	defer kafka.SetResumeHook(func() { once.Do(func() { time.Sleep(500 * time.Millisecond) }) })()

	first := make(chan struct{}) // lets offset 0 of partition 0 go
	rest := make(chan struct{})  // lets every other record of partition 0 go
	var mu sync.Mutex
	taken, out, maxOut := 0, 0, 0
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.MaxPending(k), kafka.CommitInterval(5*time.Millisecond))
	rows := stage.Map(stage.Until(recs, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Partition != 0 {
			return r, nil
		}
		mu.Lock()
		taken++
		out++
		maxOut = max(maxOut, out)
		mu.Unlock()
		gate := rest
		if r.Offset == 0 {
			gate = first
		}
		select {
		case <-gate:
			return r, nil
		case <-ctx.Done():
			return r, ctx.Err()
		}
	}, stage.Workers(-1))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			st.put(r)
			if r.Partition == 0 {
				mu.Lock()
				out-- // before the source settles r: out never counts more than it holds
				mu.Unlock()
			}
			return nil
		})
	})
	takenAtLeast := func(m int) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return taken >= m
		}
	}
	waitFor(t, "partition 0 full", takenAtLeast(k))
	close(first)
	// Offset 0 settled: room for one more record of partition 0.
	waitFor(t, "one more record of partition 0", takenAtLeast(k+1))
	mu.Lock()
	got := maxOut
	mu.Unlock()
	if got > k {
		t.Errorf("MaxPending(%d): %d records of partition 0 were out at once after a settlement", k, got)
	}
	close(rest)
	waitFor(t, "partition 0 stored", func() bool { return st.len() == n })
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxOut > k {
		t.Errorf("MaxPending(%d): %d records of partition 0 were out at once", k, maxOut)
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got != n {
		t.Errorf("partition 0 committed to %d, want %d", got, n)
	}
}
