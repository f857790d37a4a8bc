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

// TestForEachErrStop pins ForEach's doc: f returning stage.ErrStop ends the
// run early without an error: nil, or the *ForwardedError of the errors
// forwarded before; f sees nothing after it.
func TestForEachErrStop(t *testing.T) {
	for _, forward := range []bool{false, true} {
		s := stage.Map(source.Slice([]int{0, 1, 2, 3, 4, 5, 6, 7}), func(_ context.Context, x int) (int, error) {
			if forward && x == 1 {
				return 0, errors.New("forwarded")
			}
			return x, nil
		}, stage.Workers(1), stage.OnError(stage.Forward))
		var seen []int
		err := sink.ForEach(context.Background(), s, func(_ context.Context, x int) error {
			seen = append(seen, x)
			if x == 3 {
				return stage.ErrStop
			}
			return nil
		})
		var fe *sink.ForwardedError
		switch {
		case len(seen) == 0 || seen[len(seen)-1] != 3:
			t.Fatalf("forward=%v: f saw %v, want it to end at 3", forward, seen)
		case !forward && err != nil:
			t.Fatalf("ErrStop: %v, want nil", err)
		case forward && !(errors.As(err, &fe) && fe.Count == 1):
			t.Fatalf("ErrStop after a forwarded error: %v, want a *sink.ForwardedError of 1", err)
		}
	}
}

// ErrStop "or an error that wraps it": a ForEach callback, or Run's, that
// returns ErrStop wrapped with context ends the run early without an
// error, as ErrStop itself does.
func TestForEachWrappedErrStop(t *testing.T) {
	var seen []int
	err := sink.ForEach(context.Background(), source.Slice([]int{0, 1, 2, 3}), func(_ context.Context, x int) error {
		seen = append(seen, x)
		if x == 1 {
			return fmt.Errorf("enough at %d: %w", x, stage.ErrStop)
		}
		return nil
	})
	if err != nil || len(seen) != 2 {
		t.Fatalf("ForEach = %v after %v, want nil after [0 1]", err, seen)
	}
	n := 0
	err = stage.Run(context.Background(), source.Slice([]int{0, 1, 2, 3}), func(context.Context, int, error) error {
		if n++; n == 3 {
			return fmt.Errorf("wrapped: %w", stage.ErrStop)
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Run = %v after %d calls, want nil after 3", err, n)
	}
}
