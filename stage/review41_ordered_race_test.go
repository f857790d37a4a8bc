package stage_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview41OrderedHeadEmitsWhileEmitterMoves is the race of
// TestReview41OrderedTurnComesConsumerGated made likelier: item 1 parks a
// few outputs behind item 0, then both are let go by one gate: item 0
// returns (its worker moves item 1's parked outputs to the queue) while
// item 1, whose turn has come, emits in a tight loop. The consumer is gated
// inside its first output. Apply: "from then on emit queues them directly
// ... and may wait for its own outputs to be consumed", and "Each further
// output waits while the stage's queue holds as many outputs as its
// read-ahead bound (... with Ordered, its window's 2×workers + buffer)":
// item 1's emits that return true while the consumer is gated must stay
// within its first output, the window's parked outputs, the queue's bound
// and what the consumer holds.
func TestReview41OrderedHeadEmitsWhileEmitterMoves(t *testing.T) {
	const rounds, workers, buffer = 30, 2, 20
	const window = 2*workers + buffer
	const bound = 4*window + 2 // Apply: 4×(2×workers + buffer) besides one per item (two items)
	over := 0
	var worst int64
	for round := range rounds {
		gate, gateC := make(chan struct{}), make(chan struct{})
		var later atomic.Int64
		s := stage.Apply(source.Slice(ints(2)), func(ctx context.Context, v int, emit func(int) bool) error {
			if v == 1 {
				for range window / 2 {
					if !emit(1) {
						return ctx.Err()
					}
					later.Add(1)
				}
			}
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			if v == 0 {
				return nil
			}
			for range r40Cap {
				if !emit(1) {
					return ctx.Err()
				}
				later.Add(1)
			}
			return nil
		}, stage.Workers(workers), stage.Buffer(buffer), stage.Ordered())
		var once sync.Once
		consumer := stage.Map(s, func(ctx context.Context, v int) (int, error) {
			once.Do(func() { <-gateC })
			return v, nil
		}, stage.Workers(1), stage.Buffer(1))
		var n int
		var err error
		done := r40Go(func() { n, err = sink.Count(context.Background(), consumer) })
		r40Settle(&later, r40Cap-1)
		close(gate)
		got := r40Settle(&later, r40Cap-1)
		close(gateC)
		r40Wait(t, done, "the run")
		if err != nil || n != r40Cap+window/2 {
			t.Fatalf("round %d: got %d outputs, %v; want %d", round, n, err, r40Cap+window/2)
		}
		worst = max(worst, got)
		if got > bound {
			over++
		}
	}
	if over > 0 {
		t.Errorf("Ordered Apply, %d workers, buffer %d: in %d of %d rounds the item whose turn had come had more emits return true than %d (its first output, the window's parked outputs, the queue's bound, the consumer's) while the consumer was gated (worst %d of %d)", workers, buffer, over, rounds, bound, worst, r40Cap+window/2)
	}
}
