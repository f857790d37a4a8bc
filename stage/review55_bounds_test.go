package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview55_ReadAheadWhileSinkBlocked attacks "no stage is more than its
// workers plus its buffer ahead of its consumer", "An Ordered() stage takes at
// most 2×workers+buffer items that its consumer has not yet taken", and
// (Run) "the pipeline may then hold one item more than the read-ahead that f
// has not seen yet": while the sink's callback holds an item, the items a
// source gave out never exceed that bound, for cheap calls that may run in
// the consumer's goroutines and for every small Workers and Buffer.
//
// The bound checked is the documented one, with the item a waiting sink may
// be handed: whether that hand-over happens depends on timing, so this test
// catches a stage that runs ahead past it, not one that is one item over
// the tighter bound of a run without a hand-over (a read-ahead of
// workers+buffer+1 passes here; the Apply and KeyBy bound tests catch it).
func TestReview55_ReadAheadWhileSinkBlocked(t *testing.T) {
	const n = 200
	for _, srcName := range []string{"neverwaits", "waiting", "interruptible"} {
		var src r55Src
		for _, s := range r55Sources {
			if s.name == srcName {
				src = s
			}
		}
		for _, w := range []int{1, 2, 3, 4} {
			for _, ordered := range []bool{false, true} {
				for _, buf := range []int{0, 1, 2} {
					for _, holdAt := range []int{0, 2, 150} {
						label := fmt.Sprintf("%s/w=%d/ordered=%v/buf=%d/hold=%d", srcName, w, ordered, buf, holdAt)
						var nexts, stops atomic.Int64
						s := stage.Map(src.make(n, &nexts, &stops), func(_ context.Context, x int) (int, error) { return x, nil }, r55Opts(w, ordered, buf)...)
						bound := int64(w + buf + 1)
						if ordered {
							bound = int64(2*w + buf + 1)
						}
						seen := int64(0)
						var worst int64
						sum := 0
						var err error
						runcheck.NoHang(t, label, func() {
							err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
								seen++
								sum += v
								if seen-1 == int64(holdAt) {
									for range 30 {
										runtime.Gosched()
										time.Sleep(50 * time.Microsecond) // let the stage overrun, if it would
										if ahead := nexts.Load() - (seen - 1); ahead > worst {
											worst = ahead
										}
									}
								}
								return nil
							})
						})
						if err != nil || sum != n*(n-1)/2 || seen != n {
							t.Fatalf("%s: %d items, sum %d, err %v", label, seen, sum, err)
						}
						if worst > bound {
							t.Fatalf("%s: the source gave %d items the sink had not finished, bound %d", label, worst, bound)
						}
					}
				}
			}
		}
	}
}

// TestReview55_BudgetPerRun attacks (Budget) "The count is per stage and per
// run: each run starts with a full budget" and "fails the run at the (n+1)th
// failure, with an error wrapping stage.ErrBudget" (and that item's *Error),
// for one built pipeline run many times in a row and at once, with tiny
// inputs and Workers(1) (input order, so the (n+1)th is known).
func TestReview55_BudgetPerRun(t *testing.T) {
	for _, budget := range []int{0, 1, 2} {
		for _, w := range []int{1, 3} {
			var handled atomic.Int64
			s := stage.Map(source.Slice(r55Ints(5)), func(ctx context.Context, x int) (int, error) {
				if x < r55RunID(ctx) { // the run's id says how many items fail
					return 0, errR55Planned
				}
				return x, nil
			}, stage.Workers(w), stage.OnError(stage.Budget(budget, func(context.Context, *stage.Error) error {
				handled.Add(1)
				return nil
			})))
			check := func(fails int) string {
				ctx := context.WithValue(context.Background(), r55Key{}, fails)
				got, err := sink.Slice(ctx, s)
				if fails <= budget {
					if err != nil || len(got) != 5-fails {
						return fmt.Sprintf("budget %d w %d, %d failures: %v %v", budget, w, fails, got, err)
					}
					return ""
				}
				var se *stage.Error
				if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || !errors.Is(err, errR55Planned) {
					return fmt.Sprintf("budget %d w %d, %d failures: %v, want ErrBudget and the item's *Error", budget, w, fails, err)
				}
				if w == 1 && se.Index != budget {
					return fmt.Sprintf("budget %d, %d failures: the (n+1)th failure is item %d, error names %d", budget, fails, budget, se.Index)
				}
				return ""
			}
			for rep := range 30 {
				for fails := 0; fails <= 5; fails++ {
					if msg := check(fails); msg != "" {
						t.Fatalf("rep %d: %s", rep, msg)
					}
				}
			}
			// At once: runs within their budget must all succeed.
			errs := make(chan string, 64)
			done := make(chan struct{})
			for g := range 8 {
				go func() {
					defer func() { done <- struct{}{} }()
					for rep := range 30 {
						if msg := check((g + rep) % (budget + 1)); msg != "" {
							errs <- msg
							return
						}
					}
				}()
			}
			runcheck.NoHang(t, "concurrent budget runs", func() {
				for range 8 {
					<-done
				}
			})
			close(errs)
			for msg := range errs {
				t.Fatal(msg)
			}
		}
	}
}

// TestReview55_UntilStoppedBeforeRun attacks (Until) "Once stop is done, no
// source upstream is asked for another item" and "the sink returns nil":
// with stop done before the run, over tiny runs and every small Workers.
func TestReview55_UntilStoppedBeforeRun(t *testing.T) {
	stop, cancel := context.WithCancel(context.Background())
	cancel()
	for _, srcName := range []string{"neverwaits", "waiting", "interruptible"} {
		var src r55Src
		for _, s := range r55Sources {
			if s.name == srcName {
				src = s
			}
		}
		for _, n := range r55Sizes {
			for _, w := range r55Workers {
				for _, ordered := range []bool{false, true} {
					label := fmt.Sprintf("%s/n=%d/w=%d/ordered=%v", srcName, n, w, ordered)
					var nexts, stops atomic.Int64
					s := stage.Map(stage.Until(src.make(n, &nexts, &stops), stop), func(_ context.Context, x int) (int, error) { return x, nil }, r55Opts(w, ordered, 0)...)
					for run := range 3 {
						nexts.Store(0)
						stops.Store(0)
						var cnt int
						var err error
						runcheck.NoHang(t, label, func() { cnt, err = sink.Count(context.Background(), s) })
						if err != nil || cnt != 0 || nexts.Load() != 0 || stops.Load() != 1 {
							t.Fatalf("%s run %d: count %d err %v, %d items taken, %d stops", label, run, cnt, err, nexts.Load(), stops.Load())
						}
					}
				}
			}
		}
	}
}
