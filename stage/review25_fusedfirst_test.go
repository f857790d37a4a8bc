package stage_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// DESIGN "Errors" / doc.go "Error policies": FailFast: "no new item
// starts". engine.go (puller, as changed): "every path that gives a
// goroutine an item it did not pull (the items that waited for a KeyBy key,
// a fused handle's outputs in hand) looks at the run first, as pull does,
// and abandons what it holds."
//
// The fix (ownNext) drops the outputs still in hands only at the handle's
// NEXT pull. The output of the item the handle processes in this very pull,
// whose call returned after the run was cancelled, is handed to the
// consumer (handOut.put accepts it unconditionally, where queueOut.put
// refuses and abandons it once the run is cancelled). The consumer stage's
// worker then calls its function on it: a new item starts in a cancelled
// run. A plain (queue) stage in the same place drops the output.
//
// Forced order: a Map (or FlatMap) of 2 workers over a slice of one item
// fuses into the next Map (Workers(2), Buffer(1): goroutines of its own,
// one of them since its input holds one item; Workers(1) after a FlatMap,
// which fuses only into a consumer of one goroutine), whose worker's handle takes
// the only place (Stream.Len 1) and calls the first function itself. That
// call waits until another branch's FailFast error cancelled the run, then
// returns its output with nil. The next Map must not be called.
func TestReview25FusedOutputOfCallEndingAfterCancel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		workers int
		flat    bool
	}{
		{"map-fused", 2, false},
		{"map-serial", 1, false},
		{"flatmap-fused", 2, true},
		{"flatmap-serial", 1, true},
		{"queue-control", 2, false}, // Buffer(1) on the first stage: not fused (passes)
	} {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{})
			var lateCall atomic.Bool
			errBranch := errors.New("review25: the other branch fails")
			first := func(ctx context.Context, v int) (int, error) {
				close(started)
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Second): // hang watchdog only
					t.Error("the run was never cancelled")
				}
				return 10, nil // the call had done its work: nil, as a call that ignores ctx would
			}
			opts := []stage.Option{stage.Workers(tc.workers)}
			if tc.name == "queue-control" {
				opts = append(opts, stage.Buffer(1))
			}
			// A FlatMap fuses only into a consumer of one goroutine: give it one.
			consumerWorkers := 2
			if tc.flat {
				consumerWorkers = 1
			}
			var up stage.Stream[int]
			if tc.flat {
				up = stage.FlatMap(source.Slice([]int{1}), func(ctx context.Context, v int) ([]int, error) {
					x, err := first(ctx, v)
					return []int{x}, err
				}, opts...)
			} else {
				up = stage.Map(source.Slice([]int{1}), first, opts...)
			}
			m := stage.Map(up, func(ctx context.Context, v int) (int, error) {
				lateCall.Store(true)
				return v, nil
			}, stage.Workers(consumerWorkers), stage.Buffer(1))
			other := stage.Map(source.Slice([]int{0}), func(context.Context, int) (int, error) {
				<-started
				return 0, errBranch
			}, stage.Workers(2), stage.Buffer(1))
			var err error
			hangGuard(t, func() { _, err = sink.Slice(context.Background(), stage.Merge(m, other)) })
			if !errors.Is(err, errBranch) {
				t.Fatalf("the run returned %v, want the other branch's FailFast error", err)
			}
			if lateCall.Load() {
				t.Fatal("after a FailFast error had cancelled the run, the next Map was called with the output of a fused call that returned after the cancellation: \"no new item starts\" (a queue would have dropped it)")
			}
		})
	}
}
