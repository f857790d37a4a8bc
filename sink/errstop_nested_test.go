package sink_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// A *stage.Error of a stage whose function returned ErrStop (a failure:
// FailFast) wraps ErrStop. A ForEach callback that returns such a failure
// (from a nested run, the usual "return err") fails the outer run with it
// (stage.IsStop): "a sink never reports success for a run that failed".
// It returned nil before IsStop.
func TestCallbackReturningAWrappedStageErrStopIsNotSuccess(t *testing.T) {
	inner := func() error {
		s := stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) { return 0, stage.ErrStop }, stage.Workers(1))
		_, err := sink.Count(context.Background(), s)
		return err // a *stage.Error (FailFast) wrapping ErrStop
	}
	if err := inner(); err == nil {
		t.Fatal("the inner run succeeded")
	}
	calls := 0
	err := sink.ForEach(context.Background(), source.Slice([]int{1, 2, 3}), func(context.Context, int) error {
		calls++
		return inner()
	})
	var se *stage.Error
	if err == nil || !errors.As(err, &se) {
		t.Fatalf("ForEach = %v after %d calls; its callback failed with the inner run's *stage.Error, want that failure", err, calls)
	}
}
