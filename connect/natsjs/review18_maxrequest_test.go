package natsjs_test

// Review 18: a consumer's pull-request limits. The source asks the server
// for ReadAhead messages per pull request (PullMaxMessages), each waiting
// pullExpiry (5 s) at the server. A consumer whose MaxRequestBatch is below
// ReadAhead, or whose MaxRequestExpires is below 5 s, refuses every such
// request with a 409 status ("Exceeded MaxRequestBatch of 10", "Exceeded
// MaxRequestExpires of 1s"). nats.go's MessagesContext takes a 409 it does
// not know for a non-terminal status and ignores it; its heartbeat check
// then asks again, and is refused again, for ever. The run neither takes
// the waiting message nor fails: it hangs until its context ends, against
// Source's promise
//
//	"An error of the consumer ends the run with a *stage.SourceError."
//
// (and the start check's, which refuses a consumer the source cannot use
// "at once ... and nothing taken"). The check at start reads the
// consumer's config already: it could refuse these settings (or the source
// could ask for at most MaxRequestBatch messages, with an expiry within
// MaxRequestExpires).

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r18RunOne runs a source over cons with opts until it commits one message
// (then it stops) or fails; the 40 s bound turns a hang into a failure.
func r18RunOne(t *testing.T, cons jetstream.Consumer, opts ...natsjs.SourceOption) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second) // a hang bound
	defer cancel()
	got := 0
	err := sink.ForEach(ctx, natsjs.Source(cons, r14Str, opts...), func(context.Context, natsjs.Msg[string]) error {
		got++
		return stage.ErrStop
	})
	// The source asks within the consumer's limits (ReadAhead's and
	// Source's docs): the message is taken.
	if got != 1 || err != nil {
		t.Fatalf("the run took %d messages and returned %v (a hang ends at %v); want the message taken", got, err, 40*time.Second)
	}
}

// TestReview18MaxRequestBatchBelowReadAhead: MaxRequestBatch 10, the
// default ReadAhead 100. Fails: the run hangs.
func TestReview18MaxRequestBatchBelowReadAhead(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxRequestBatch: 10})
	w.pub(t, "x")
	r18RunOne(t, w.cons)
}

// TestReview18MaxRequestExpiresBelowPullExpiry: MaxRequestExpires 1 s, the
// source's pull requests wait 5 s. Fails: the run hangs.
func TestReview18MaxRequestExpiresBelowPullExpiry(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxRequestExpires: time.Second})
	w.pub(t, "x")
	r18RunOne(t, w.cons)
}

// TestReview18MaxRequestBatchControl: the same consumer with ReadAhead(10)
// takes the message (the control: the limit is the cause). Passes.
func TestReview18MaxRequestBatchControl(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxRequestBatch: 10})
	w.pub(t, "x")
	r18RunOne(t, w.cons, natsjs.ReadAhead(10))
}

// A MaxRequestExpires below 1 s, which nats.go cannot ask within: the run
// refuses the consumer at once with a *stage.SourceError (the source doc).
func TestReview18MaxRequestExpiresBelowOneSecondIsRefused(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxRequestExpires: 500 * time.Millisecond})
	w.pub(t, "x")
	got := 0
	err := sink.ForEach(context.Background(), natsjs.Source(w.cons, r14Str), func(context.Context, natsjs.Msg[string]) error {
		got++
		return stage.ErrStop
	})
	var se *stage.SourceError
	if got != 0 || !errors.As(err, &se) {
		t.Fatalf("took %d messages, returned %v; want none and a *stage.SourceError", got, err)
	}
}
