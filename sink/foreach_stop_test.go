package sink_test

import (
	"context"
	"errors"
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
