package natsjs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview38ConsumerDeletedWithNoPullPending
//
// Source: "An error of the consumer ends the run with a *stage.SourceError."
//
// TestReview14ConsumerDeletedMidRunEndsTheRun deletes the consumer while
// the run waits in a pull request: the server answers that request with a
// "409 Consumer Deleted", which nats.go reports. Here the consumer is
// deleted while the run's read-ahead is full (the pipeline is busy: the
// usual state of a run behind its stream), so no pull request waits at the
// server and nothing tells the subscription. When the pipeline takes
// more, nats.go asks the deleted consumer again; nobody answers (a "no
// responders" status, which nats.go ignores), heartbeats are missed, and
// the source asks again on the same subscription, for ever ("If the
// subscription misses its heartbeats ... the source asks the server again
// on the same subscription and goes on"). The run never ends: it waits
// until its context is cancelled, and reports only the cancellation.
// Failure rate: 10/10.
func TestReview38ConsumerDeletedWithNoPullPending(t *testing.T) {
	t.Parallel() // it waits out a watchdog when it fails
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pubN(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, gate := newR38Once(), newR38Once()
	defer gate.fire()
	errc := make(chan error, 1)
	n := 0
	go func() {
		errc <- sink.ForEach(ctx, natsjs.Source(w.cons, r14Str, natsjs.ReadAhead(2)), func(context.Context, natsjs.Msg[string]) error {
			if n++; n == 1 {
				first.fire()
				<-gate.ch
			}
			return nil
		})
	}()
	r38Recv(t, "the first message in the sink", first.ch)
	// The run's pull request (2 messages, its read-ahead) was served in
	// full: none waits at the server.
	r38WaitFor(t, "the pull request to be served", func() bool {
		i := w.info(t)
		return i.NumWaiting == 0 && i.Delivered.Consumer == 2
	})
	if err := w.js.DeleteConsumer(context.Background(), "WORK", "c"); err != nil {
		t.Fatal(err)
	}
	gate.fire()
	select {
	case err := <-errc:
		var se *stage.SourceError
		if !errors.As(err, &se) {
			t.Fatalf("run: %v, want a *stage.SourceError", err)
		}
		t.Logf("run: %v", err)
	case <-after(r38Watchdog):
		cancel()
		err := <-errc
		t.Fatalf("hang: the run over a deleted consumer had not ended after %v (it took %d messages; after cancel it returned %v)", r38Watchdog, n, err)
	}
}
