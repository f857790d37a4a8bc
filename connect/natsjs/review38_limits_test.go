package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r38LimitLoweredMidRun runs a source (ReadAhead 10) over a consumer with
// no request limits; once the run holds its first message, the consumer is
// updated with lower (the new limits), and 20 more messages are published.
// The run must take all 21 messages (or end with a *stage.SourceError);
// the watchdog only turns a hang into a failure.
func r38LimitLoweredMidRun(t *testing.T, lower func(*jetstream.ConsumerConfig)) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "first")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, gate := newR38Once(), newR38Once()
	defer gate.fire()
	const more = 20
	var taken atomic.Int64
	all := newR38Once()
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(ctx, natsjs.Source(w.cons, r14Str, natsjs.ReadAhead(10)), func(context.Context, natsjs.Msg[string]) error {
			n := taken.Add(1)
			if n == 1 {
				first.fire()
				<-gate.ch
			}
			if n == 1+more {
				all.fire()
			}
			return nil
		})
	}()
	r38Recv(t, "the first message", first.ch)
	cfg := w.info(t).Config
	lower(&cfg)
	if _, err := w.js.UpdateConsumer(context.Background(), "WORK", cfg); err != nil {
		t.Fatal(err)
	}
	for i := range more {
		w.pub(t, strconv.Itoa(i))
	}
	gate.fire()
	select {
	case <-all.ch:
	case err := <-errc:
		var se *stage.SourceError
		if !errors.As(err, &se) {
			t.Fatalf("run: %v after %d messages, want a *stage.SourceError", err, taken.Load())
		}
		t.Logf("run: %v", err)
	case <-time.After(r38Watchdog):
		info := w.info(t)
		t.Fatalf("hang: after the consumer's update the run took %d of %d messages in %v and neither took more nor failed "+
			"(%d in the stream, NumPending %d, NumWaiting %d)",
			taken.Load(), 1+more, r38Watchdog, w.streamMsgs(t, "WORK"), info.NumPending, info.NumWaiting)
	}
}

// TestReview38MaxRequestBatchLoweredMidRun
//
// Source: "An error of the consumer ends the run with a *stage.SourceError."
// Package doc, Consumer settings: "MaxRequestBatch and MaxRequestExpires:
// none, or what the source asks within: a MaxRequestBatch below ReadAhead
// lowers the read-ahead to it".
//
// The source reads the limit once, as the run starts. Lowered to 2 during a
// run of ReadAhead 10, every later pull request (up to 10 messages) is
// refused with a 409 "Exceeded MaxRequestBatch of 2", which nats.go ignores
// (a status it does not know is not terminal) and asks again at the next
// missed heartbeat, for ever: the run takes what the request made before the
// update covered (10 messages) and then waits for ever, with the rest in the
// stream, and reports nothing. Failure rate: 10/10.
func TestReview38MaxRequestBatchLoweredMidRun(t *testing.T) {
	t.Parallel() // it waits out a watchdog when it fails
	r38LimitLoweredMidRun(t, func(c *jetstream.ConsumerConfig) { c.MaxRequestBatch = 2 })
}

// TestReview38MaxRequestExpiresLoweredMidRun: the same with
// MaxRequestExpires lowered to 1 s, below the 5 s each pull request asks
// for ("a MaxRequestExpires below 5 s shortens each pull request's wait").
// Failure rate: 10/10.
func TestReview38MaxRequestExpiresLoweredMidRun(t *testing.T) {
	t.Parallel() // it waits out a watchdog when it fails
	r38LimitLoweredMidRun(t, func(c *jetstream.ConsumerConfig) { c.MaxRequestExpires = time.Second })
}

// TestReview38MaxRequestMaxBytesSetMidRun: MaxRequestMaxBytes does not
// concern the source (its pull requests ask for no byte limit): a run goes on
// when it is set. Passes; it guards the limit the source need not keep.
func TestReview38MaxRequestMaxBytesSetMidRun(t *testing.T) {
	t.Parallel() // it waits out a watchdog when it fails
	r38LimitLoweredMidRun(t, func(c *jetstream.ConsumerConfig) { c.MaxRequestMaxBytes = 1024 })
}
