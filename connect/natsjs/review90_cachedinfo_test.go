package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r90Away is a consumer handle whose Info fails as when the server is
// away, while the handle still knows the consumer's info from when it was
// made (CachedInfo).
type r90Away struct{ jetstream.Consumer }

func (r90Away) Info(context.Context) (*jetstream.ConsumerInfo, error) {
	return nil, context.DeadlineExceeded
}

// A run that cannot ask the server for the consumer's info as it starts
// "goes on and waits for it" (Source), with what its handle knew
// (CachedInfo): so it still knows MaxDeliver, and the consumer's name and
// creation time, which DeadLetter's id names ("A run that could not learn
// the consumer's creation time ... sends no id": this one could). The
// consumer allows one delivery (MaxDeliver 1); the message fails with a
// retryable error on it, its last: it must be terminated and dead-lettered
// (package documentation, "Outcomes"), with the id of this consumer, not
// nak'ed to stay in the stream undelivered.
func TestReview90CachedInfoWhenTheServerCannotBeAsked(t *testing.T) {
	js, cons := r78PoisonOn(t, startServer(t), jetstream.ConsumerConfig{MaxDeliver: 1}, "x")
	ctx := context.Background()
	known := cons.CachedInfo()
	if known == nil || known.Config.MaxDeliver != 1 {
		t.Fatalf("the handle knows %+v; want the consumer's info, MaxDeliver 1", known)
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	rctx, cancel := r75HangCtx()
	defer cancel()
	failed := stage.Map(stage.Until(natsjs.Source(r90Away{cons}, r14Str, natsjs.DeadLetter(js, "dlq")), stop), func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		drain()
		return m, errR90 // retryable, but on the last delivery
	}, stage.OnError(stage.Forward))
	err := sink.ForEach(rctx, failed, func(context.Context, natsjs.Msg[string]) error { return nil })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || !errors.Is(err, errR90) {
		t.Fatalf("run: %v; want the forwarded failure", err)
	}
	// The run returns once its dead letters are stored (DeadLetter).
	if n := r79DLQCount(t, js); n != 1 {
		t.Fatalf("DLQ holds %d dead letters; want 1 (the message was not terminated on its last delivery)", n)
	}
	st, err := js.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	wantID := "sluice-dead:WORK:c:" + strconv.FormatInt(known.Created.UnixNano(), 10) + ":1"
	if got := m.Header.Get(jetstream.MsgIDHeader); got != wantID || m.Header.Get("Sluice-Deliveries") != "1" {
		t.Fatalf("dead letter headers %v; want Nats-Msg-Id %s, Sluice-Deliveries 1", m.Header, wantID)
	}
}
