package sink_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestSliceWithoutValuesIsNil: a run that delivers no value returns a nil
// slice, also when the stream's length is known (the slice is made with
// room before the run).
func TestSliceWithoutValuesIsNil(t *testing.T) {
	boom := errors.New("boom")
	fail := func(context.Context, int) (int, error) { return 0, boom }
	for name, s := range map[string]stage.Stream[int]{
		"empty":     source.Slice([]int{}),
		"forwarded": stage.Map(source.Slice([]int{1, 2, 3}), fail, stage.OnError(stage.Forward)),
		"failed":    stage.Map(source.Slice([]int{1, 2, 3}), fail),
	} {
		got, _ := sink.Slice(context.Background(), s)
		if got != nil {
			t.Errorf("%s: got %#v, want a nil slice", name, got)
		}
	}
}
