package stage_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview93OrderedFurtherOutputsFillTheWindow: Apply, "With [Ordered],
// ... a further output waits while the window holds 2×workers + buffer
// outputs waiting so" (further outputs: "The first output of an item never
// waits"). The window's bound is exact from below too: a later item emits
// without end behind a silent head, and its emit waits only once
// 2×workers + buffer of its further outputs are held (review41 holds the
// bound from above). A window that counted the item's first output among
// them would make it wait one output early.
//
// The verdict reads the count once the emitting goroutine is parked in the
// window's wait (its stack says so): order, not time, decides.
func TestReview93OrderedFurtherOutputsFillTheWindow(t *testing.T) {
	for _, c := range []struct{ workers, buffer int }{{2, 0}, {3, 2}} {
		t.Run(fmt.Sprintf("workers%d/buffer%d", c.workers, c.buffer), func(t *testing.T) {
			window := int64(2*c.workers + c.buffer)
			var further atomic.Int64
			s := stage.Apply(source.Slice(ints(2)), func(ctx context.Context, v int, emit func(int) bool) error {
				if v == 0 {
					<-ctx.Done() // the silent head: no output leaves the window
					return ctx.Err()
				}
				for j := 0; ; j++ {
					if !emit(j) {
						return ctx.Err()
					}
					if j > 0 {
						further.Add(1)
					}
				}
			}, stage.Workers(c.workers), stage.Buffer(c.buffer), stage.Ordered())
			ctx, cancel := context.WithCancel(context.Background())
			done := r40Go(func() { _, _ = sink.Slice(ctx, s) })
			defer func() { cancel(); r40Wait(t, done, "the run after cancel") }()
			deadline := time.Now().Add(runcheck.Watchdog) // a hang bound only
			for !r93ParkedInWindow() {
				if time.Now().After(deadline) {
					t.Fatalf("hang: no emit waited in the window after %v (%d further outputs held; the window is %d)", runcheck.Watchdog, further.Load(), window)
				}
				time.Sleep(time.Millisecond)
			}
			if got := further.Load(); got != window {
				t.Errorf("Ordered Apply, %d workers, buffer %d: a later item's emit waited with %d of its further outputs held behind a silent head; the window is %d (2×workers + buffer)", c.workers, c.buffer, got, window)
			}
		})
	}
}

// r93ParkedInWindow reports whether a goroutine waits in an Ordered
// window for room to park an output.
func r93ParkedInWindow() bool {
	_, all := runcheck.Goroutines()
	for _, st := range all {
		if strings.Contains(st, "sync.(*Cond).Wait") && strings.Contains(st, "stage.(*reorder[") && strings.Contains(st, "]).park(") {
			return true
		}
	}
	return false
}
