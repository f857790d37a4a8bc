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

// DESIGN, "Errors": "stage.FailFast (default): the first item error cancels
// the pipeline's context with that error as the cause; in-flight calls see
// ctx.Done(), no new item starts"; doc.go "Error policies" says the same,
// and engine.go's puller contract: pull "returns ok == false once the run
// is cancelled".
//
// A fused stage's handle that holds a place keeps the further outputs of
// the item it processed in its hands (handOut) and gives them out at its
// next pulls. ownNext looks at the run only before it takes a new input
// item (engine_fuse.go, ownNext: the loop runs only while hands are idle),
// so an output still in hands is handed out after the run was cancelled.
// A worker of the next stage that was in a call when the run was
// cancelled, and whose call returned nil, goes on: its acquire takes a
// free token without looking at the run, its pull through the handle gets
// the held output, and it calls the user's function on a new item of a
// cancelled run.
//
// Forced order: a FlatMap of 2 workers over a slice of one item fuses with
// the next Map (Workers(2), Buffer(1): goroutines of its own), and its only
// place goes to the handle that pulls first (Stream.Len 1, see startIdle):
// that handle processes the item, gives out 10 and keeps 11. The Map's
// call of 10 waits until the run is cancelled by a FailFast failure in
// another branch of a Merge, then returns nil. The Map must not be called
// with 11. The same with Workers(1) (the sequential path, serialHandle,
// as Unbatch always is) and a Map of one worker.
func TestReview24FusedHandsAfterFailFast(t *testing.T) {
	for _, workers := range []int{1, 2} { // 1: the sequential path (serialHandle); 2: a fused stage
		t.Run(map[int]string{1: "serial", 2: "fused"}[workers], func(t *testing.T) {
			started := make(chan struct{})
			var lateCall atomic.Bool
			errBranch := errors.New("review24: the other branch fails")
			fm := stage.FlatMap(source.Slice([]int{1}), func(context.Context, int) ([]int, error) {
				return []int{10, 11}, nil
			}, stage.Workers(workers))
			m := stage.Map(fm, func(ctx context.Context, v int) (int, error) {
				switch v {
				case 10:
					close(started)
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Second): // hang watchdog only
						t.Error("the run was never cancelled")
					}
					return v, nil // the call had finished its work: nil, as a call that ignores ctx would
				default:
					if ctx.Err() != nil {
						lateCall.Store(true)
					}
					return v, nil
				}
			}, stage.Workers(workers), stage.Buffer(1)) // serial: one worker, or the other would take 11 at once
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
				t.Fatal("after a FailFast error had cancelled the run, the Map was called with a new item (11, the FlatMap's second output, held in a fused handle's hands): \"no new item starts\"")
			}
		})
	}
}
