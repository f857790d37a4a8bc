package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// package source: "A source takes an item from the caller's world ... only
// when a stage, or the sink, is ready to work on it, and never after the run
// was cancelled." and package stage: "from the moment its Done channel is
// closed no source's next is called, no call starts, and the sink delivers
// nothing more". (next "never concurrently", so every later call starts
// after the one in progress returned.)
//
// Forced interleaving: call m of next blocks; the sink's callback, at item 0,
// waits until call m is in progress, cancels the caller's ctx, and only then
// lets call m return. No call of next may follow call m, the stage's
// function is not called for item m (it reached the run after the cancel:
// the run drops it), and the callback sees nothing more.
func TestReview71CancelWhileNextBlocked(t *testing.T) {
	for _, kind := range review71Kinds {
		for _, m := range []int{1, 3} {
			for _, opts := range [][]stage.Option{
				{stage.Workers(4), stage.Buffer(1)},
				{stage.Workers(2), stage.Buffer(2), stage.Ordered()},
				{stage.Workers(-1)},
			} {
				t.Run(fmt.Sprintf("%s/m%d/%d", kind, m, len(opts)), func(t *testing.T) {
					ctx, cancel := ctxtest.New(kind)
					defer cancel()
					started := make(chan struct{})
					release := make(chan struct{})
					var calls atomic.Int64
					next := func(context.Context) (int, error) {
						i := int(calls.Add(1)) - 1
						if i == m {
							close(started)
							<-release
						}
						return i, nil
					}
					var lateCalls atomic.Int64
					s := stage.Map(source.Func(next), func(_ context.Context, v int) (int, error) {
						if v >= m {
							// item m came from the call of next that
							// returned after the cancel: its call starts
							// after the cancel
							lateCalls.Add(1)
						}
						return v, nil
					}, opts...)
					seen := 0
					var err error
					review71Run(t, "foreach", func() {
						err = sink.ForEach(ctx, s, func(context.Context, int) error {
							seen++
							if seen == 1 {
								if !review71Wait(t, "next in progress", started) {
									return errReview71Boom
								}
								cancel()
								close(release)
							}
							return nil
						})
					})
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("ForEach = %v, want context.Canceled", err)
					}
					if seen != 1 {
						t.Fatalf("the callback saw %d items, want 1: nothing is delivered after the cancel", seen)
					}
					if c := calls.Load(); c != int64(m+1) {
						t.Fatalf("next was called %d times, want %d: a call followed the one in progress at the cancel", c, m+1)
					}
					if c := lateCalls.Load(); c != 0 {
						t.Fatalf("the stage's function was called for item %d (or later), which next returned only after the cancel", m)
					}
				})
			}
		}
	}
}
