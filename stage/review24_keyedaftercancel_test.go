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
// the pipeline's context [...]; in-flight calls see ctx.Done(), no new item
// starts"; doc.go "Error policies" says the same.
//
// A KeyBy worker that finishes an item takes the next waiting item of the
// same key itself (applier.processKeyed, engine_worker.go): it loops on
// gate.done and calls process without looking at the run, so an item that
// waited for its key starts after a FailFast error cancelled the run, once
// the call before it returns nil.
//
// Forced order (Workers(2), Buffer(1) so that three items fit in the
// read-ahead): items are pulled in order under keyMu. A (key 0) blocks in
// its call until the run's context is done, so the other worker pulls B
// (key 0: busy, it waits in the gate) and then C (key 1), whose call fails
// and cancels the run. A's call then returns nil, and the worker must not
// start B. The same with Workers(-1) (the dispatcher's goroutine of A runs
// processKeyed too).
func TestReview24KeyedNextAfterFailFast(t *testing.T) {
	for _, workers := range []int{2, -1} {
		t.Run(map[int]string{2: "workers2", -1: "unlimited"}[workers], func(t *testing.T) {
			errC := errors.New("review24: C fails")
			var bCalled atomic.Bool
			type it struct {
				name string
				key  int
			}
			items := []it{{"A", 0}, {"B", 0}, {"C", 1}}
			m := stage.Map(source.Slice(items), func(ctx context.Context, v it) (string, error) {
				switch v.name {
				case "A":
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Second): // hang watchdog only
						t.Error("the run was never cancelled")
					}
					return v.name, nil // its work was done: nil, as a call that ignores ctx would
				case "B":
					bCalled.Store(true)
					return v.name, nil
				default:
					return "", errC
				}
			}, stage.Workers(workers), stage.Buffer(1), stage.KeyBy(func(v it) int { return v.key }))
			var err error
			hangGuard(t, func() { _, err = sink.Slice(context.Background(), m) })
			if !errors.Is(err, errC) {
				t.Fatalf("the run returned %v, want C's FailFast error", err)
			}
			if bCalled.Load() {
				t.Fatal("after C's FailFast error had cancelled the run, the KeyBy stage started B, the item that waited for A's key: \"no new item starts\"")
			}
		})
	}
}
