package stage_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview94OrderedFusedItemOfManyOutputs: FlatMap, "emits the
// elements of the slice it returns, in slice order; with [Ordered], all
// outputs of one item leave before those of the next". Over a source of one
// item, an Ordered stage's only item runs in the consumer's goroutine (see
// fuseRun, startIdle): its outputs must wait for the item's end, never
// stream to the queue that same goroutine consumes, or the call waits for
// room only it could make. An item of far more outputs than the window's
// bound (2×workers) must reach the sink whole, in order.
func TestReview94OrderedFusedItemOfManyOutputs(t *testing.T) {
	for _, workers := range []int{2, 4} {
		for _, n := range []int{64, 1000} {
			t.Run(fmt.Sprintf("workers=%d/n=%d", workers, n), func(t *testing.T) {
				s := stage.FlatMap(source.Slice([]int{n}), func(_ context.Context, n int) ([]int, error) {
					return ints(n), nil
				}, stage.Ordered(), stage.Workers(workers))
				var got []int
				var err error
				hangGuard(t, func() { got, err = sink.Slice(context.Background(), s) })
				if err != nil || fmt.Sprint(got) != fmt.Sprint(ints(n)) {
					t.Fatalf("got %d outputs %v, err %v; want 0..%d", len(got), got, err, n-1)
				}
			})
		}
	}
}
