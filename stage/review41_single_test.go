package stage_test

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview41OneItemEmitBound: an Apply over an input of one item (Workers
// says a stage "whose input is known to hold a single item calls the
// function in its consumer's goroutine") whose item emits without end, with
// the sink gated inside its first output. Apply: "Each further output waits
// while the stage's queue holds as many outputs as its read-ahead bound",
// and an item "may wait for its own outputs to be consumed": its emits that
// return true while the sink is gated must stay bounded.
func TestReview41OneItemEmitBound(t *testing.T) {
	for _, c := range []struct {
		workers int
		ordered bool
	}{{1, true}, {1, false}, {2, true}, {4, false}} {
		t.Run(fmt.Sprintf("workers%d/ordered=%v", c.workers, c.ordered), func(t *testing.T) {
			var emitted atomic.Int64
			opts := []stage.Option{stage.Workers(c.workers)}
			if c.ordered {
				opts = append(opts, stage.Ordered())
			}
			s := stage.Apply(source.Slice(ints(1)), func(ctx context.Context, v int, emit func(int) bool) error {
				for range r40Cap {
					if !emit(v) {
						return ctx.Err()
					}
					emitted.Add(1)
				}
				return nil
			}, opts...)
			gate := make(chan struct{})
			seen := make(chan struct{})
			n := 0
			var err error
			done := r40Go(func() {
				err = sink.ForEach(context.Background(), s, func(context.Context, int) error {
					if n == 0 {
						close(seen)
						<-gate
					}
					n++
					return nil
				})
			})
			r40Wait(t, seen, "the first output")
			bound := int64(2*(2*c.workers) + 4)
			got := r40Settle(&emitted, bound)
			close(gate)
			r40Wait(t, done, "the run")
			if err != nil || n != r40Cap {
				t.Fatalf("got %d, %v", n, err)
			}
			if got > bound {
				t.Errorf("an Apply over one item: %d emits returned true while the sink was gated in its first output (bound %d)", got, bound)
			}
		})
	}
}

// TestReview41OrderedHugeBuffer: Buffer(math.MaxInt) with Ordered (the
// window 2×workers+buffer saturates) and items emitting more than a ring's
// first room: every output arrives once, in order.
func TestReview41OrderedHugeBuffer(t *testing.T) {
	const n = 60
	s := stage.Apply(source.Slice(ints(n)), func(ctx context.Context, v int, emit func(r41Out) bool) error {
		r37Jitter()
		for j := range v % 23 * 5 {
			if !emit(r41Out{v, j, 0}) {
				return ctx.Err()
			}
		}
		return nil
	}, stage.Workers(3), stage.Buffer(math.MaxInt), stage.Ordered())
	var got []r41Out
	var err error
	hangGuard(t, func() { got, err = sink.Slice(context.Background(), s) })
	if err != nil {
		t.Fatal(err)
	}
	var want []r41Out
	for i := range n {
		for j := range i % 23 * 5 {
			want = append(want, r41Out{i, j, 0})
		}
	}
	r41SameOutputs(t, got, want)
}
