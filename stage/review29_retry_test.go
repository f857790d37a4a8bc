package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR29Retry = errors.New("review29: attempt failed")

// TestReview29RetryNotAfterCancel: Retry's doc (calls.go) says the wait
// between attempts "ends early, without a retry, when the run is
// cancelled". The loop looks at ctx before the RetryIf predicate (user
// code) and then sleeps; with a backoff of 1ns, sleep's select finds both
// its timer and ctx.Done() ready and picks at random, so an attempt starts
// after the run was cancelled. Forced: the predicate returns only once the
// run's context is done (cancelled by the predicate itself, by the
// caller, or by a FailFast in another Merge branch). Attempt 2 is always a
// retry after the cancel.
func TestReview29RetryNotAfterCancel(t *testing.T) {
	for _, trig := range []string{"predicateCancels", "ctx", "mergeFailFast"} {
		for _, workers := range []int{1, 2} {
			t.Run(fmt.Sprintf("%s/w=%d", trig, workers), func(t *testing.T) {
				for round := range 20 {
					ctx, cancel := context.WithCancel(context.Background())
					var attempts atomic.Int32
					var runCtx atomic.Value
					entered := make(chan struct{})
					fire := make(chan struct{})
					var once sync.Once
					pred := func(error) bool {
						c := runCtx.Load().(context.Context)
						once.Do(func() { close(entered) })
						if trig == "predicateCancels" {
							cancel()
						}
						<-c.Done()
						return true
					}
					g := stage.Map(source.Slice([]int{0}), func(ctx context.Context, v int) (int, error) {
						runCtx.Store(ctx)
						attempts.Add(1)
						return 0, errR29Retry
					}, stage.RetryIf(5, time.Nanosecond, pred), stage.Workers(workers))
					s := g
					if trig == "mergeFailFast" {
						s = stage.Merge(g, stage.Map(source.Slice([]int{-1}), func(context.Context, int) (int, error) {
							<-fire
							return 0, errR29
						}))
					}
					done := r29Go(func() {
						_ = sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
					})
					r29Wait(t, entered, "the predicate")
					switch trig {
					case "ctx":
						cancel()
					case "mergeFailFast":
						close(fire)
					}
					r29Wait(t, done, "the sink")
					cancel()
					if n := attempts.Load(); n != 1 {
						t.Fatalf("round %d: %d attempts, want 1: a retry started after the run was cancelled", round, n)
					}
				}
			})
		}
	}
}
