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

// lazyLayouts are the stages that keep their workers as goroutines of
// their own, whose workers past the first few dozen start as items come.
var lazyLayouts = map[string][]stage.Option{
	"ordered": {stage.Ordered()},
	"keyby":   {stage.KeyBy(func(x int) int { return x })},
	"buffer":  {stage.Buffer(1)},
}

// generator is a source of n items whose length the stream does not know.
func generator(n int) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, errEOF
			}
			i++
			return i - 1, nil
		}, nil
	})
}

// The Workers doc: "with enough input ... exactly n" calls at once, also
// for n larger than the workers a stage starts with its run: a barrier of
// all n calls completes, over an input of unknown length with more items
// than workers.
func TestManyWorkersAllRunAtOnceOverAnInputOfUnknownLength(t *testing.T) {
	const workers, items = 150, 400
	for name, opts := range lazyLayouts {
		t.Run(name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				var arrived atomic.Int64
				all := make(chan struct{})
				f := func(ctx context.Context, x int) (int, error) {
					if arrived.Add(1) == workers {
						close(all)
					}
					select {
					case <-all: // the first workers calls all run at once
					case <-ctx.Done():
						return 0, ctx.Err()
					}
					return x, nil
				}
				ctx, cancel := context.WithTimeout(context.Background(), runcheck.Watchdog/2) // a hang watchdog
				defer cancel()
				got, err := sink.Slice(ctx, stage.Map(generator(items), f, append(opts, stage.Workers(workers))...))
				if err != nil || len(got) != items {
					t.Fatalf("Slice = %d items, %v (%d calls arrived): fewer than %d calls ran at once", len(got), err, arrived.Load(), workers)
				}
			})
		})
	}
}

// The same over a short input: a Workers(1<<30) stage over a channel of 3
// items neither runs out of memory nor starts more than a few dozen
// goroutines (in a child process: if it tried to start them all, the
// process would die).
func TestHugeWorkersOverAShortChannel(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for name, opts := range lazyLayouts {
			before := runtime.NumGoroutine()
			var mu sync.Mutex
			most := 0
			f := func(_ context.Context, x int) (int, error) {
				mu.Lock()
				most = max(most, runtime.NumGoroutine())
				mu.Unlock()
				return x, nil
			}
			ch := make(chan int, 3)
			ch <- 1
			ch <- 2
			ch <- 3
			close(ch)
			got, err := sink.Slice(context.Background(), stage.Map(source.Chan(ch), f, append(opts, stage.Workers(1<<30))...))
			if err != nil || len(got) != 3 {
				t.Fatalf("%s: Slice = %v, %v", name, got, err)
			}
			if most > before+100 {
				t.Errorf("%s: %d goroutines during a run of 3 items, %d before", name, most, before)
			}
		}
	})
}

// A run whose workers are still starting ends cleanly on a failure and on
// a cancellation: the sink returns the error, and (goleak, at the end of
// the package's tests) no goroutine is left.
func TestManyWorkersEndCleanlyWhileStarting(t *testing.T) {
	const workers, items = 300, 2000
	boom := errors.New("boom")
	for name, opts := range lazyLayouts {
		t.Run(name+"/fewer-items-than-workers", func(t *testing.T) {
			// The input ends before every place started: the run still
			// ends, with every item.
			done := make(chan int, 1)
			go func() {
				got, err := sink.Slice(context.Background(), stage.Map(generator(100), double, append(opts, stage.Workers(workers))...))
				if err != nil {
					t.Error(err)
				}
				done <- len(got)
			}()
			select {
			case n := <-done:
				if n != 100 {
					t.Fatalf("%d items, want 100", n)
				}
			case <-time.After(time.Minute): // a hang watchdog
				t.Fatal("the run did not end when its input did")
			}
		})
		t.Run(name+"/failfast", func(t *testing.T) {
			f := func(_ context.Context, x int) (int, error) {
				if x == 100 {
					return 0, boom
				}
				return x, nil
			}
			_, err := sink.Slice(context.Background(), stage.Map(generator(items), f, append(opts, stage.Workers(workers))...))
			if !errors.Is(err, boom) {
				t.Fatalf("Slice = %v, want boom", err)
			}
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
			done := make(chan error, 1)
			go func() {
				_, err := sink.Slice(ctx, stage.Map(generator(items), f, append(opts, stage.Workers(workers))...))
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Slice = %v, want context.Canceled", err)
				}
			case <-time.After(time.Minute): // a hang watchdog
				t.Fatal("the cancelled run did not return")
			}
		})
	}
}
