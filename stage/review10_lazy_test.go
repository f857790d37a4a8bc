package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review10Layouts are the stages whose workers past the first 64 start
// lazily (engine_worker.go, applier.more).
func review10Layouts() map[string][]stage.Option {
	return map[string][]stage.Option{
		"ordered": {stage.Ordered()},
		"keyby":   {stage.KeyBy(func(x int) int { return x })},
		"buffer":  {stage.Buffer(1)},
	}
}

// review10Inputs are inputs that never wait, so that a fusable stage over
// them fuses into its consumer: one of known length, one of unknown.
func review10Inputs(n int) map[string]func() stage.Stream[int] {
	return map[string]func() stage.Stream[int]{
		"known":   func() stage.Stream[int] { return stage.Indexed(n, func(i int) int { return i }) },
		"unknown": func() stage.Stream[int] { return stage.NeverWaits(generator(n)) },
	}
}

func review10Inc(_ context.Context, x int) (int, error) { return x + 1, nil }

// A lazy stage over a fused upstream takes its input handles (the fused
// stage's fuseHandles) one at a time from its workers' goroutines, as they
// start: the fused stage's guard (never more handles than places) holds,
// handles taken concurrently after the run started get places, and every
// item arrives (in order when Ordered). A guard panic or a lost place
// would crash or hang the child.
func TestReview10FusedUpstreamFeedsLazyWorkers(t *testing.T) {
	const places, items = 100, 3000
	for lname, opts := range review10Layouts() {
		for iname, input := range review10Inputs(items) {
			t.Run(lname+"/"+iname, func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) {
					for range 5 {
						up := stage.Map(input(), review10Inc, stage.Workers(places)) // fusable: it fuses into the lazy stage
						got, err := sink.Slice(context.Background(), stage.Map(up, double, append(opts, stage.Workers(places))...))
						if err != nil || len(got) != items {
							t.Fatalf("Slice = %d items, %v; want %d", len(got), err, items)
						}
						slices.Sort(got) // the fused upstream is unordered: Ordered keeps its output's order, not the source's
						for i, v := range got {
							if v != 2*(i+1) {
								t.Fatalf("got[%d] = %d, want %d", i, v, 2*(i+1))
							}
						}
					}
				})
			})
		}
	}
}

// The barrier of TestManyWorkersAllRunAtOnceOverAnInputOfUnknownLength,
// over a fused upstream: the lazy stage's workers past the first 64 take
// their handles of the fused stage while the others wait in the barrier
// (some of them holding a place of the fused stage), and still every call
// of the barrier is reached.
func TestReview10BarrierOverFusedUpstream(t *testing.T) {
	const workers, items = 150, 400
	for lname, opts := range review10Layouts() {
		t.Run(lname, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				f, arrived := barrier(workers)
				ctx, cancel := context.WithTimeout(context.Background(), runcheck.Watchdog/2) // a hang watchdog
				defer cancel()
				up := stage.Map(stage.NeverWaits(generator(items)), review10Inc, stage.Workers(workers))
				got, err := sink.Slice(ctx, stage.Map(up, f, append(opts, stage.Workers(workers))...))
				if err != nil || len(got) != items {
					t.Fatalf("Slice = %d items, %v (%d calls arrived)", len(got), err, arrived.Load())
				}
			})
		})
	}
}

// A cancellation and a failure while workers are still starting, over a
// fused upstream: workers started by more() after the run was cancelled
// take a fused handle and see the end; the sink returns the cause and
// (goleak, TestMain) no goroutine is left.
func TestReview10EndWhileStartingOverFusedUpstream(t *testing.T) {
	const workers, items = 300, 2000
	boom := errors.New("boom")
	for lname, opts := range review10Layouts() {
		t.Run(lname, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var calls atomic.Int64
				f := func(ctx context.Context, x int) (int, error) {
					switch n := calls.Add(1); {
					case n == 100:
						cancel()
					case n > 100:
						<-ctx.Done()
					}
					return x, nil
				}
				up := stage.Map(stage.NeverWaits(generator(items)), review10Inc, stage.Workers(workers))
				if _, err := sink.Slice(ctx, stage.Map(up, f, append(opts, stage.Workers(workers))...)); !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled: Slice = %v, want context.Canceled", err)
				}

				g := func(_ context.Context, x int) (int, error) {
					if x == 150 {
						return 0, boom
					}
					return x, nil
				}
				up = stage.Map(stage.NeverWaits(generator(items)), review10Inc, stage.Workers(workers))
				if _, err := sink.Slice(context.Background(), stage.Map(up, g, append(opts, stage.Workers(workers))...)); !errors.Is(err, boom) {
					t.Fatalf("failed: Slice = %v, want boom", err)
				}
			})
		})
	}
}

// A drain (Until) while workers are still starting: the source stops,
// the workers that see its end give up the places not started (noMore),
// the calls in flight finish, and the sink returns nil with what was
// taken (a prefix of the input when Ordered). If noMore did not close the
// stand-in writer, or closed it twice, the run would hang or end early.
func TestReview10DrainWhileStarting(t *testing.T) {
	const workers, stopAt = 300, 120
	for lname, opts := range review10Layouts() {
		t.Run(lname, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				stop, drain := context.WithCancel(context.Background())
				defer drain()
				var calls atomic.Int64
				f := func(_ context.Context, x int) (int, error) {
					if calls.Add(1) == stopAt {
						drain()
					}
					return x, nil
				}
				ch := make(chan int)
				feederDone := make(chan struct{})
				go func() { // an endless input of unknown length that waits
					defer close(feederDone)
					for i := 0; ; i++ {
						select {
						case ch <- i:
						case <-stop.Done():
							return
						}
					}
				}()
				got, err := sink.Slice(context.Background(), stage.Map(stage.Until(source.Chan(ch), stop), f, append(opts, stage.Workers(workers))...))
				<-feederDone
				if err != nil || len(got) < stopAt {
					t.Fatalf("Slice = %d items, %v; want nil and at least %d", len(got), err, stopAt)
				}
				if lname == "ordered" {
					for i, v := range got {
						if v != i {
							t.Fatalf("got[%d] = %d: not a prefix of the input", i, v)
						}
					}
				}
			})
		})
	}
}

// An Ordered Apply of many workers, each item emitting several outputs
// (the first carries the token, the others wait for room: pushExtra, or
// park in the reorder window), over an input of unknown length whose
// workers past the first 64 start one at a time with steppers of their
// own (applier.stepper): the outputs come in the input's order, with
// nothing lost or repeated, and with a consumer slower than the workers.
func TestReview10OrderedApplyManyOutputsWhileStarting(t *testing.T) {
	const workers, items, per = 200, 1500, 3
	runcheck.InChildTest(t, func(t *testing.T) {
		f := func(_ context.Context, x int, emit func(int) bool) error {
			for k := range per {
				if !emit(x*per + k) {
					return nil
				}
			}
			return nil
		}
		n := 0
		err := sink.ForEach(context.Background(), stage.Apply(generator(items), f, stage.Ordered(), stage.Workers(workers)), func(_ context.Context, v int) error {
			if v != n {
				return fmt.Errorf("output %d is %d", n, v)
			}
			n++
			if n%64 == 0 {
				runtime.Gosched() // a consumer that lets the workers run ahead
			}
			return nil
		})
		if err != nil || n != items*per {
			t.Fatalf("ForEach = %v after %d outputs, want nil after %d", err, n, items*per)
		}
	})
}
