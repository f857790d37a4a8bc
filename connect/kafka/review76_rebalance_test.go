package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review76: what a member does when a second member takes one of its
// partitions (cooperative rebalancing, franz-go's default): the records it
// may still take, the failure of a revoked record, and OnEvent failing at
// the Revoked event.

// r76Revokes records a member's events and the partitions it lost to a
// rebalance (and got back, if it did).
type r76Revokes struct {
	mu       sync.Mutex
	assigned map[int32]bool // owned now, as the events tell
	revoked  map[int32]bool // revoked and not assigned again
	nRevoked int            // Revoked events naming a partition
	events   []string
}

func newR76Revokes() *r76Revokes {
	return &r76Revokes{assigned: map[int32]bool{}, revoked: map[int32]bool{}}
}

func (v *r76Revokes) add(e kafka.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.events = append(v.events, fmt.Sprintf("%v %v %v %v", e.Kind, e.Partitions, e.Offsets, e.Err))
	for _, ps := range e.Partitions {
		for _, p := range ps {
			switch e.Kind {
			case kafka.Assigned:
				v.assigned[p], v.revoked[p] = true, false
			case kafka.Revoked, kafka.Lost:
				v.assigned[p], v.revoked[p] = false, true
				if e.Kind == kafka.Revoked {
					v.nRevoked++
				}
			}
		}
	}
}

func (v *r76Revokes) isRevoked(p int32) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.revoked[p]
}

func (v *r76Revokes) owns() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, ok := range v.assigned {
		if ok {
			n++
		}
	}
	return n
}

func (v *r76Revokes) anyRevoked() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.nRevoked > 0
}

func (v *r76Revokes) dump() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return fmt.Sprint(v.events)
}

// r76MemberB starts a second member of group "g" over "jobs" that commits
// every record it gets and records the offsets, per partition.
type r76MemberB struct {
	mu    sync.Mutex
	seen  map[int32]map[int64]bool
	drain context.CancelFunc
	errc  <-chan error
}

func r76StartB(addrs []string) *r76MemberB {
	b := &r76MemberB{seen: map[int32]map[int64]bool{}}
	stop, drain := context.WithCancel(context.Background())
	b.drain = drain
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(10*time.Millisecond))
	b.errc = goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) error {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.seen[r.Partition] == nil {
				b.seen[r.Partition] = map[int64]bool{}
			}
			b.seen[r.Partition][r.Offset] = true
			return nil
		})
	})
	return b
}

func (b *r76MemberB) has(p int32, from, to int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for o := from; o < to; o++ {
		if !b.seen[p][o] {
			return false
		}
	}
	return true
}

// Doc (package, Rebalances): "When a partition is revoked, the source takes
// no more of its records".
// Doc (stage.Source): "Two consumers call it [next] from their own
// goroutine, ...: ... a sink that reads the source directly."
//
// Member A's sink reads the source directly and holds its first record
// until B has joined and A was told a partition was revoked; from then on
// A's sink must get no record of that partition (unless it is assigned to A
// again), although A had polled them.
func TestReview76RevokedPartitionYieldsNoMoreRecords(t *testing.T) {
	_, addrs := newCluster(t, 2, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, 20)
	produceTo(t, addrs, "jobs", 1, 20, 20)
	ev := newR76Revokes()
	gate := newR63Gate()
	defer gate.open()
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	var mu sync.Mutex
	var late []string
	first := make(chan struct{})
	var firstOnce sync.Once
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.OnEvent(ev.add), kafka.CommitInterval(10*time.Millisecond))
	errA := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stopA), func(ctx context.Context, r kafka.Record[int]) error {
			firstOnce.Do(func() { close(first) })
			if err := gate.wait(ctx); err != nil {
				return err
			}
			if ev.isRevoked(r.Partition) {
				mu.Lock()
				late = append(late, place(r.Partition, r.Offset))
				mu.Unlock()
			}
			return nil
		})
	})
	select {
	case <-first:
	case <-waitHung():
		t.Fatal("hung: A got no record")
	}
	b := r76StartB(addrs)
	defer b.drain()
	waitFor(t, "A to be told a partition was revoked", ev.anyRevoked)
	gate.open()
	// B must get the records of the partition it took; A drains.
	waitFor(t, "B to own a partition and consume it", func() bool {
		for p := range int32(2) {
			if ev.isRevoked(p) && b.has(p, 19, 20) {
				return true
			}
		}
		return false
	})
	drainA()
	if err := waitErr(t, "A", errA); err != nil {
		t.Errorf("A: %v", err)
	}
	b.drain()
	if err := waitErr(t, "B", b.errc); err != nil {
		t.Errorf("B: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(late) > 0 {
		t.Errorf("A's sink got %d records of a partition after it was revoked (and not given back): %v; events: %s", len(late), late, ev.dump())
	}
}

// Doc (package, Rebalances): "When a partition is revoked, the source ...
// never commits for it again: acknowledgements of its records still in
// flight are ignored (the records may still finish; the new owner gets
// them again from the watermark)".
// Doc (package, Offsets): "[a failed record] is tried again, up to
// [Attempts] times, then sent to the [DeadLetter] topic; without one, the
// run fails".
//
// With Attempts(1) and no dead-letter topic, a record of a revoked
// partition that fails after the revoke is an acknowledgement to ignore:
// it must not fail A's run (A's sink counts forwarded errors as done, so
// only the source could fail it), and B gets it again.
func TestReview76RevokedRecordFailingItsLastAttemptIsIgnored(t *testing.T) {
	_, addrs := newCluster(t, 2, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, 5)
	produceTo(t, addrs, "jobs", 1, 5, 5)
	ev := newR76Revokes()
	gate := newR63Gate()
	defer gate.open()
	var held, settled atomic.Int32
	var failedRevoked atomic.Int32
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(1), kafka.OnEvent(ev.add), kafka.CommitInterval(10*time.Millisecond))
	out := stage.Map(stage.Until(src, stopA), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 0 {
			held.Add(1)
			if err := gate.wait(ctx); err != nil {
				return r, err
			}
			if ev.isRevoked(r.Partition) {
				failedRevoked.Add(1)
				return r, errR76
			}
		}
		return r, nil
	}, stage.Workers(4), stage.Buffer(10), stage.OnError(stage.Forward))
	errA := goRun(func() error {
		return stage.Run(context.Background(), out, func(_ context.Context, _ kafka.Record[int], err error) error {
			if err == nil {
				settled.Add(1)
			}
			return nil
		})
	})
	waitFor(t, "A to hold offset 0 of both partitions and settle the rest", func() bool { return held.Load() == 2 && settled.Load() == 8 })
	b := r76StartB(addrs)
	defer b.drain()
	waitFor(t, "A to be told a partition was revoked", ev.anyRevoked)
	gate.open()
	waitFor(t, "the held record of the revoked partition to fail", func() bool { return failedRevoked.Load() == 1 })
	waitFor(t, "B to get the revoked partition's records again from offset 0", func() bool {
		for p := range int32(2) {
			if ev.isRevoked(p) && b.has(p, 0, 5) {
				return true
			}
		}
		return false
	})
	drainA()
	if err := waitErr(t, "A", errA); err != nil {
		t.Errorf("A's run failed with %v; the failure of a revoked partition's record should have been ignored (events: %s)", err, ev.dump())
	}
	b.drain()
	if err := waitErr(t, "B", b.errc); err != nil {
		t.Errorf("B: %v", err)
	}
	checkCommitted(t, addrs, "g", "jobs")
}

// Doc (OnEvent): "A panic in f fails the run with a *stage.SourceError
// wrapping a *stage.PanicError (...), and f is called no more in that run."
// "A runtime.Goexit in f (t.Fatal) fails the run with stage.ErrGoexit, and
// f is called no more."
//
// f fails at the first Revoked event naming a partition (a second member
// joined): at a rebalance, in the middle of the run, with the revoke's
// commit to come. The run fails as promised, and f sees no later event
// (not the revoke's commit, not the stop's).
func TestReview76OnEventFailsAtARevoke(t *testing.T) {
	for _, mode := range []string{"panic", "goexit"} {
		t.Run(mode, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) { r76OnEventFailsAtARevoke(t, mode) })
		})
	}
}

func r76OnEventFailsAtARevoke(t *testing.T, mode string) {
	_, addrs := newCluster(t, 2, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, 5)
	produceTo(t, addrs, "jobs", 1, 5, 5)
	var failed atomic.Bool
	var after atomic.Int32
	var mu sync.Mutex
	var afterEvents []string
	owns := newR76Revokes()
	var settled atomic.Int32
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
		if failed.Load() {
			after.Add(1)
			mu.Lock()
			afterEvents = append(afterEvents, fmt.Sprintf("%v %v %v", e.Kind, e.Partitions, e.Offsets))
			mu.Unlock()
			return
		}
		owns.add(e)
		if e.Kind == kafka.Revoked && len(e.Partitions) > 0 {
			failed.Store(true)
			if mode == "panic" {
				panic("review76: OnEvent at a revoke")
			}
			runtime.Goexit()
		}
	}))
	errA := goRun(func() error {
		return sink.ForEach(context.Background(), src, func(context.Context, kafka.Record[int]) error {
			settled.Add(1)
			return nil
		})
	})
	waitFor(t, "A to own both partitions and settle every record", func() bool { return owns.owns() == 2 && settled.Load() == 10 })
	b := r76StartB(addrs)
	defer b.drain()
	err := waitErr(t, "A", errA)
	switch mode {
	case "panic":
		if !r76IsPanicIn[*stage.SourceError](err) {
			t.Errorf("A returned %v; want a *stage.SourceError wrapping a *stage.PanicError", err)
		}
	case "goexit":
		if !errors.Is(err, stage.ErrGoexit) {
			t.Errorf("A returned %v; want stage.ErrGoexit", err)
		}
	}
	if !failed.Load() {
		t.Fatal("f never failed: no Revoked event naming a partition")
	}
	if n := after.Load(); n > 0 {
		mu.Lock()
		t.Errorf("f was called %d times after it failed: %v", n, afterEvents)
		mu.Unlock()
	}
	b.drain()
	if err := waitErr(t, "B", b.errc); err != nil {
		t.Errorf("B: %v", err)
	}
	checkCommitted(t, addrs, "g", "jobs")
}

// Doc (OnEvent): "Within a run, f is called from the source's goroutines
// one call at a time ..., each call on a goroutine of its own that the
// source waits for".
// Doc (package): "every goroutine of sluice's has exited" [when the sink
// returns].
//
// f is slow on every call (it yields for a while, which makes the stop's
// commit event overlap the run's end): when the sink returns, no call of f
// may still be in progress, and none may start afterwards (checked by the
// flag each call looks at, and by the leak check, which sees a goroutine
// still in f). Ends: a drain, a cancellation, a sink error, sink.First.
func TestReview76OnEventCallsEndBeforeTheSinkReturns(t *testing.T) {
	ends := []string{"drain", "cancel", "sinkError", "first"}
	for _, end := range ends {
		t.Run(end, func(t *testing.T) {
			_, addrs := newCluster(t, 2, "jobs")
			produceTo(t, addrs, "jobs", 0, 0, 10)
			produceTo(t, addrs, "jobs", 1, 10, 10)
			var inF, late, calls atomic.Int32
			var returned atomic.Bool
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
				inF.Add(1)
				defer inF.Add(-1)
				calls.Add(1)
				if returned.Load() {
					late.Add(1)
				}
				time.Sleep(30 * time.Millisecond) // widens the window; no verdict depends on it
				if returned.Load() {
					late.Add(1)
				}
			}))
			var seen atomic.Int32
			_, before := runcheck.Goroutines()
			var err error
			runcheck.NoHang(t, end, func() {
				switch end {
				case "first":
					_, _, err = sink.First(ctx, src)
				default:
					err = sink.ForEach(ctx, stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) error {
						if seen.Add(1) == 15 {
							switch end {
							case "drain":
								drain()
							case "cancel":
								cancel()
								<-ctx.Done()
								return ctx.Err()
							case "sinkError":
								return errR76
							}
						}
						return nil
					})
				}
				returned.Store(true)
			})
			if n := inF.Load(); n != 0 {
				t.Errorf("%d calls of f still in progress when the sink returned", n)
			}
			checkNoLeakSince(t, end, before)
			if n := late.Load(); n != 0 {
				t.Errorf("f was running %d times after the sink returned", n)
			}
			switch end {
			case "drain", "first":
				if err != nil {
					t.Errorf("the run returned %v", err)
				}
			case "cancel":
				if !errors.Is(err, context.Canceled) {
					t.Errorf("the run returned %v; want context.Canceled", err)
				}
			case "sinkError":
				if !errors.Is(err, errR76) {
					t.Errorf("the run returned %v; want the callback's error", err)
				}
			}
			t.Logf("f was called %d times", calls.Load())
		})
	}
}
