package stage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview41OrderedFurtherEmitsWithinWindow attacks Apply's "With Ordered,
// ... a further output waits while the window holds 2×workers + buffer
// outputs waiting so" and "The first output of an item never waits": item 0
// (the head) runs silent behind a gate, so no item after it has its turn;
// the items after it emit random numbers of outputs (some none, some far
// more than the window). The emits that returned true beyond each item's
// first must stay within 2×workers+buffer. Then the gate opens and every
// output must arrive exactly once, in input order, each item's in emit order.
func TestReview41OrderedFurtherEmitsWithinWindow(t *testing.T) {
	for _, c := range []struct{ workers, buffer int }{{1, 0}, {2, 0}, {3, 0}, {2, 2}, {5, 1}, {3, 7}} {
		t.Run(fmt.Sprintf("workers%d/buffer%d", c.workers, c.buffer), func(t *testing.T) {
			window := int64(2*c.workers + c.buffer)
			n := int(4*window + 8)
			sizes := make([]int, n)
			r := rand.New(rand.NewPCG(uint64(c.workers), uint64(c.buffer)))
			for i := range sizes {
				switch r.IntN(4) {
				case 0:
					sizes[i] = 0
				case 1:
					sizes[i] = 1
				default:
					sizes[i] = 1 + r.IntN(int(3*window))
				}
			}
			sizes[0] = 2
			gate0 := make(chan struct{})
			var firsts, further, started atomic.Int64
			s := stage.Apply(source.Slice(ints(n)), func(ctx context.Context, v int, emit func(r41Out) bool) error {
				if v > 0 {
					started.Add(1)
				}
				if v == 0 {
					select {
					case <-gate0:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				for j := range sizes[v] {
					if !emit(r41Out{v, j, 0}) {
						return ctx.Err()
					}
					if v > 0 {
						if j == 0 {
							firsts.Add(1)
						} else {
							further.Add(1)
						}
					}
				}
				return nil
			}, stage.Workers(c.workers), stage.Buffer(c.buffer), stage.Ordered())
			var got []r41Out
			var err error
			done := r40Go(func() { got, err = sink.Slice(context.Background(), s) })
			held := r40Settle(&further, window)
			heldFirsts, heldStarted := firsts.Load(), started.Load()
			close(gate0)
			r40Wait(t, done, "the run after the head's gate opened")
			if held > window {
				t.Errorf("Ordered Apply, %d workers, buffer %d: items behind a silent head had %d further emits (beyond their first) return true, and %d first emits; the window is %d", c.workers, c.buffer, held, heldFirsts, window)
			}
			// Ordered: "the stage takes at most 2×workers+buffer items from
			// upstream that its consumer has not yet taken" (item 0 is one).
			if heldStarted > window || heldFirsts > window {
				t.Errorf("Ordered Apply, %d workers, buffer %d: %d items after the silent head were called and %d emitted, while the consumer had taken nothing; the window is %d", c.workers, c.buffer, heldStarted, heldFirsts, window)
			}
			if err != nil {
				t.Fatalf("sink.Slice: %v", err)
			}
			var want []r41Out
			for i, k := range sizes {
				for j := range k {
					want = append(want, r41Out{i, j, 0})
				}
			}
			r41SameOutputs(t, got, want)
		})
	}
}

// r41SameOutputs fails t unless got is want.
func r41SameOutputs(t *testing.T, got, want []r41Out) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d outputs, want %d", len(got), len(want))
	}
	for k := range min(len(got), len(want)) {
		if got[k] != want[k] {
			t.Fatalf("output %d is %v, want %v (order broken, an output lost or repeated)", k, got[k], want[k])
		}
	}
}

// TestReview41OrderedTurnComesConsumerGated attacks Apply's "the moment they
// have, the outputs waiting go to the queue ... and from then on emit
// queues them directly, so an item may emit without end once its turn has
// come, and may wait for its own outputs to be consumed", with the queue's
// bound ("Each further output waits while the stage's queue holds as many
// outputs as its read-ahead bound (... with Ordered, its window's 2×workers
// + buffer)"): item 1 fills the window behind a silent item 0; then item 0
// returns, item 1's turn comes while it keeps emitting, and the consumer is
// gated inside its first output. Item 1's emits that returned true must stay
// within its first, the window's parked outputs and the queue's bound (and
// what the gated consumer holds). Then everything must arrive in order.
func TestReview41OrderedTurnComesConsumerGated(t *testing.T) {
	const rounds = 20
	over := 0
	var worst int64
	for round := range rounds {
		workers := 2 + round%3
		window := int64(2 * workers)
		bound := 4*window + 2 // Apply: 4×(2×workers + buffer) besides one per item (two items)
		gate0, gateC := make(chan struct{}), make(chan struct{})
		var later atomic.Int64
		s := stage.Apply(source.Slice(ints(2)), func(ctx context.Context, v int, emit func(int) bool) error {
			if v == 0 {
				select {
				case <-gate0:
				case <-ctx.Done():
					return ctx.Err()
				}
				return nil
			}
			for range r40Cap {
				if !emit(1) {
					return ctx.Err()
				}
				later.Add(1)
			}
			return nil
		}, stage.Workers(workers), stage.Ordered())
		var once sync.Once
		consumer := stage.Map(s, func(ctx context.Context, v int) (int, error) {
			once.Do(func() { <-gateC })
			return v, nil
		}, stage.Workers(1), stage.Buffer(1))
		var n int
		var err error
		done := r40Go(func() { n, err = sink.Count(context.Background(), consumer) })
		r40Settle(&later, r40Cap-1)
		close(gate0)
		got := r40Settle(&later, r40Cap-1)
		close(gateC)
		r40Wait(t, done, "the run")
		if err != nil || n != r40Cap {
			t.Fatalf("round %d: got %d outputs, %v; want %d", round, n, err, r40Cap)
		}
		worst = max(worst, got)
		if got > bound {
			over++
			t.Logf("round %d, %d workers: item 1 had %d emits return true while the consumer was gated (bound %d)", round, workers, got, bound)
		}
	}
	if over > 0 {
		t.Errorf("Ordered Apply: in %d of %d rounds the item whose turn had come had more emits return true than its first output, the window and the queue's bound hold while the consumer was gated (worst %d)", over, rounds, worst)
	}
}
