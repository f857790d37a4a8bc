package sink_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// stage.Budget: "the first n failed items of a run are dropped after being
// passed to h (which may be nil), and the (n+1)th, which h does not see,
// fails the run with an error that wraps both ErrBudget and that item's
// *Error ... Calls of h never overlap within a stage." Many workers, every
// item failing, in several shapes: h sees exactly n items, never two at once,
// and the run fails with ErrBudget.
func TestReview61BBBudgetExactUnderConcurrency(t *testing.T) {
	for _, w := range []int{2, 8, -1} {
		for _, extra := range []string{"plain", "ordered", "keyby", "retry", "buffer"} {
			for _, n := range []int{0, 1, 3} {
				t.Run(fmt.Sprintf("w%d/%s/n%d", w, extra, n), func(t *testing.T) {
					var seen, in, overlap atomic.Int32
					h := func(_ context.Context, e *stage.Error) error {
						if in.Add(1) > 1 {
							overlap.Add(1)
						}
						runtime.Gosched()
						seen.Add(1)
						in.Add(-1)
						return nil
					}
					opts := []stage.Option{stage.Workers(w), stage.Name("b"), stage.OnError(stage.Budget(n, h))}
					switch extra {
					case "ordered":
						opts = append(opts, stage.Ordered())
					case "keyby":
						opts = append(opts, stage.KeyBy(func(v int) int { return v % 3 }))
					case "retry":
						opts = append(opts, stage.Retry(2, 0))
					case "buffer":
						opts = append(opts, stage.Buffer(4))
					}
					items := make([]int, 64)
					for i := range items {
						items[i] = i
					}
					s := stage.Map(source.Slice(items), func(_ context.Context, v int) (int, error) {
						runtime.Gosched()
						return 0, errR61
					}, opts...)
					var err error
					runcheck.Run(t, "run", func() { _, err = sink.Slice(context.Background(), s) })
					var se *stage.Error
					if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || se.Stage != "b" || !errors.Is(err, errR61) {
						t.Fatalf("err %v; want ErrBudget and b's *Error", err)
					}
					if seen.Load() != int32(n) || overlap.Load() != 0 {
						t.Fatalf("h saw %d items (want %d), overlapping %d times", seen.Load(), n, overlap.Load())
					}
				})
			}
		}
	}
}

// stage.Budget: "If h returns an error, the run fails with it at once, as
// with Handle." Handle: "(one that IsStop would take for a stop, such as
// ErrStop, comes wrapped in an *Error of the item's stage and index, so that a
// callback that returns it from a run of its own fails that run too)".
func TestReview61BBBudgetHandlerErrStop(t *testing.T) {
	for _, ret := range []error{stage.ErrStop, fmt.Errorf("wrapped: %w", stage.ErrStop), errors.Join(errR61, stage.ErrStop)} {
		s := stage.Map(source.Slice([]int{0, 1, 2, 3}), func(_ context.Context, v int) (int, error) {
			if v == 2 {
				return 0, errR61
			}
			return v, nil
		}, stage.Workers(1), stage.Name("b"), stage.OnError(stage.Budget(3, func(context.Context, *stage.Error) error { return ret })))
		var err error
		runcheck.Run(t, "run", func() { _, err = sink.Count(context.Background(), s) })
		var se *stage.Error
		if err == nil || stage.IsStop(err) || !errors.Is(err, stage.ErrStop) || !errors.As(err, &se) || se.Stage != "b" || se.Index != 2 {
			t.Fatalf("h returns %v: Count err = %v (IsStop %v); want a failure wrapped in b's *Error at 2", ret, err, stage.IsStop(err))
		}
	}
}
