package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
)

var errR90 = errors.New("review90: a permanent failure")

// r90DomainServer runs a NATS server whose JetStream has the domain "hub",
// with the acknowledgement subjects that carry it ($JS.ACK.<domain>.…,
// nats-server's js_ack_fc_v2), so that a message's metadata names its
// domain; it returns the server's URL.
func r90DomainServer(t *testing.T) string {
	t.Helper()
	return startServerWith(t, server.Options{JetStreamDomain: "hub", FeatureFlags: map[string]bool{"js_ack_fc_v2": true}})
}

// DeadLetter: header Sluice-Stream is the message's stream "after its
// domain and a dot if it has one", and the dead letter's id is
// "sluice-dead:<Sluice-Stream>:<consumer>:<created>:<Sluice-Stream-Seq>".
// (Review 78 and 79 hold both without a domain.) A message of stream WORK
// in domain "hub" that fails for good is dead-lettered with Sluice-Stream
// "hub.WORK" and the id that names it so.
func TestReview90DeadLetterNamesTheDomain(t *testing.T) {
	js, cons := r78PoisonOn(t, r90DomainServer(t), jetstream.ConsumerConfig{}, "poison")
	ctx := context.Background()
	var domain string
	rctx, cancel := r75HangCtx()
	defer cancel()
	err := sink.ForEach(rctx, natsjs.Source(&r38Cons{Consumer: cons, hook: func(next func() (jetstream.Msg, error)) (jetstream.Msg, error) {
		m, err := next()
		if err == nil {
			if meta, err := m.Metadata(); err == nil {
				domain = meta.Domain
			}
		}
		return m, err
	}}, r14Str, natsjs.DeadLetter(js, "dlq")), func(context.Context, natsjs.Msg[string]) error {
		return natsjs.Permanent(errR90)
	})
	if !errors.Is(err, natsjs.ErrPermanent) {
		t.Fatalf("run: %v; want the permanent failure", err)
	}
	if domain != "hub" {
		t.Fatalf("the message's metadata names domain %q; want hub (the test's server does not send the domain)", domain)
	}
	r63WaitFor(t, "the dead letter", func() bool { return r79DLQCount(t, js) == 1 })
	st, err := js.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantID := "sluice-dead:hub.WORK:c:" + strconv.FormatInt(ci.Created.UnixNano(), 10) + ":1"
	if got := m.Header.Get(jetstream.MsgIDHeader); got != wantID || m.Header.Get("Sluice-Stream") != "hub.WORK" || m.Header.Get("Sluice-Stream-Seq") != "1" {
		t.Errorf("dead letter headers %v; want Nats-Msg-Id %s, Sluice-Stream hub.WORK, Sluice-Stream-Seq 1", m.Header, wantID)
	}
	r63WaitFor(t, "the message's settlement", func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
}
