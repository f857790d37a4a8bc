package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Review 15 (white-box): Run's deliver classifies the callback's error with
// IsStop (errors.Is and errors.As, which call the error's own Is, As and
// Unwrap methods) outside any guard. A callback that returns a typed nil of
// an error type whose Unwrap reads its receiver returns a non-nil error, and
// Run panics in IsStop instead of ending the run with that error. Run's doc:
// f returns "any other error to end the run with it ... and Run returns it".
// (sink.ForEach calls stage.IsStop on its callback's error the same way,
// outside its guard.)

type review15RunNilErr struct{ cause error }

func (e *review15RunNilErr) Error() string { return "review15: " + e.cause.Error() }
func (e *review15RunNilErr) Unwrap() error { return e.cause }

func TestReview15RunCallbackTypedNilError(t *testing.T) {
	var got error
	var escaped any
	func() {
		defer func() { escaped = recover() }()
		got = stage.Run(context.Background(), source.Slice([]int{1, 2, 3}), func(context.Context, int, error) error {
			var err *review15RunNilErr // the callback's bug: a typed nil
			return err
		})
	}()
	if escaped != nil {
		t.Fatalf("Run panicked classifying the callback's error: %v", escaped)
	}
	var want *review15RunNilErr
	if !errors.As(got, &want) {
		t.Fatalf("Run returned %v, want the callback's error", fmt.Sprintf("%T", got))
	}
}
