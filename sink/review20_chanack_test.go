package sink_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r20Ack records every Done call of one item.
type r20Ack struct {
	mu    sync.Mutex
	calls []error
}

func (a *r20Ack) Done(err error) {
	a.mu.Lock()
	a.calls = append(a.calls, err)
	a.mu.Unlock()
}

func (a *r20Ack) got() []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]error(nil), a.calls...)
}

// stage.Ack: "Done is not called when the run ended before the item's fate
// was known: a FailFast error at another item, a cancelled context, a sink
// that stopped early [...]. The source then leaves the item
// unacknowledged, and a broker redelivers it." sink.Chan: "If the run
// fails while Chan waits on out, Chan stops waiting and returns the error
// that ended the run."
//
// The value Chan was waiting to send was never sent: its fate is unknown,
// the run was cancelled. Yet Chan's own callback returns ctx.Err() to
// stage.Run, which counts that as a failed commit and calls Done with
// context.Canceled. A broker source takes Done(err) as a processing
// failure: natsjs dead-letters the message on its last allowed delivery,
// kafka counts an attempt and dead-letters after Attempts; a mere
// shutdown (ctx cancelled while the consumer of out is slow) thus sends
// messages to the dead-letter queue.
func TestReview20ChanCancelledSendIsNotAFailure(t *testing.T) {
	ack := &r20Ack{}
	src := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		sent := false
		return func(ctx context.Context) (int, stage.Ack, error) {
			if sent {
				<-ctx.Done() // a broker waiting for the next message
				return 0, nil, ctx.Err()
			}
			sent = true
			return 1, ack, nil
		}, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan int) // nobody reads: Chan waits on its first send
	done := make(chan error, 1)
	go func() { done <- sink.Chan(ctx, src, out) }()
	r17WaitBlockedInChan(t)
	cancel() // a shutdown while the value waits to be sent
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("sink.Chan returned %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second): // hang watchdog only
		t.Fatal("sink.Chan did not return after ctx was cancelled")
	}
	if calls := ack.got(); len(calls) != 0 {
		t.Fatalf("the item Chan never sent (the run was cancelled) was told Done(%v), want no Done call: its fate is unknown, the broker must redeliver it, not count a failure", calls)
	}
}
