package stage_test

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview94EveryLazyPlaceStartedThenTheRunEnds: Workers, "Over an input
// of unknown length (and over one of more than 64 items), a stage starts at
// most 64 workers at once ... and each further one when a worker has just
// taken an item, so a large n starts about as many goroutines as the input
// has items, up to n", and "with enough input ... exactly n". Here n is 70
// over a channel of 200 items, and each call waits until all 70 calls have
// begun (a barrier; Buffer(1) keeps every worker a goroutine of the
// stage's own, as Workers advises for one): every place past the first 64
// must start, and once the last has started, the stage must still end
// when its input does. A stage that kept waiting for a place it had
// already started would never let the sink return.
func TestReview94EveryLazyPlaceStartedThenTheRunEnds(t *testing.T) {
	const n, items = 70, 200
	ch := make(chan int, items)
	for i := range items {
		ch <- i
	}
	close(ch)
	barrier := newR2Barrier(n)
	s := stage.Map(source.Chan(ch), func(_ context.Context, v int) (int, error) {
		return v, barrier.wait()
	}, stage.Workers(n), stage.Buffer(1))
	var got int
	var err error
	hangGuard(t, func() { got, err = sink.Count(context.Background(), s) })
	if err != nil || got != items {
		t.Fatalf("sink.Count = %d, %v; want %d, nil", got, err, items)
	}
}
