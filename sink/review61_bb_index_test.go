package sink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR61 = errors.New("r61 boom")

// stage.Error.Index: "Index is the item's 0-based position in the stage's
// input. Forwarded errors count as items." and Stage: "for a sink callback,
// the sink's kind ("foreach", "reduce")".
// The sink's input here is 0, err(1), 2, 3 (one worker each: input order).
func TestReview61BBForEachIndexCountsForwarded(t *testing.T) {
	for _, w := range []int{1} {
		for _, buf := range []int{0, 1} {
			t.Run(fmt.Sprintf("w%d_buf%d", w, buf), func(t *testing.T) {
				s := stage.Map(source.Slice([]int{0, 1, 2, 3}), failAtR61(1), stage.Workers(w), stage.Buffer(buf), stage.OnError(stage.Forward))
				errCb := errors.New("cb")
				err := sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
					if v == 2 {
						return errCb
					}
					return nil
				})
				var se *stage.Error
				if !errors.As(err, &se) || !errors.Is(err, errCb) {
					t.Fatalf("err = %v, want a *stage.Error wrapping errCb", err)
				}
				if se.Stage != "foreach" || se.Index != 2 || se.Input != any(2) {
					t.Fatalf("got Stage %q Index %d Input %v; want foreach, 2 (forwarded errors count as items), 2", se.Stage, se.Index, se.Input)
				}
			})
		}
	}
}

// Same promise for a stage after a Forward stage: "Forwarded errors count as items."
func TestReview61BBMapIndexCountsForwarded(t *testing.T) {
	for _, buf := range []int{0, 1} {
		t.Run(fmt.Sprint("buf", buf), func(t *testing.T) {
			a := stage.Map(source.Slice([]int{0, 1, 2, 3, 4}), failAtR61(1), stage.Workers(1), stage.Buffer(buf), stage.OnError(stage.Forward))
			b := stage.Map(a, failAtR61(3), stage.Workers(1), stage.Name("b"))
			_, err := sink.Slice(context.Background(), b)
			var se *stage.Error
			// The first *Error in the chain may be the forwarded one (joined); find b's.
			var found *stage.Error
			for _, e := range flattenR61(err) {
				if errors.As(e, &se) && se.Stage == "b" {
					found = se
				}
			}
			if found == nil || found.Index != 3 || found.Input != any(3) {
				t.Fatalf("err = %v; want b's *Error at Index 3 (input 0, err, 2, 3)", err)
			}
		})
	}
}

// stage.Error.Index: "Index is the item's 0-based position in the stage's
// input." After a Handle that dropped item 1, the next stage's input is
// 0, 2, 3, 4: the value 3 is at position 2. After a FlatMap of two outputs
// per item, the output (v, 10+v) of item 2 is at position 5.
func TestReview61BBIndexAfterDropAndFlatMap(t *testing.T) {
	t.Run("handle", func(t *testing.T) {
		a := stage.Map(source.Slice([]int{0, 1, 2, 3, 4}), failAtR61(1), stage.Workers(1), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
		b := stage.Map(a, failAtR61(3), stage.Workers(1), stage.Name("b"))
		_, err := sink.Slice(context.Background(), b)
		wantIndexR61(t, err, "b", 2)
	})
	t.Run("flatmap", func(t *testing.T) {
		a := stage.FlatMap(source.Slice([]int{0, 1, 2, 3}), func(_ context.Context, v int) ([]int, error) {
			return []int{v, 10 + v}, nil
		}, stage.Workers(1))
		b := stage.Map(a, failAtR61(12), stage.Workers(1), stage.Name("b"))
		_, err := sink.Slice(context.Background(), b)
		wantIndexR61(t, err, "b", 5)
	})
	t.Run("unbatch", func(t *testing.T) {
		a := stage.Unbatch(stage.Batch(source.Slice([]int{0, 1, 2, 3, 4, 5, 6}), 3, 0))
		b := stage.Map(a, failAtR61(5), stage.Workers(1), stage.Name("b"))
		_, err := sink.Slice(context.Background(), b)
		wantIndexR61(t, err, "b", 5)
	})
	t.Run("batchconsumer", func(t *testing.T) {
		a := stage.Batch(source.Slice([]int{0, 1, 2, 3, 4, 5, 6}), 3, 0)
		b := stage.Map(a, func(_ context.Context, v []int) (int, error) {
			if v[0] == 6 {
				return 0, errR61
			}
			return len(v), nil
		}, stage.Workers(1), stage.Name("b"))
		_, err := sink.Slice(context.Background(), b)
		wantIndexR61(t, err, "b", 2)
	})
	t.Run("reduce_after_forward", func(t *testing.T) {
		a := stage.Map(source.Slice([]int{0, 1, 2, 3}), failAtR61(0), stage.Workers(1), stage.OnError(stage.Forward))
		acc, err := sink.Reduce(context.Background(), a, 0, func(acc, v int) int {
			if v == 2 {
				panic("r61")
			}
			return acc + v
		})
		var se *stage.Error
		var pe *stage.PanicError
		found := false
		for _, e := range flattenR61(err) {
			if errors.As(e, &se) && se.Stage == "reduce" {
				found = true
				if se.Index != 2 || se.Input != any(2) || !errors.As(se, &pe) {
					t.Fatalf("reduce *Error = %+v; want Index 2 (err, 1, 2), Input 2, a PanicError", se)
				}
			}
		}
		var fe *sink.ForwardedError
		if !found || acc != 1 || !errors.As(err, &fe) || fe.Count != 1 {
			t.Fatalf("acc %d err %v; want acc 1, reduce *Error, ForwardedError of 1", acc, err)
		}
	})
}

// failAtR61 is a stage function that fails with errR61 at the value bad
// and passes every other value through.
func failAtR61(bad int) func(context.Context, int) (int, error) {
	return func(_ context.Context, v int) (int, error) {
		if v == bad {
			return 0, errR61
		}
		return v, nil
	}
}

// wantIndexR61 fails t unless err holds the named stage's *stage.Error at
// index want.
func wantIndexR61(t *testing.T, err error, name string, want int) {
	t.Helper()
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != name || se.Index != want {
		t.Fatalf("err = %v (%+v); want %s's *Error at Index %d", err, se, name, want)
	}
}

func flattenR61(err error) []error {
	if err == nil {
		return nil
	}
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, flattenR61(e)...)
		}
	}
	return out
}
