package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview59NestedRunFailedByAHandlerStop: a Handle (or Budget) handler
// that returns ErrStop fails its run with it ("if h returns an error, the
// run fails with it as with FailFast, and the sink returns h's error").
// The sink returned it bare, so a callback of an outer run that returned
// that failure (the usual "return err" of a nested run) stopped the outer
// run, which returned nil: the inner failure was lost (10 of 10 before the
// fix; the sink now returns it wrapped in an *Error, as Handle's doc says).
//
// IsStop: "Those are failures: some run reported them (a stage's function,
// or a source, returned ErrStop), so a callback that returns one, say from
// a run of its own, fails the run with it". README: "A sink never reports
// success for a run that failed." (The same callback returning the failure
// of a FailFast stage whose function returned ErrStop fails the outer run:
// sink's TestCallbackReturningAWrappedStageErrStopIsNotSuccess.)
func TestReview59NestedRunFailedByAHandlerStop(t *testing.T) {
	errItem := errors.New("item failed")
	for _, pol := range []struct {
		name string
		p    stage.ErrorPolicy
	}{
		{"handle", stage.Handle(func(context.Context, *stage.Error) error { return stage.ErrStop })},
		{"budget", stage.Budget(5, func(context.Context, *stage.Error) error { return stage.ErrStop })},
		{"keyby-handle", stage.Handle(func(context.Context, *stage.Error) error { return stage.ErrStop })},
	} {
		t.Run(pol.name, func(t *testing.T) {
			inner := func() error {
				opts := []stage.Option{stage.Workers(2), stage.OnError(pol.p)}
				if pol.name == "keyby-handle" {
					opts = append(opts, stage.KeyBy(func(v int) int { return v % 2 }))
				}
				s := stage.Map(source.Slice([]int{1, 2, 3}), func(_ context.Context, v int) (int, error) {
					if v == 2 {
						return 0, errItem
					}
					return v, nil
				}, opts...)
				_, err := sink.Count(context.Background(), s)
				return err
			}
			innerErr := inner()
			if innerErr == nil {
				t.Fatal("the inner run succeeded; want it failed by its handler's error")
			}
			calls := 0
			var err error
			rvRun(t, func() {
				err = sink.ForEach(context.Background(), source.Slice([]int{1, 2, 3}), func(context.Context, int) error {
					calls++
					return inner()
				})
			})
			if err == nil {
				t.Errorf("ForEach = nil after %d call(s); its callback returned the failure of its nested run (%v: %s), want that failure",
					calls, innerErr, fmt.Sprintf("IsStop=%v", stage.IsStop(innerErr)))
			}
		})
	}
}
