package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// policy.go (7787bdb): "Once the run is ending, an error of h's that is the
// context's error or the run's cause means h was cut short"; ack.go: Done is
// not called for an item "whose Handle or Budget handler ..., once the run
// was ending, returned an error that says so", and Done(err) is called when
// "its stage's policy ended the run at it ([FailFast], a Handle or [Budget]
// error)". Budget: "the (n+1)th, which h does not see, fails the run with an
// error that wraps both [ErrBudget] and that item's *[Error]".
//
// config.failed applies the cut-short test to whatever handler.handle
// returns, and that includes Budget's OWN error for the (n+1)th item, which
// no handler made (h is not called for it): it wraps the item's *Error, and
// so the item's cause. An item whose function failed for real, while the
// run was live, with an error that wraps context.DeadlineExceeded (its own
// Timeout, a client's deadline) or context.Canceled (a sub-context of its
// own), and whose budget verdict comes after a FailFast elsewhere cancelled
// the run, is taken for a handler cut short: its Ack is abandoned. Under
// FailFast, the very same item in the very same order is told its error
// (the "failfast-control" case passes): Budget(0), documented as failing
// the run at the first failed item as FailFast does, leaves it unsettled.
//
// Forced order: the stage's watcher sees the item's *Error in Finished
// (after the stepper found the run live, before the policy runs) and holds
// it there until another branch's FailFast error has cancelled the run (a
// third branch's function, called before that error, sees its ctx end and
// says so).
func TestReview27BudgetOwnErrorTakenForHandlerCutShort(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy stage.ErrorPolicy
		want   error
	}{
		{"failfast-control", stage.FailFast, context.DeadlineExceeded},
		{"budget0", stage.Budget(0, nil), stage.ErrBudget},
		{"budget0-canceled-cause", stage.Budget(0, nil), stage.ErrBudget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cause := fmt.Errorf("lookup: %w", context.DeadlineExceeded) // the call's own deadline
			if tc.name == "budget0-canceled-cause" {
				cause = fmt.Errorf("lookup: %w", context.Canceled) // a sub-context of its own
			}
			a := newR26Acks()
			mFailed := make(chan struct{})
			cancelled := make(chan struct{})
			witnessIn := make(chan struct{})
			ctx := stage.Observe(context.Background(), r27Observer{name: "m", onFinished: func(err error) {
				var e *stage.Error
				if errors.As(err, &e) {
					close(mFailed)
					r26Wait(t, cancelled, "the other branch's FailFast")
				}
			}})
			m := stage.Map(a.source(1), func(context.Context, int) (int, error) { return 0, cause },
				stage.Workers(2), stage.Name("m"), stage.OnError(tc.policy))
			boom := errors.New("review27: boom")
			other := stage.Map(source.Slice([]int{0}), func(context.Context, int) (int, error) {
				r26Wait(t, mFailed, "m's failure")
				r26Wait(t, witnessIn, "the witness's call")
				return 0, boom
			}, stage.Workers(2), stage.Buffer(1), stage.Name("other"))
			witness := stage.Map(source.Slice([]int{0}), func(ctx context.Context, _ int) (int, error) {
				close(witnessIn)
				<-ctx.Done()
				close(cancelled)
				return 0, ctx.Err()
			}, stage.Workers(2), stage.Buffer(1), stage.Name("witness"))
			var err error
			hangGuard(t, func() {
				err = stage.Run(ctx, stage.Merge(m, other, witness), func(context.Context, int, error) error { return nil })
			})
			if !errors.Is(err, boom) {
				t.Fatalf("Run = %v, want boom (the first failure)", err)
			}
			if !errors.Is(a.errOf(0), tc.want) {
				t.Errorf("item 0, whose function failed while the run was live (%v) and whose policy (%s) then judged it: Done(%s), want its failure (errors.Is %v): no handler was cut short, Budget's own verdict was taken for one", cause, tc.policy, a.fate(0), tc.want)
			}
		})
	}
}
