package natsjs_test

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

// TestReview38MaxDeliverLoweredMidRun
//
// Package doc, Outcomes: "failed ... on its last allowed delivery
// (MaxDeliver) ...: Term, after publishing it to the dead-letter subject if
// one is set"; Consumer settings: "MaxDeliver: the source terminates a
// message that fails on its last delivery (to the dead-letter subject)".
//
// The source reads MaxDeliver once, as the run starts. The consumer's
// MaxDeliver is lowered from 5 to 2 during a run (a consumer update) while
// x's first delivery is being processed; x fails with a retryable error on
// its first and second deliveries. Its second is now its last, but the
// source still counts on 5: it naks x, which the server will not deliver
// again; x is neither dead-lettered nor processed, and stays in the
// stream, undelivered, although a dead-letter subject is set. This failed
// 10 of 10 against the promise above; the package doc now states it
// ("Consumer settings": "a lower MaxDeliver is not seen, so a message that
// fails on its new last delivery is nak'ed rather than terminated and stays
// in the stream, undelivered"), and the test checks that statement.
func TestReview38MaxDeliverLoweredMidRun(t *testing.T) {
	t.Parallel() // it waits out a watchdog when it fails
	w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 5})
	w.pub(t, "x")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	firstIn, updated := newR38Once(), newR38Once()
	defer updated.fire()
	second := newR38Once()
	src := natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(w.js, "dlq"), natsjs.Backoff(0, 0))
	work := stage.Map(src, func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		switch m.Deliveries {
		case 1:
			firstIn.fire()
			<-updated.ch
		case 2:
			defer second.fire()
		}
		return "", errors.New("retryable failure")
	}, stage.OnError(stage.Forward))
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(ctx, work, func(context.Context, string) error { return nil })
	}()
	r38Recv(t, "x's first delivery in the Map", firstIn.ch)
	cfg := w.info(t).Config
	cfg.MaxDeliver = 2
	if _, err := w.js.UpdateConsumer(context.Background(), "WORK", cfg); err != nil {
		t.Fatal(err)
	}
	updated.fire()
	r38Recv(t, "x's second delivery", second.ch)
	// The nak of x's second delivery is the run's last word on it.
	deadline := time.Now().Add(r38Watchdog)
	for w.info(t).NumAckPending != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("x's second delivery was not settled in %v", r38Watchdog)
		}
		time.Sleep(10 * time.Millisecond)
	}
	info := w.info(t)
	if dl, work := w.streamMsgs(t, "DLQ"), w.streamMsgs(t, "WORK"); dl != 0 || work != 1 || info.NumPending != 0 {
		t.Fatalf("after x failed on its new last delivery: DLQ holds %d, WORK %d, NumPending %d; the doc says x is nak'ed, "+
			"not dead-lettered, and stays in the stream undelivered (0, 1, 0)", dl, work, info.NumPending)
	}
	cancel()
	<-errc
}
