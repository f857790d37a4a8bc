package sink_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r17WaitBlockedInChan waits until a goroutine is parked in sink.Chan's
// select on out (the state is observed, not timed; the deadline is a hang
// watchdog only).
func r17WaitBlockedInChan(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, all := runcheck.Goroutines()
		for _, st := range all {
			head, _, _ := strings.Cut(st, "\n")
			if strings.Contains(head, "[select") && strings.Contains(st, "sink.Chan[") {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("sink.Chan never blocked on out")
}

// README, Guarantees: "Cancelling ctx makes the sink return an error for
// which errors.Is(err, context.Canceled) holds (unless the sink's callback
// stopped the run with stage.ErrStop first)"; "A sink never reports
// success for a run that failed"; sink.Chan: "If the run fails while Chan
// waits on out, Chan stops waiting and returns the error that ended the
// run."
//
// sink.Chan has no user callback, yet while it waits on out it returns the
// run's cancel cause from its own callback to stage.Run, which classifies
// it with IsStop: a caller that cancels ctx with a cause that is (or wraps)
// stage.ErrStop gets nil from Chan, as if the run had completed, with two
// of its three values never sent. (The cause is the caller's: any error
// may be one, a shutdown helper's "stop" sentinel wrapping ErrStop too.)
func TestReview17ChanCancelWithStopCauseIsNotSuccess(t *testing.T) {
	for _, cause := range []error{stage.ErrStop, errors.Join(errors.New("shutting down"), stage.ErrStop)} {
		ctx, cancel := context.WithCancelCause(context.Background())
		out := make(chan int) // nobody reads: Chan waits on its first send
		done := make(chan error, 1)
		go func() { done <- sink.Chan(ctx, source.Slice([]int{1, 2, 3}), out) }()
		r17WaitBlockedInChan(t)
		cancel(cause)
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second): // hang watchdog only
			t.Fatal("sink.Chan did not return after ctx was cancelled")
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cause %v: sink.Chan = %v after ctx was cancelled while it waited on out (no value sent); want an error for which errors.Is(err, context.Canceled) holds", cause, err)
		}
	}
}

// stage.Handle: "if h returns an error, the run fails with it as with
// FailFast, and the sink returns h's error"; package sink: a sink's
// "result is a function of the items and errors it saw, never of timing".
//
// A Handle policy whose h returns an error that wraps stage.ErrStop (a
// dead-letter handler saying "enough: stop") fails the run with it, and
// every sink returns it; sink.Chan too when it is not waiting on out. But
// when the failure comes while Chan waits on out, Chan hands the run's
// cause back to stage.Run as its own callback's result, Run takes it for
// the callback's stop, and Chan returns nil: the result depends on whether
// the consumer of out was quick.
func TestReview17ChanHandlerErrorWhileWaitingIsReturned(t *testing.T) {
	enough := errors.Join(errors.New("dead letters: enough"), stage.ErrStop)
	gate := make(chan struct{})
	m := stage.Map(source.Slice([]int{0, 1}), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			<-gate // fails only once Chan waits on out with item 0
			return 0, errors.New("bad item")
		}
		return v, nil
	}, stage.Workers(2), stage.Buffer(1), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return enough })))
	out := make(chan int) // nobody reads: Chan waits on its first send
	done := make(chan error, 1)
	go func() { done <- sink.Chan(context.Background(), m, out) }()
	r17WaitBlockedInChan(t)
	close(gate)
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second): // hang watchdog only
		t.Fatal("sink.Chan did not return after the handler failed the run")
	}
	if !errors.Is(err, enough) {
		t.Fatalf("sink.Chan = %v after the Handle policy failed the run with %q while Chan waited on out; want h's error", err, enough)
	}
}
