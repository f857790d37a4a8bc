package stage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// FailFast doc: "Outputs on their way to the sink then are dropped (once
// the run is cancelled the sink delivers nothing more)". Items 0 and 1
// finish; the sink's callback holds the first of them to arrive until the
// run's context ends; item 2 fails once both have finished and the callback
// holds one. The other output, finished before the failure and never
// delivered, must stay undelivered. (Buffer(1): item 2's call waits for
// its consumer, see Workers.)
func TestFailFastDropsOutputsNotYetDelivered(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for round := range 20 {
			finished := make(chan struct{}, 2)
			holding := make(chan struct{})
			f := func(_ context.Context, x int) (int, error) {
				if x == 2 {
					<-finished
					<-finished
					<-holding
					return 0, errBoom
				}
				finished <- struct{}{}
				return x, nil
			}
			var got []int
			var err error
			runcheck.Run(t, "run", func() {
				err = sink.ForEach(context.Background(), stage.Map(source.Slice([]int{0, 1, 2}), f, stage.Workers(3), stage.Buffer(1)),
					func(ctx context.Context, v int) error {
						got = append(got, v)
						if len(got) == 1 {
							close(holding)
							<-ctx.Done() // item 2 failed
						}
						return nil
					})
			})
			if !errors.Is(err, errBoom) || len(got) != 1 {
				t.Fatalf("round %d: delivered %v, err %v; want one value (the one held) and item 2's failure", round, got, err)
			}
		}
	})
}
