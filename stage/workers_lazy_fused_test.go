package stage_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// fusedInputs are inputs of unknown length under a stage whose calls its
// consumer may run (a plain Map): a source that may wait (its workers stay
// goroutines until calls prove cheap, one always waits in the source) and
// one declared NeverWaits (its workers start at the consumer's first pull).
var fusedInputs = map[string]func(n int) stage.Stream[int]{
	"waiting":    func(n int) stage.Stream[int] { return stage.Interruptible(generator(n)) },
	"neverwaits": func(n int) stage.Stream[int] { return stage.NeverWaits(generator(n)) },
}

// The Workers doc: over an input of unknown length, a stage starts about as
// many goroutines as the input has items, up to n; the fused path too. A
// Workers(1<<30) Map (no option) over 3 items, from a channel and from
// generators, neither runs out of memory nor starts more than a few dozen
// goroutines (in a child process: if it tried to start them all, the
// process would die).
func TestHugeWorkersFusedOverAShortInput(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		inputs := map[string]func() stage.Stream[int]{
			"chan": func() stage.Stream[int] {
				ch := make(chan int, 3)
				ch <- 0
				ch <- 1
				ch <- 2
				close(ch)
				return source.Chan(ch)
			},
		}
		for name, in := range fusedInputs {
			inputs[name] = func() stage.Stream[int] { return in(3) }
		}
		for name, in := range inputs {
			before := runtime.NumGoroutine()
			var mu sync.Mutex
			most := 0
			f := func(_ context.Context, x int) (int, error) {
				mu.Lock()
				most = max(most, runtime.NumGoroutine())
				mu.Unlock()
				return x, nil
			}
			got, err := sink.Slice(context.Background(), stage.Map(in(), f, stage.Workers(1<<30)))
			if err != nil || len(got) != 3 {
				t.Fatalf("%s: Slice = %v, %v", name, got, err)
			}
			if most > before+100 {
				t.Errorf("%s: %d goroutines during a run of 3 items, %d before", name, most, before)
			}
		}
	})
}

// "with enough input ... exactly n" calls at once, for n past the workers
// the fused path starts at once: a barrier of 150 calls completes over an
// input of unknown length with more items than workers. (The calls wait,
// so no consumer goroutine takes a place: the doc's caveat does not apply.)
func TestManyWorkersFusedAllRunAtOnce(t *testing.T) {
	const workers, items = 150, 400
	for name, in := range fusedInputs {
		t.Run(name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				var arrived atomic.Int64
				all := make(chan struct{})
				f := func(ctx context.Context, x int) (int, error) {
					if arrived.Add(1) == workers {
						close(all)
					}
					select {
					case <-all:
					case <-ctx.Done():
						return 0, ctx.Err()
					}
					return x, nil
				}
				ctx, cancel := context.WithTimeout(context.Background(), runcheck.Watchdog/2) // a hang watchdog
				defer cancel()
				got, err := sink.Slice(ctx, stage.Map(in(items), f, stage.Workers(workers)))
				if err != nil || len(got) != items {
					t.Fatalf("Slice = %d items, %v (%d calls arrived): fewer than %d calls ran at once", len(got), err, arrived.Load(), workers)
				}
			})
		})
	}
}

// A fused stage whose places are still starting ends cleanly: when its
// input ends first (every item, no hang), when a call fails (the error),
// when the run is cancelled (context.Canceled), and when its consumer's
// goroutines took places (cheap calls, a consumer of many goroutines) and
// then saw the input end. goleak, at the end of the package's tests, finds
// any goroutine left.
func TestManyWorkersFusedEndCleanly(t *testing.T) {
	const workers, items = 300, 2000
	boom := errors.New("boom")
	within := func(t *testing.T, run func()) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			run()
		}()
		select {
		case <-done:
		case <-time.After(time.Minute): // a hang watchdog
			t.Fatal("the run did not end")
		}
	}
	for name, in := range fusedInputs {
		t.Run(name+"/fewer-items-than-workers", func(t *testing.T) {
			within(t, func() {
				got, err := sink.Slice(context.Background(), stage.Map(in(100), double, stage.Workers(workers)))
				if err != nil || len(got) != 100 {
					t.Errorf("Slice = %d items, %v; want 100", len(got), err)
				}
			})
		})
		t.Run(name+"/failfast", func(t *testing.T) {
			f := func(_ context.Context, x int) (int, error) {
				if x == 100 {
					return 0, boom
				}
				return x, nil
			}
			within(t, func() {
				_, err := sink.Slice(context.Background(), stage.Map(in(items), f, stage.Workers(workers)))
				if !errors.Is(err, boom) {
					t.Errorf("Slice = %v, want boom", err)
				}
			})
		})
		t.Run(name+"/cancel", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var calls atomic.Int64
			f := func(ctx context.Context, x int) (int, error) {
				if calls.Add(1) == 100 {
					cancel()
				}
				<-ctx.Done()
				return x, nil
			}
			within(t, func() {
				_, err := sink.Slice(ctx, stage.Map(in(items), f, stage.Workers(workers)))
				if !errors.Is(err, context.Canceled) {
					t.Errorf("Slice = %v, want context.Canceled", err)
				}
			})
		})
		t.Run(name+"/consumer-of-many-goroutines", func(t *testing.T) {
			// Cheap calls: the upstream's goroutines give their places to
			// the downstream's 100 workers, which then see the input end.
			const n = 50_000
			within(t, func() {
				up := stage.Map(in(n), double, stage.Workers(workers))
				got, err := sink.Slice(context.Background(), stage.Map(up, double, stage.Workers(100)))
				if err != nil || len(got) != n {
					t.Errorf("Slice = %d items, %v; want %d", len(got), err, n)
				}
			})
		})
	}
}
