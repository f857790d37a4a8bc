package natsjs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
)

// Publish passes the run's context to the publish: a cancelled run
// abandons a publish that waits for the server's answer, at once, rather
// than when the publish gives up by itself (the review's test 7 holds the
// outcome, but a real JetStream gives up after its own default timeout,
// 5 s, so it could not tell a publish that ignores the cancellation). The
// JetStream here is a wrapper of the user's whose publish answers only
// when its context ends: the run is cancelled while it waits; Publish must
// return context.Canceled, with nothing counted and the source message
// not acknowledged (nak'ed at the stop: a new run gets it at once).
func TestReview90PublishAbandonsAWaitingPublishOnCancel(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "x")
	abort := make(chan struct{}) // frees a publish that would wait for ever, once the test has failed
	t.Cleanup(func() { close(abort) })
	entered := make(chan struct{}, 1)
	pj := &r75JS{JetStream: w.js, hook: func(ctx context.Context, _ *nats.Msg, _ func(context.Context, *nats.Msg) (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
		entered <- struct{}{}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-abort:
			return nil, errR90
		}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var counts natsjs.Published
	errc := make(chan error, 1)
	go func() {
		errc <- natsjs.Publish(ctx, pj, natsjs.Source(w.cons, r14Str), func(m natsjs.Msg[string]) (*nats.Msg, error) {
			out := nats.NewMsg("out")
			out.Data = []byte(m.Value)
			return out, nil
		}, func(m natsjs.Msg[string]) string { return m.Value }, &counts)
	}()
	r75Recv(t, "the publish", entered)
	cancel()
	err := r75Recv(t, "Publish to return after the cancellation (the publish must see it)", errc)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish: %v; want context.Canceled", err)
	}
	if s, d := counts.Stored.Load(), counts.Duplicates.Load(); s != 0 || d != 0 {
		t.Fatalf("counts: %d stored, %d duplicates; want none", s, d)
	}
	seen := r14Collect(t, w.cons, func(s *r14Seen) bool { return s.has("x") })
	if !seen.has("x") {
		t.Fatal("the message did not come back")
	}
}
