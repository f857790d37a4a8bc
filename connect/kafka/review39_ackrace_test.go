package kafka_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/stage"
)

// Suspicion 1 of the brief: Done reads whether the record's partition is
// still owned, releases the lock, then settles (or retries, or
// dead-letters) it; a revoke in between could make the source commit for a
// partition it no longer owns, or lose a record. Doc.go ("Rebalances"):
// "When a partition is revoked, the source ... commits its watermark, and
// never commits for it again: acknowledgements of its records still in
// flight are ignored"; ("Guarantees"): "a record is committed only after
// what it led to was committed".
//
// A member with an eager balancer processes 4,000 records of two
// partitions with many acknowledgements in flight (every 7th record fails
// once and is tried again) while a second member of the group, for another
// topic, joins and leaves again and again: each time every partition is
// revoked from the first member and handed back to it. The checker at the
// broker flags any commit that passes a record the sink had not stored;
// at the end every record is stored and the group committed to the end.
var errFailOnce = errors.New("fails on its first try")

func TestReview39AcksRacingEagerRevokes(t *testing.T) {
	const chunk, flaps = 600, 6
	const n = chunk * flaps
	c, addrs := newCluster(t, 2, "jobs", "other")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	// Chunk i is produced at flap i; a third of its records wait, on their
	// first try, until the second member of flap i is in the group, and
	// are released as it leaves: their acknowledgements race the revokes.
	gates := make([]chan struct{}, flaps)
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	defer func() {
		for _, g := range gates {
			select {
			case <-g:
			default:
				close(g)
			}
		}
	}()
	eager := kgo.Balancers(kgo.RangeBalancer())
	ev := newR39Events()
	src := kafka.Source(append(memberOpts(addrs, "g", "jobs"), eager), decodeInt,
		kafka.CommitInterval(3*time.Millisecond), kafka.MaxPending(64), kafka.Attempts(5),
		kafka.OnEvent(func(e kafka.Event) { l.onEvent(e); ev.on(e) }))
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	rows := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value%3 == 0 && r.Attempts == 1 {
			select {
			case <-gates[r.Value/chunk]:
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
		for range rand.IntN(50) {
			runtime.Gosched()
		}
		if r.Value%7 == 0 && r.Attempts == 1 {
			return r, errFailOnce
		}
		return r, nil
	}, stage.Workers(64), stage.OnError(stage.Forward))
	st := newStore()
	errc := goRun(func() error {
		return stage.Run(context.Background(), rows, func(_ context.Context, r kafka.Record[int], err error) error {
			if err != nil {
				return nil // forwarded: Done(err), tried again
			}
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	revokes := func(evs []kafka.Event) int {
		k := 0
		for _, e := range evs {
			if e.Kind == kafka.Revoked && len(e.Partitions["jobs"]) > 0 {
				k++
			}
		}
		return k
	}
	assigned := func(evs []kafka.Event) bool {
		for _, e := range evs {
			if e.Kind == kafka.Assigned && len(e.Partitions["jobs"]) == 2 {
				return true
			}
		}
		return false
	}
	if err, ended := ev.wait(t, "jobs assigned", errc, assigned); ended {
		t.Fatalf("the run ended: %v", err)
	}
	var stored []int // records stored when each flap's member joined
	for i := range flaps {
		produceTo(t, addrs, "jobs", 0, i*chunk, chunk/2)
		produceTo(t, addrs, "jobs", 1, i*chunk+chunk/2, chunk/2)
		// B's own assignment says it is in the group: the rebalance that
		// took it in revoked A's partitions (eager).
		bIn := make(chan struct{})
		var bOnce sync.Once
		b, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("other"), eager,
			kgo.SessionTimeout(memberSession), kgo.HeartbeatInterval(200*time.Millisecond), kgo.RebalanceTimeout(10*time.Second), kgo.FetchMaxWait(200*time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, as map[string][]int32) {
				if len(as["other"]) > 0 {
					bOnce.Do(func() { close(bIn) })
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		bctx, bstop := context.WithCancel(context.Background())
		bdone := make(chan struct{})
		go func() {
			defer close(bdone)
			for bctx.Err() == nil {
				b.PollFetches(bctx)
			}
		}()
		var runErr error
		ended, hung := false, false
		select {
		case <-bIn:
		case runErr = <-errc:
			ended = true
		case <-time.After(r39Watchdog):
			hung = true
		}
		stored = append(stored, st.len())
		before := 0
		ev.wait(t, "events", nil, func(evs []kafka.Event) bool { before = revokes(evs); return true })
		close(gates[i])
		bstop()
		<-bdone
		b.Close() // leaves: another rebalance
		if hung {
			drain()
			waitErr(t, "the run", errc)
			t.Fatalf("hung: the second member never joined (flap %d)", i)
		}
		if ended {
			t.Fatalf("the run ended at flap %d: %v", i, runErr)
		}
		if err, ended := ev.wait(t, "a revoke at the leave", errc, func(evs []kafka.Event) bool { return revokes(evs) > before }); ended {
			t.Fatalf("the run ended at flap %d: %v", i, err)
		}
	}
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	finishAttack(t, drain, errc, addrs, l)
	t.Logf("%d duplicates absorbed; records stored at each join: %v", st.dups, stored)
}
