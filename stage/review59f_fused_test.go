package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// review59fInputs are the inputs under which a Map, Filter or FlatMap
// fuses: a slice (sized: startIdle starts min(places, items)), a NeverWaits
// source of unknown length (64 places at once, the rest lazily), and a
// channel full from the start (Interruptible: newFuseRunWaiting); taken
// from r13Sources.
func review59fInputs() map[string]func(n int) stage.Stream[int] {
	pick := func(name string) func(n int) stage.Stream[int] {
		return func(n int) stage.Stream[int] { return r13Sources(n)[name]() }
	}
	return map[string]func(n int) stage.Stream[int]{"slice": pick("slice"), "neverwaits": pick("neverwaits"), "chan": pick("chan")}
}

// review59fSpin keeps the goroutine busy for d: a call made slow on
// purpose, so that places move between the stage's goroutines and its
// consumer's (the engine times calls); no verdict depends on it.
func review59fSpin(d time.Duration) {
	for start := time.Now(); time.Since(start) < d; {
	}
}

// Suspicions 1 and 2 under load: a fused FlatMap (its consumer, the sink,
// has one goroutine) of more places than start at once, whose items emit
// more outputs than its queue holds (so its goroutines wait in pushExtra),
// and whose calls turn slow and cheap in stretches (so places go to the
// sink's handle and come back through spawn, whose addWorker raises the
// capacity while producers wait for room; and lazily started places come
// from goroutines and from the handle). The FlatMap doc ("emits the
// elements of the slice it returns") and the Workers doc ("at most n"):
// every output arrives exactly once, no more than n calls run at once, and
// the run ends (no hang; goleak in TestMain checks no goroutine is left).
func TestReview59fFusedFlatMapPlacesMoveBothWays(t *testing.T) {
	const items, outs, workers = 3000, 5, 100
	for name, input := range review59fInputs() {
		t.Run(name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				var running, peak atomic.Int64
				f := func(_ context.Context, x int) ([]int, error) {
					n := running.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					if (x/300)%2 == 1 {
						review59fSpin(40 * time.Microsecond)
					}
					running.Add(-1)
					out := make([]int, outs)
					for j := range out {
						out[j] = x*outs + j
					}
					return out, nil
				}
				seen := make([]int, items*outs)
				var got int
				runcheck.Run(t, name, func() {
					err := sink.ForEach(context.Background(), stage.FlatMap(input(items), f, stage.Workers(workers)), func(_ context.Context, v int) error {
						seen[v]++
						got++
						return nil
					})
					if err != nil {
						t.Errorf("ForEach = %v", err)
					}
				})
				for v, c := range seen {
					if c != 1 {
						t.Fatalf("output %d arrived %d times (%d outputs in all, want %d)", v, c, got, items*outs)
					}
				}
				if p := peak.Load(); p > workers {
					t.Fatalf("%d calls ran at once, over Workers(%d)", p, workers)
				}
			})
		})
	}
}

// review59fConsumers put a consumer after the fused stage: the sink (one
// handle, on the sink's own goroutine), a Map of many workers (fused in
// turn over a NeverWaits or slice input: each of its places takes a handle)
// and one with Buffer(1) (its own goroutines, a handle each).
func review59fConsumers() map[string]func(stage.Stream[int]) stage.Stream[int] {
	id := func(_ context.Context, x int) (int, error) { return x, nil }
	return map[string]func(stage.Stream[int]) stage.Stream[int]{
		"sink":   func(up stage.Stream[int]) stage.Stream[int] { return up },
		"map120": func(up stage.Stream[int]) stage.Stream[int] { return stage.Map(up, id, stage.Workers(120)) },
		"buffer120": func(up stage.Stream[int]) stage.Stream[int] {
			return stage.Map(up, id, stage.Workers(120), stage.Buffer(1))
		},
	}
}

// The ErrGoexit and PanicError docs, for a fused stage of more places than
// start at once, at its k-th call (on the stage's goroutines, or in a
// consumer's goroutine that holds a place, whichever makes it): a panic
// fails the run with an *Error wrapping a *PanicError; a Goexit fails it
// with ErrGoexit ("the item it held is lost, so the run fails with
// ErrGoexit rather than return what it has as if complete"), unless it
// ran on the sink's own goroutine, which then ends ("the sink does not
// return ... and the run's goroutines exit"). Either way no goroutine of
// the run is left once the sink's goroutine has ended, and nothing hangs.
func TestReview59fFusedExitAtCallK(t *testing.T) {
	const items, workers = 4000, 150
	for iname, input := range review59fInputs() {
		for cname, consumer := range review59fConsumers() {
			t.Run(iname+"/"+cname, func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) {
					for _, how := range []string{"panic", "goexit"} {
						for _, k := range []int64{1, 70, 1500} {
							review59fExitOnce(t, input(items), consumer, workers, how, k)
						}
					}
				})
			})
		}
	}
}

func review59fExitOnce(t *testing.T, in stage.Stream[int], consumer func(stage.Stream[int]) stage.Stream[int], workers int, how string, k int64) {
	t.Helper()
	var calls atomic.Int64
	var exitOn atomic.Int64
	f := func(_ context.Context, x int) (int, error) {
		if calls.Add(1) == k {
			exitOn.Store(auditGoid())
			if how == "panic" {
				panic(fmt.Sprintf("review59f at call %d", k))
			}
			runtime.Goexit()
		}
		return x, nil
	}
	_, before := runcheck.Goroutines()
	sinkID := make(chan int64, 1)
	done := make(chan struct{})
	var err error
	returned := false
	go func() {
		defer close(done)
		sinkID <- auditGoid()
		err = sink.ForEach(context.Background(), consumer(stage.Map(in, f, stage.Workers(workers))), func(context.Context, int) error { return nil })
		returned = true
	}()
	id := <-sinkID
	select {
	case <-done:
	case <-time.After(runcheck.Watchdog): // a hang watchdog only
		t.Fatalf("%s at call %d: the sink hung", how, k)
	}
	if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
		t.Fatalf("%s at call %d: %d goroutine(s) left once the sink's goroutine ended:\n%s", how, k, len(leaked), strings.Join(leaked, "\n\n"))
	}
	switch {
	case calls.Load() < k:
		t.Fatalf("%s at call %d: only %d calls", how, k, calls.Load())
	case how == "panic":
		var pe *stage.PanicError
		var se *stage.Error
		if !returned || !errors.As(err, &se) || !errors.As(err, &pe) {
			t.Fatalf("panic at call %d: ForEach = %v (returned %v), want an *Error wrapping a *PanicError", k, err, returned)
		}
	case exitOn.Load() == id:
		t.Logf("goexit at call %d ran on the sink's goroutine", k)
		if returned {
			t.Fatalf("goexit at call %d on the sink's goroutine: ForEach returned %v", k, err)
		}
	default:
		if !returned || !errors.Is(err, stage.ErrGoexit) {
			t.Fatalf("goexit at call %d (not on the sink's goroutine): ForEach = %v (returned %v), want ErrGoexit", k, err, returned)
		}
	}
}
