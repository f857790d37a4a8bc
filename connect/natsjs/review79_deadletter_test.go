package natsjs_test

// Review 79 (fresh eyes on 75eed00): a dead letter's message id is now
// "sluice-dead:<stream>:<stream sequence>", "one per message ... and two
// messages never share one" (DeadLetter). But a dead letter is one per
// termination, not per message: the same message terminated by two
// consumers of its stream (two applications, one dead-letter subject), or a
// message of a stream deleted and made again under the same name (its
// sequences start again at 1), gets the id of an earlier dead letter, and
// the dead-letter stream drops it as a duplicate within its duplicate
// window, while the message is terminated: lost. Neither message carries a
// publisher's id, so before 75eed00 each dead letter had no id and both
// were stored.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR79 = errors.New("review79: a permanent failure")

// r79TerminateOne runs a source over cons whose every message fails for
// good, until its first dead letter was published through js, and returns
// that publish's answer.
func r79TerminateOne(t *testing.T, js jetstream.JetStream, cons jetstream.Consumer) *jetstream.PubAck {
	t.Helper()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var got *jetstream.PubAck
	var pubErr error
	dlq := &r75JS{JetStream: js}
	dlq.hook = func(ctx context.Context, m *nats.Msg, next func(context.Context, *nats.Msg) (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
		ack, err := next(ctx, m)
		if got == nil && pubErr == nil {
			got, pubErr = ack, err
			drain()
		}
		return ack, err
	}
	rctx, cancel := r75HangCtx()
	defer cancel()
	src := natsjs.Source(cons, r14Str, natsjs.DeadLetter(dlq, "dlq"), natsjs.Backoff(time.Millisecond, time.Millisecond))
	failed := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		return m, natsjs.Permanent(errR79)
	}, stage.OnError(stage.Forward))
	err := sink.ForEach(rctx, failed, func(context.Context, natsjs.Msg[string]) error { return nil })
	if !errors.Is(err, natsjs.ErrPermanent) {
		t.Fatalf("run: %v; want the permanent failure", err)
	}
	if pubErr != nil || got == nil {
		t.Fatalf("dead-letter publish: %v, %+v", pubErr, got)
	}
	return got
}

func r79DLQCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestReview79DeadLetterTwoConsumersOneMessage: one stream, two durable
// consumers (two applications), one dead-letter subject; each terminates
// the same message (no publisher's id). Each termination's dead letter
// must be stored: the second is dropped as a duplicate of the first.
func TestReview79DeadLetterTwoConsumersOneMessage(t *testing.T) {
	url := startServer(t)
	_, js := connect(t, url)
	ctx := context.Background()
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "WORK", Subjects: []string{"w.>"}},
		{Name: "DLQ", Subjects: []string{"dlq"}},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, "w.job", []byte("poison")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"billing", "shipping"} {
		cons, err := js.CreateOrUpdateConsumer(ctx, "WORK", jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ack := r79TerminateOne(t, js, cons)
		if ack.Duplicate {
			t.Errorf("consumer %s: its dead letter was dropped as a duplicate (DLQ holds %d), while its message is terminated", name, r79DLQCount(t, js))
		}
	}
	if n := r79DLQCount(t, js); n != 2 {
		t.Errorf("DLQ holds %d dead letters; want 2, one per termination", n)
	}
}

// TestReview79DeadLetterStreamRecreated: a stream deleted and made again
// under the same name numbers its messages from 1 again; the dead letter of
// the new stream's first message gets the id of the old one's.
func TestReview79DeadLetterStreamRecreated(t *testing.T) {
	url := startServer(t)
	_, js := connect(t, url)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq"}}); err != nil {
		t.Fatal(err)
	}
	for round, data := range []string{"first poison", "second poison"} {
		if round > 0 {
			if err := js.DeleteStream(ctx, "WORK"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"w.>"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "w.job", []byte(data)); err != nil {
			t.Fatal(err)
		}
		cons, err := js.CreateOrUpdateConsumer(ctx, "WORK", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if ack := r79TerminateOne(t, js, cons); ack.Duplicate {
			t.Errorf("%q: its dead letter was dropped as a duplicate, while its message is terminated", data)
		}
	}
	if n := r79DLQCount(t, js); n != 2 {
		t.Errorf("DLQ holds %d dead letters; want 2 (two messages, two terminations)", n)
	}
}

// TestReview79PublishStopIndexCountsForwarded: stage.Error's Index is "for
// a sink callback, [its position] in the stream the sink runs. Forwarded
// errors count as items", and the outer "foreach" error of Publish has it
// so. The inner "publish" error counts only the items msg was called for
// (Publish's doc says so since the review found the two differ unstated).
func TestReview79PublishStopIndexCountsForwarded(t *testing.T) {
	js := &r75JS{}
	js.hook = func(ctx context.Context, m *nats.Msg, next func(context.Context, *nats.Msg) (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
		return nil, stage.ErrStop // every publish: a JetStream wrapper's stop
	}
	in := stage.Map(source.Slice([]string{"a", "b"}), func(_ context.Context, v string) (string, error) {
		if v == "a" {
			return "", errR79
		}
		return v, nil
	}, stage.OnError(stage.Forward))
	ctx, cancel := r75HangCtx()
	defer cancel()
	err := natsjs.Publish(ctx, js, in, func(v string) (*nats.Msg, error) {
		return &nats.Msg{Subject: "out", Data: []byte(v)}, nil
	}, func(v string) string { return v }, nil)
	var outer, inner *stage.Error
	if !errors.As(err, &outer) || outer.Stage != "foreach" || !errors.As(outer.Err, &inner) || inner.Stage != "publish" {
		t.Fatalf("Publish: %v; want a \"publish\" *stage.Error inside a \"foreach\" one", err)
	}
	// Publish: the inner Index "counts only the items msg was called for,
	// the "foreach" one's forwarded errors too".
	if outer.Index != 1 || inner.Index != 0 {
		t.Errorf("item b after a forwarded error: foreach Index %d, publish Index %d; want 1 and 0", outer.Index, inner.Index)
	}
}
