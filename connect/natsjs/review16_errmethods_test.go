package natsjs_test

// Review 16 (white box): Done classifies the item's error with
// errors.Is(err, ErrPermanent), and on a terminating path calls its Error
// method: both are methods of a user value. ack.go's Done takes the
// message out of the run's in-flight set BEFORE it classifies the error,
// so a panic in the error's Is (or Error) method leaves the message in
// neither state: not settled (no Ack, Nak or Term is sent) and no longer
// in flight, so close does not give it back either. The message waits out
// AckWait (an hour here), against Source's promise:
//
//	"every message the run held but did not settle (received and not yet
//	taken, or taken and cut short by a cancellation) is nak'ed once the
//	run's goroutines have exited"
//
// The engine recovers the panic (stage.Ack: "A panic in Done ends the run
// with a *SourceError"), so the process survives; only the message is left
// behind.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
)

// r16IsPanics is a commit error whose Is method panics when asked about
// natsjs.ErrPermanent (and only then: the engine's own checks, ErrStop and
// the like, see a plain error).
type r16IsPanics struct{}

func (r16IsPanics) Error() string { return "r16: commit failed" }

func (r16IsPanics) Is(target error) bool {
	if target == natsjs.ErrPermanent {
		panic("r16: Is exploded")
	}
	return false
}

// r16ErrorPanics is a commit error whose Error method panics.
type r16ErrorPanics struct{}

func (r16ErrorPanics) Error() string { panic("r16: Error exploded") }

// r16SettleWithBadError runs one message "x" through a pipeline whose sink
// fails it with bad, and returns the acknowledgements the server received
// for it once the run has returned.
func r16SettleWithBadError(t *testing.T, cfg jetstream.ConsumerConfig, bad error) []r13Ack {
	t.Helper()
	w := r14World(t, cfg)
	l := r13WatchAcks(t, w.url, "WORK")
	w.pub(t, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang bound
	defer cancel()
	src := natsjs.Source(w.cons, r14Str)
	var got int
	err := sink.ForEach(ctx, src, func(context.Context, natsjs.Msg[string]) error {
		got++
		return bad // the commit failed: Done(bad)
	})
	if got != 1 {
		t.Fatalf("the sink got %d messages, want 1 (run: %v)", got, err)
	}
	if err == nil {
		t.Fatal("the run returned nil, want the commit's failure")
	}
	t.Logf("run: %v", err)
	l.sync(t, w.nc) // every acknowledgement the run sent has reached the log
	return l.bySeq()[1]
}

// TestReview16PanickingIsMethodLeavesMessageUnsettled: a commit error
// whose Is method panics when Done asks errors.Is(err, ErrPermanent).
// Fails: x gets no acknowledgement at all.
func TestReview16PanickingIsMethodLeavesMessageUnsettled(t *testing.T) {
	acks := r16SettleWithBadError(t, jetstream.ConsumerConfig{}, r16IsPanics{})
	if len(acks) == 0 {
		t.Fatalf("message x was neither acked, nak'ed nor terminated by the run: it waits out AckWait; " +
			"want it nak'ed (the run held it and did not settle it)")
	}
	t.Logf("acks of x: %+v", acks)
}

// TestReview16PanickingErrorMethodOnLastDelivery: on its last allowed
// delivery the message is terminated, and terminate calls reason.Error()
// after Done took it out of the in-flight set. Passes: the engine hands
// Done a *stage.Error whose Error method formats the user's error with
// fmt, which recovers the panic; x is terminated.
func TestReview16PanickingErrorMethodOnLastDelivery(t *testing.T) {
	acks := r16SettleWithBadError(t, jetstream.ConsumerConfig{MaxDeliver: 1}, r16ErrorPanics{})
	if len(acks) != 1 || acks[0].kind != "term" {
		t.Fatalf("acks of x (its last delivery) = %+v, want one term", acks)
	}
}

// TestReview16ControlPlainErrorNaks: the same run with a well-behaved
// commit error naks x (the control: the log sees settlements).
func TestReview16ControlPlainErrorNaks(t *testing.T) {
	acks := r16SettleWithBadError(t, jetstream.ConsumerConfig{}, errors.New("r16: plain commit failure"))
	if len(acks) != 1 || acks[0].kind != "nak" {
		t.Fatalf("acks of x = %+v, want one nak", acks)
	}
}
