package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// "Each partition holds at most MaxPending records that are not settled",
// under churn: four partitions, MaxPending(k) small, records settled in a
// random order (random work, drops by a Filter, first attempts that fail
// and are tried again), so that partitions fill and get room again
// constantly while polls are in flight. For each partition, the records
// handed out and not yet settled (a lower bound of what it holds) never
// exceed k; every record is stored and committed; nothing hangs.
func TestMaxPendingUnderChurn(t *testing.T) {
	const k, parts, n = 3, 4, 150
	c, addrs := newCluster(t, parts, "jobs")
	l := newLedger()
	l.watch(c)
	for p := range int32(parts) {
		produceTo(t, addrs, "jobs", p, int(p)*1000, n)
	}
	var mu sync.Mutex
	out := map[int32]int{}
	maxOut := map[int32]int{}
	rng := rand.New(rand.NewPCG(1, 2))
	rnd := func(m int) int { mu.Lock(); defer mu.Unlock(); return rng.IntN(m) }
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.MaxPending(k), kafka.Attempts(3),
		kafka.CommitInterval(5*time.Millisecond), l.option())
	errFirst := errors.New("first attempt fails")
	work := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Attempts == 1 {
			mu.Lock()
			out[r.Partition]++
			maxOut[r.Partition] = max(maxOut[r.Partition], out[r.Partition])
			mu.Unlock()
		}
		for range rnd(200) {
			runtime.Gosched()
		}
		if r.Attempts == 1 && rnd(5) == 0 {
			return r, errFirst // forwarded: tried again, still held
		}
		return r, nil
	}, stage.Workers(-1), stage.OnError(stage.Forward))
	st := newStore()
	kept := stage.Filter(work, func(_ context.Context, r kafka.Record[int]) (bool, error) {
		if r.Value%7 == 3 { // dropped on purpose: settled here
			l.settleRec(r)
			st.put(r)
			mu.Lock()
			out[r.Partition]--
			mu.Unlock()
			return false, nil
		}
		return true, nil
	}, stage.Workers(3))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), kept, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			mu.Lock()
			out[r.Partition]-- // before the source settles r
			mu.Unlock()
			return nil
		})
	})
	waitFor(t, "every record stored", func() bool { return st.len() == parts*n })
	drain()
	err := waitErr(t, "the run", errc)
	var fe *sink.ForwardedError
	if err != nil && !errors.As(err, &fe) {
		t.Fatal(err)
	}
	mu.Lock()
	for p := range int32(parts) {
		if maxOut[p] > k {
			t.Errorf("MaxPending(%d): partition %d had %d records out at once", k, p, maxOut[p])
		}
	}
	t.Logf("max out per partition: %v", fmt.Sprint(maxOut))
	mu.Unlock()
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}
