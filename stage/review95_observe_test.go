package stage_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r95PanicFirstReceived watches one stage: its first Received waits for
// ready, then panics; it counts every Received it is told.
type r95PanicFirstReceived struct {
	ready    <-chan struct{}
	received atomic.Int64
	closed   atomic.Int64
}

func (w *r95PanicFirstReceived) Stage(stage.Info) stage.Watcher { return w }

func (w *r95PanicFirstReceived) Received() {
	if w.received.Add(1) == 1 {
		<-w.ready
		panic("review95: Received panics")
	}
}

func (w *r95PanicFirstReceived) Finished(time.Duration, error) {}
func (w *r95PanicFirstReceived) Closed()                       { w.closed.Add(1) }

// TestReview95NoReceivedAfterWatcherPanic: Watcher, "After a panic, the
// watcher is told nothing more in that run but its Closed", and Received,
// "(or, when its [KeyBy] key function panicked, to hand it to the policy
// without a call ...)". Two workers of a KeyBy stage: one holds item 1 in
// its key function; the other takes item 0, whose Received panics (once
// item 1's key function has started) and fails the run; item 0's function
// sees the run's context end, and only then item 1's key function panics,
// so that item 1 goes to the policy after the watcher's panic. The
// watcher must not be told Received for it.
func TestReview95NoReceivedAfterWatcherPanic(t *testing.T) {
	for round := range 5 {
		keyEntered, failed := make(chan struct{}), make(chan struct{})
		var once sync.Once
		w := &r95PanicFirstReceived{ready: keyEntered}
		key := func(v int) int {
			if v == 1 {
				close(keyEntered)
				<-failed
				panic("review95: key panics")
			}
			return v
		}
		f := func(ctx context.Context, v int) (int, error) {
			if v == 0 {
				<-ctx.Done() // the watcher's panic failed the run
				once.Do(func() { close(failed) })
			}
			return v, nil
		}
		var err error
		hangGuard(t, func() {
			_, err = sink.Slice(stage.Observe(context.Background(), w),
				stage.Map(source.Slice(ints(2)), f, stage.Workers(2), stage.KeyBy(key)))
		})
		var pe *stage.PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("round %d: Slice = %v; want an error wrapping a *PanicError", round, err)
		}
		if n := w.received.Load(); n != 1 {
			t.Errorf("round %d: the watcher was told Received %d times; want 1 (nothing after its panic)", round, n)
		}
		if n := w.closed.Load(); n != 1 {
			t.Errorf("round %d: Closed %d times; want 1", round, n)
		}
	}
}
