package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// IsStop: ErrStop, or an error wrapping it, is a stop; an ErrStop inside
// an *Error or a *SourceError is a failure some run reported.
func TestIsStop(t *testing.T) {
	itemErr := &stage.Error{Stage: "map#1", Err: stage.ErrStop}
	for name, c := range map[string]struct {
		err  error
		stop bool
	}{
		"nil":                      {nil, false},
		"other":                    {errors.New("x"), false},
		"ErrStop":                  {stage.ErrStop, true},
		"wrapped":                  {fmt.Errorf("enough: %w", stage.ErrStop), true},
		"joined":                   {errors.Join(errors.New("x"), stage.ErrStop), true},
		"in an *Error":             {itemErr, false},
		"in a wrapped *Error":      {fmt.Errorf("inner run: %w", itemErr), false},
		"in a *SourceError":        {&stage.SourceError{Err: stage.ErrStop}, false},
		"a panic's value":          {&stage.PanicError{Value: stage.ErrStop}, false},
		"wrapped by a panic's":     {&stage.PanicError{Value: fmt.Errorf("enough: %w", stage.ErrStop)}, false},
		"a wrapped *PanicError":    {fmt.Errorf("callback: %w", &stage.PanicError{Value: stage.ErrStop}), false},
		"an *Error of another err": {errors.Join(&stage.Error{Err: errors.New("x")}, stage.ErrStop), true},
		"its Unwrap panics":        {(*unwrapPanics)(nil), false},
		"its Is panics":            {isPanics{}, false},
		"joined, its Is panics":    {errors.Join(isPanics{}, stage.ErrStop), false},
	} {
		if got := stage.IsStop(c.err); got != c.stop {
			t.Errorf("%s: IsStop = %v, want %v", name, got, c.stop)
		}
	}
}

// unwrapPanics is a callback's bug: a typed nil whose Unwrap reads its
// receiver.
type unwrapPanics struct{ cause error }

func (e *unwrapPanics) Error() string { return "unwrapPanics" }
func (e *unwrapPanics) Unwrap() error { return e.cause }

// isPanics is an error whose Is method panics.
type isPanics struct{}

func (isPanics) Error() string { return "isPanics" }
func (isPanics) Is(error) bool { panic("isPanics.Is") }

// A Run callback that returns the failure of a run of its own, in which a
// stage returned ErrStop, fails the run with it: it is not a stop.
func TestRunCallbackReturningANestedErrStopFailure(t *testing.T) {
	inner := stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) { return 0, stage.ErrStop })
	err := stage.Run(context.Background(), source.Slice([]int{1, 2}), func(ctx context.Context, _ int, _ error) error {
		return stage.Run(ctx, inner, func(context.Context, int, error) error { return nil })
	})
	var e *stage.Error
	if !errors.As(err, &e) || !errors.Is(err, stage.ErrStop) {
		t.Fatalf("Run = %v, want the inner run's *stage.Error", err)
	}
}

// A run cancelled with a cause returns the context's error and the cause;
// telling whether the cause is that error itself calls the cause's Is,
// which is user code: one that panics does not crash the sink.
func TestCancelCauseWhoseIsPanics(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(isPanics{})
	var err error
	var escaped any
	func() {
		defer func() { escaped = recover() }()
		err = stage.Run(ctx, source.Slice([]int{1, 2, 3}), func(context.Context, int, error) error { return nil })
	}()
	if escaped != nil {
		t.Fatalf("Run panicked: %v", escaped)
	}
	var cause isPanics
	if !errors.As(err, &cause) {
		t.Fatalf("Run = %v, want the context's error with the cause", err)
	}
}
