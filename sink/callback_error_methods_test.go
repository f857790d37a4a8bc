package sink_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// nilUnwrap is a callback's bug: a typed nil whose Unwrap reads its
// receiver, so that classifying it (is it a stop?) panics.
type nilUnwrap struct{ cause error }

func (e *nilUnwrap) Error() string { return "nilUnwrap" }
func (e *nilUnwrap) Unwrap() error { return e.cause }

// A callback's error is user code down to its methods: one whose Unwrap
// panics when the sink asks whether it is a stop fails the run like any
// other error (a *stage.Error naming the sink and wrapping it), and
// ForEach does not panic.
func TestCallbackErrorWhoseMethodsPanic(t *testing.T) {
	in := []int{1, 2, 3}
	for name, run := range map[string]func() error{
		"ForEach": func() error {
			return sink.ForEach(context.Background(), source.Slice(in), func(context.Context, int) error {
				var err *nilUnwrap
				return err
			})
		},
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			var escaped any
			func() {
				defer func() { escaped = recover() }()
				err = run()
			}()
			if escaped != nil {
				t.Fatalf("the sink panicked: %v", escaped)
			}
			var se *stage.Error
			if !errors.As(err, &se) || se.Index != 0 {
				t.Fatalf("err = %#v, want a *stage.Error at index 0", err)
			}
			if _, ok := se.Err.(*nilUnwrap); !ok {
				t.Fatalf("the *stage.Error wraps %T, want the callback's *nilUnwrap", se.Err)
			}
		})
	}
}
