package sink_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// uncomparableErr is an error whose dynamic type cannot be compared with
// ==: a struct with a slice, returned by value.
type uncomparableErr struct{ parts []string }

func (e uncomparableErr) Error() string { return "uncomparable" }

// TestUncomparableErrorsEndTheRun: the docs promise that a stage's or a
// sink's error ends the run and is returned wrapped, whatever the error;
// an error value of an uncomparable type must not crash the run (the
// library may not compare errors with ==). In a child: a crash fails this
// test only.
func TestUncomparableErrorsEndTheRun(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		ctx := context.Background()
		parent, cancel := context.WithCancel(ctx)
		defer cancel()
		for _, c := range []context.Context{ctx, parent} {
			// The sink's function fails.
			err := sink.ForEach(c, source.Slice([]int{1, 2, 3}), func(context.Context, int) error {
				return uncomparableErr{parts: []string{"sink"}}
			})
			var u uncomparableErr
			if !errors.As(err, &u) || u.parts[0] != "sink" {
				t.Fatalf("ForEach: %v, want the uncomparable error", err)
			}
			// A stage fails fast.
			_, err = sink.Slice(c, stage.Map(source.Slice([]int{1, 2, 3}), func(context.Context, int) (int, error) {
				return 0, uncomparableErr{parts: []string{"stage"}}
			}, stage.Workers(2)))
			var se *stage.Error
			if !errors.As(err, &se) || !errors.As(err, &u) || u.parts[0] != "stage" {
				t.Fatalf("Map: %v, want a *stage.Error wrapping the uncomparable error", err)
			}
			// stage.Run's function fails.
			err = stage.Run(c, source.Slice([]int{1, 2, 3}), func(context.Context, int, error) error {
				return uncomparableErr{parts: []string{"run"}}
			})
			if !errors.As(err, &u) || u.parts[0] != "run" {
				t.Fatalf("Run: %v, want the uncomparable error", err)
			}
			// A stage's handler ends the run.
			_, err = sink.Slice(c, stage.Map(source.Slice([]int{1, 2, 3}), func(context.Context, int) (int, error) {
				return 0, errors.New("item")
			}, stage.Workers(2), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
				return uncomparableErr{parts: []string{"handler"}}
			}))))
			if !errors.As(err, &u) || u.parts[0] != "handler" {
				t.Fatalf("handler: %v, want the uncomparable error", err)
			}
		}
	})
}
