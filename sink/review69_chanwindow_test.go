package sink_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// errR69Cause is the cause the caller cancels with.
var errR69Cause = errors.New("r69: the request was abandoned")

// TestReview69ChanInTheParentsCancelWindow: sink.Chan waits on the
// caller's Done channel too (for a caller's own context type). A standard
// parent closes its Done channel before it cancels its children, the
// run's context among them: Chan's callback, woken by the caller's Done in
// that moment, returns before the run's context is cancelled. That must
// still be the commit cut short (stage.Run: "unless the run was ending
// already ... and the error says so"): the item's Ack is not told, and
// the sink returns the caller's cancellation with its cause. The parent
// has many other children so that the moment lasts (a fresh-eyes review
// saw the Ack told context.Canceled and the cause lost in every run with
// 20,000 under -race, before the fix); with few it is rare, so the
// verdict is the same whichever way each run goes.
func TestReview69ChanInTheParentsCancelWindow(t *testing.T) {
	for range 5 {
		parent, cancel := context.WithCancelCause(context.Background())
		children := make([]context.CancelFunc, 0, 20000)
		for range cap(children) { // they make the parent's cancel take long
			_, c := context.WithCancel(parent)
			children = append(children, c)
		}
		ack := &r20Ack{}
		src := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
			sent := false
			return func(ctx context.Context) (int, stage.Ack, error) {
				if sent {
					<-ctx.Done()
					return 0, nil, ctx.Err()
				}
				sent = true
				return 1, ack, nil
			}, nil
		})
		out := make(chan int) // nobody reads: Chan waits on its first send
		done := make(chan error, 1)
		go func() { done <- sink.Chan(parent, src, out) }()
		r17WaitBlockedInChan(t)
		cancel(errR69Cause)
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second): // hang watchdog only
			t.Fatal("sink.Chan did not return after ctx was cancelled")
		}
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errR69Cause) {
			t.Fatalf("sink.Chan returned %v; want context.Canceled with the caller's cause", err)
		}
		for _, c := range children {
			c()
		}
		if calls := ack.got(); len(calls) != 0 {
			t.Fatalf("the item never sent was told Done(%v); want no Done call (cut short)", calls)
		}
	}
}
