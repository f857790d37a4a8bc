package sink_test

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The README: a callback that returns stage.ErrStop ends the run with nil,
// whatever happened meanwhile, a cancellation of the caller's ctx included
// (cancelling ctx makes the sink return context.Canceled only when the
// callback had not stopped the run first).
func TestErrStopWinsOverACancellationMeanwhile(t *testing.T) {
	for _, mode := range []string{"bare", "stage"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := source.Slice([]int{1, 2, 3})
			if mode == "stage" {
				s = stage.Map(s, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(2), stage.Buffer(1))
			}
			err := sink.ForEach(ctx, s, func(context.Context, int) error {
				cancel() // the caller cancels while the callback runs
				return stage.ErrStop
			})
			if err != nil {
				t.Fatalf("ForEach = %v; want nil: ErrStop wins over a cancellation meanwhile", err)
			}
		})
	}
}
