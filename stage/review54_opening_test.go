package stage_test

// Review 54: c91b3a3 moved the sources' context, Until's hooks, Tee's
// shared state, the checks and the pending goroutines into a run's opening
// part, made on first use while the pipeline is opened and read by the
// run's goroutines without a lock (sourceFailed reads its srcCancel). These
// run the pipelines that use it, many at once under -race: a source that
// fails must wake another waiting in next through the sources' context
// (else the run hangs), whichever input of a Merge is opened first, under
// Until or not, through a Tee; a run whose Tee check fails must start
// nothing and stop its sources; an Until whose stop is done before or
// during the run drains.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR54Boom = errors.New("r54: source failed")

// r54Waiting is a source that waits in next until its context ends; stops
// counts its stop calls.
func r54Waiting(stops *atomic.Int32) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(ctx context.Context) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}, func() { stops.Add(1) }
	})
}

// r54Failing yields 1, 2, 3, then fails.
func r54Failing() stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		n := 0
		return func(context.Context) (int, error) {
			if n++; n > 3 {
				return 0, errR54Boom
			}
			return n, nil
		}, nil
	})
}

// r54Panicking is an Indexed source of 5 whose fourth item panics: it
// makes no sources' context of its own.
func r54Panicking() stage.Stream[int] {
	return stage.Indexed(5, func(i int) int {
		if i == 3 {
			panic("r54: indexed")
		}
		return i
	})
}

type r54Scenario struct {
	name string
	// run runs the scenario once and returns what is wrong, or nil.
	run func() error
}

// r54Count runs s and returns the items delivered and Run's error.
func r54Count(ctx context.Context, s stage.Stream[int]) (int, error) {
	n := 0
	err := stage.Run(ctx, s, func(_ context.Context, _ int, err error) error { n++; return err })
	return n, err
}

// r54WantSourceError: a run that failed with the failing source's error
// (or the Indexed panic) after delivering want items, its waiting source
// stopped once.
func r54WantSourceError(n int, err error, want int, stops *atomic.Int32, cause error) error {
	var se *stage.SourceError
	if !errors.As(err, &se) {
		return fmt.Errorf("Run returned %v, want a *SourceError", err)
	}
	if cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("Run returned %v, want it to wrap %v", err, cause)
	}
	if n != want {
		return fmt.Errorf("%d items delivered, want %d", n, want)
	}
	if s := stops.Load(); s != 1 {
		return fmt.Errorf("the waiting source was stopped %d times, want 1", s)
	}
	return nil
}

// r54OpenPanics is a source whose open panics: it fails while the
// pipeline is opened.
func r54OpenPanics() stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		panic("r54: open")
	})
}

func r54Scenarios() []r54Scenario {
	double := func(_ context.Context, v int) (int, error) { return 2 * v, nil }
	return []r54Scenario{
		{"Merge(failing, waiting)", func() error {
			var stops atomic.Int32
			n, err := r54Count(context.Background(), stage.Merge(r54Failing(), r54Waiting(&stops)))
			return r54WantSourceError(n, err, 3, &stops, errR54Boom)
		}},
		{"Merge(waiting, failing)", func() error {
			var stops atomic.Int32
			n, err := r54Count(context.Background(), stage.Merge(r54Waiting(&stops), r54Failing()))
			return r54WantSourceError(n, err, 3, &stops, errR54Boom)
		}},
		{"Merge(Indexed panicking, waiting): the Indexed source opened first makes no sources' context", func() error {
			var stops atomic.Int32
			n, err := r54Count(context.Background(), stage.Merge(r54Panicking(), r54Waiting(&stops)))
			return r54WantSourceError(n, err, 3, &stops, nil)
		}},
		{"Merge(waiting, open panics): a source fails while the pipeline is opened", func() error {
			var stops atomic.Int32
			n, err := r54Count(context.Background(), stage.Merge(r54Waiting(&stops), r54OpenPanics()))
			return r54WantSourceError(n, err, 0, &stops, nil)
		}},
		{"Merge(open panics, Until(waiting)): the waiting source is opened after the failure", func() error {
			var stops atomic.Int32
			stop, cancel := context.WithCancel(context.Background())
			defer cancel()
			n, err := r54Count(context.Background(), stage.Merge(r54OpenPanics(), stage.Until(r54Waiting(&stops), stop)))
			return r54WantSourceError(n, err, 0, &stops, nil)
		}},
		{"Merge(Until(waiting), failing)", func() error {
			var stops atomic.Int32
			stop, cancel := context.WithCancel(context.Background())
			defer cancel()
			n, err := r54Count(context.Background(), stage.Merge(stage.Until(r54Waiting(&stops), stop), r54Failing()))
			return r54WantSourceError(n, err, 3, &stops, errR54Boom)
		}},
		{"Map(Merge(failing, Until(waiting))) with 4 workers", func() error {
			var stops atomic.Int32
			stop, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := stage.Map(stage.Merge(r54Failing(), stage.Until(r54Waiting(&stops), stop)), double, stage.Workers(4), stage.Retry(2, 0))
			n, err := r54Count(context.Background(), s)
			return r54WantSourceError(n, err, 3, &stops, errR54Boom)
		}},
		{"Tee(Merge(failing, waiting)) both branches", func() error {
			var stops atomic.Int32
			b := stage.Tee(stage.Merge(r54Failing(), r54Waiting(&stops)), 2)
			s := stage.Merge(stage.Map(b[0], double), stage.Map(b[1], double, stage.Timeout(1<<40)))
			n, err := r54Count(context.Background(), s)
			return r54WantSourceError(n, err, 6, &stops, errR54Boom)
		}},
		{"Batch(Merge(waiting, failing))", func() error {
			var stops atomic.Int32
			items := 0
			err := stage.Run(context.Background(), stage.Batch(stage.Merge(r54Waiting(&stops), r54Failing()), 2, 0),
				func(_ context.Context, b []int, _ error) error { items += len(b); return nil })
			return r54WantSourceError(items, err, 3, &stops, errR54Boom)
		}},
		{"Tee with a branch not consumed (its check fails): nothing starts, the sources stop", func() error {
			var stops atomic.Int32
			stop, cancel := context.WithCancel(context.Background())
			defer cancel()
			b := stage.Tee(stage.Until(stage.Merge(r54Waiting(&stops), r54Failing()), stop), 3)
			n, err := r54Count(context.Background(), stage.Merge(b[0], stage.Map(b[2], double)))
			if !errors.Is(err, stage.ErrUnconsumedBranch) || n != 0 || stops.Load() != 1 {
				return fmt.Errorf("Run: %v, %d items, %d stops; want ErrUnconsumedBranch, 0 items, 1 stop", err, n, stops.Load())
			}
			return nil
		}},
		{"Until whose stop is done before the run", func() error {
			var stops atomic.Int32
			stop, cancel := context.WithCancel(context.Background())
			cancel()
			n, err := r54Count(context.Background(), stage.Map(stage.Until(r54Waiting(&stops), stop), double))
			if err != nil || n != 0 || stops.Load() != 1 {
				return fmt.Errorf("Run: %v, %d items, %d stops; want nil, 0, 1", err, n, stops.Load())
			}
			return nil
		}},
		{"Until whose stop is done during the run, in a Merge with a slice", func() error {
			stop, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := make(chan int)
			go func() {
				for i := 0; ; i++ {
					select {
					case ch <- i:
					case <-stop.Done():
						return
					}
				}
			}()
			n := 0
			in := stage.Merge(stage.Until(source.Chan(ch), stop), source.Slice(ints(10)))
			err := stage.Run(context.Background(), stage.Map(in, double, stage.Workers(3)), func(context.Context, int, error) error {
				if n++; n == 20 {
					cancel()
				}
				return nil
			})
			if err != nil || n < 20 {
				return fmt.Errorf("Run: %v after %d items; want nil after at least 20", err, n)
			}
			return nil
		}},
		{"nested Until, the inner stop done during the run", func() error {
			outer, cancelOuter := context.WithCancel(context.Background())
			defer cancelOuter()
			inner, cancelInner := context.WithCancel(context.Background())
			defer cancelInner()
			n := 0
			src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				i := 0
				return func(context.Context) (int, error) { i++; return i, nil }, nil
			})
			s := stage.Until(stage.Map(stage.Until(src, inner), double, stage.Workers(2)), outer)
			err := stage.Run(context.Background(), s, func(context.Context, int, error) error {
				if n++; n == 5 {
					cancelInner()
				}
				return nil
			})
			if err != nil || n < 5 {
				return fmt.Errorf("Run: %v after %d items; want nil after at least 5", err, n)
			}
			return nil
		}},
	}
}

// TestReview54OpeningPartShapes runs each scenario many times, several at
// once, under a hang watchdog, and checks that no goroutine of the runs
// outlives them.
func TestReview54OpeningPartShapes(t *testing.T) {
	for _, sc := range r54Scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			_, before := runcheck.Goroutines()
			var mu sync.Mutex
			var problems []string
			runcheck.NoHang(t, sc.name, func() {
				var wg sync.WaitGroup
				for range 4 {
					wg.Go(func() {
						for range 25 {
							if err := sc.run(); err != nil {
								mu.Lock()
								problems = append(problems, err.Error())
								mu.Unlock()
								return
							}
						}
					})
				}
				wg.Wait()
			})
			if len(problems) > 0 {
				t.Fatalf("%d of the runs went wrong, e.g.: %s", len(problems), problems[0])
			}
			if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
				t.Fatalf("%d goroutine(s) outlived the runs:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			}
		})
	}
}
