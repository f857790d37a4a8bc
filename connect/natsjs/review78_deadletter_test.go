package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

var errR78 = errors.New("review78: a permanent failure")

var errR78Lost = errors.New("review78: the dead letter's answer was lost")

// DeadLetter: the message id
// "sluice-dead:<Sluice-Stream>:<consumer>:<created>:<Sluice-Stream-Seq>"
// makes "a dead letter published again for the same message by the same
// consumer (a redelivery after a failed Term)" stored once. The dead
// letter's first publish is stored but its answer lost (the wrapper returns
// an error): the message is nak'ed, comes back, fails again, and its second
// dead letter is a duplicate; the dead-letter stream holds one, with the
// documented headers, and the message is terminated.
// r78Poison starts a server with streams WORK (a work queue holding one
// message, "poison", seq 1) and DLQ (capturing "dlq"), and WORK's durable
// consumer "c" (explicit acks, AckWait an hour).
func r78Poison(t *testing.T) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	return r78PoisonOn(t, startServer(t), jetstream.ConsumerConfig{}, "poison")
}

// r78PoisonOn is r78Poison on the server at url, with the consumer's other
// settings from cfg, and one message of data msg.
func r78PoisonOn(t *testing.T, url string, cfg jetstream.ConsumerConfig, msg string) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	_, js := connect(t, url)
	ctx := context.Background()
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "WORK", Subjects: []string{"w.>"}, Retention: jetstream.WorkQueuePolicy},
		{Name: "DLQ", Subjects: []string{"dlq"}},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Durable, cfg.AckPolicy, cfg.AckWait = "c", jetstream.AckExplicitPolicy, time.Hour
	cons, err := js.CreateOrUpdateConsumer(ctx, "WORK", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "w.job", []byte(msg)); err != nil {
		t.Fatal(err)
	}
	return js, cons
}

// r78OneDeadLetter checks that DLQ holds one dead letter and the consumer
// settled every message, and returns the dead letter.
func r78OneDeadLetter(t *testing.T, js jetstream.JetStream, cons jetstream.Consumer) *jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	if n := r79DLQCount(t, js); n != 1 {
		t.Fatalf("DLQ holds %d dead letters; want 1", n)
	}
	// The Term is sent without waiting for the server's answer: wait until
	// the server has taken it.
	r63WaitFor(t, "the message's settlement", func() bool {
		ci, err := cons.Info(ctx)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0
	})
	st, err := js.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReview78DeadLetterStoredOnce(t *testing.T) {
	js, cons := r78Poison(t)
	ctx := context.Background()
	var err error
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var calls atomic.Int32
	var second *jetstream.PubAck
	dlq := &r75JS{JetStream: js}
	dlq.hook = func(ctx context.Context, m *nats.Msg, next func(context.Context, *nats.Msg) (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
		ack, err := next(ctx, m)
		switch calls.Add(1) {
		case 1:
			if err == nil {
				err = errR78Lost // stored, but the source hears a failure
			}
		case 2:
			second = ack
			drain()
		}
		return ack, err
	}
	rctx, cancel := r75HangCtx()
	defer cancel()
	src := natsjs.Source(cons, r14Str, natsjs.DeadLetter(dlq, "dlq"), natsjs.Backoff(time.Millisecond, time.Millisecond))
	failed := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		return m, natsjs.Permanent(errR78)
	}, stage.OnError(stage.Forward))
	err = sink.ForEach(rctx, failed, func(context.Context, natsjs.Msg[string]) error { return nil })
	if !errors.Is(err, natsjs.ErrPermanent) {
		t.Fatalf("run: %v; want the permanent failure", err)
	}
	if calls.Load() != 2 || second == nil || !second.Duplicate {
		t.Fatalf("dead-letter publishes %d, the second's answer %+v; want 2, the second a duplicate", calls.Load(), second)
	}
	m := r78OneDeadLetter(t, js, cons)
	ci0, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantID := "sluice-dead:WORK:c:" + strconv.FormatInt(ci0.Created.UnixNano(), 10) + ":1"
	if got := m.Header.Get(jetstream.MsgIDHeader); got != wantID || m.Header.Get("Sluice-Stream") != "WORK" || m.Header.Get("Sluice-Stream-Seq") != "1" {
		t.Errorf("dead letter headers %v; want Nats-Msg-Id %s, Sluice-Stream WORK, Sluice-Stream-Seq 1", m.Header, wantID)
	}
}

// r78Blind is a consumer handle that cannot tell the run its info: Info
// fails as when the server is away, and the handle knew none.
type r78Blind struct{ jetstream.Consumer }

func (r78Blind) Info(context.Context) (*jetstream.ConsumerInfo, error) {
	return nil, context.DeadlineExceeded
}

func (r78Blind) CachedInfo() *jetstream.ConsumerInfo { return nil }

// DeadLetter: "(A run that could not learn the consumer's creation time,
// the server away as it started, sends no id.)" The message is still
// dead-lettered and terminated, with the other headers.
func TestReview78DeadLetterWithoutConsumerInfo(t *testing.T) {
	js, cons := r78Poison(t)
	rctx, cancel := r75HangCtx()
	defer cancel()
	err := sink.ForEach(rctx, natsjs.Source(r78Blind{cons}, r14Str, natsjs.DeadLetter(js, "dlq")), func(context.Context, natsjs.Msg[string]) error {
		return natsjs.Permanent(errR78)
	})
	if !errors.Is(err, natsjs.ErrPermanent) {
		t.Fatalf("run: %v; want the permanent failure", err)
	}
	m := r78OneDeadLetter(t, js, cons)
	if id := m.Header.Get(jetstream.MsgIDHeader); id != "" || m.Header.Get("Sluice-Stream") != "WORK" {
		t.Errorf("dead letter headers %v; want no Nats-Msg-Id, Sluice-Stream WORK", m.Header)
	}
}
