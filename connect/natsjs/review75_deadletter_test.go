package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// DeadLetter: "DeadLetter publishes each terminated message to subject
// through js (a stream must capture subject), with headers Sluice-Reason,
// Sluice-Subject, Sluice-Stream-Seq and Sluice-Deliveries."
//
// The attack: messages whose producers set JetStream publish headers of
// their own, which say something about the publish into WORK, not into the
// dead-letter stream: a Nats-Msg-Id that two messages share (legitimately:
// WORK's duplicate window passed between them), and an expectation
// (Nats-Expected-Stream: WORK) that the dead-letter stream cannot meet. Each
// terminated message must still be stored in the dead-letter stream, with
// the documented headers.
func TestReview75DeadLetterOfMessagesWithPublishHeaders(t *testing.T) {
	cases := []struct {
		name string
		opts func(i int) []jetstream.PublishOpt
	}{
		{"shared-msg-id", func(int) []jetstream.PublishOpt { return []jetstream.PublishOpt{jetstream.WithMsgID("same")} }},
		{"expect-stream", func(int) []jetstream.PublishOpt { return []jetstream.PublishOpt{jetstream.WithExpectStream("WORK")} }},
		{"expect-last-seq", func(i int) []jetstream.PublishOpt {
			return []jetstream.PublishOpt{jetstream.WithExpectLastSequence(uint64(i))}
		}},
		{"control-plain", func(int) []jetstream.PublishOpt { return nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := startServer(t)
			_, js := connect(t, url)
			ctx := context.Background()
			for _, cfg := range []jetstream.StreamConfig{
				{Name: "WORK", Subjects: []string{"w.>"}, Retention: jetstream.WorkQueuePolicy, Duplicates: 100 * time.Millisecond},
				{Name: "DLQ", Subjects: []string{"dlq"}}, // the default duplicate window (2 min)
			} {
				if _, err := js.CreateStream(ctx, cfg); err != nil {
					t.Fatal(err)
				}
			}
			cons, err := js.CreateOrUpdateConsumer(ctx, "WORK", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			// Two messages; the second is published again until WORK stores it
			// (for a shared id: once WORK's duplicate window has passed).
			for i := range 2 {
				for {
					ack, err := js.Publish(ctx, "w."+strconv.Itoa(i), []byte("p"+strconv.Itoa(i)), c.opts(i)...)
					if err != nil {
						t.Fatalf("publish %d: %v", i, err)
					}
					if !ack.Duplicate {
						break
					}
					time.Sleep(20 * time.Millisecond) // setup only: wait out WORK's duplicate window
				}
			}
			// Both fail permanently (Forward: the run goes on) and are
			// terminated and dead-lettered.
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			rctx, cancel := r75HangCtx()
			defer cancel()
			var n atomic.Int64
			src := natsjs.Source(cons, r14Str, natsjs.DeadLetter(js, "dlq"))
			failed := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
				if n.Add(1) == 2 {
					drain()
				}
				return m, natsjs.Permanent(errR75)
			}, stage.Workers(1), stage.OnError(stage.Forward))
			err = sink.ForEach(rctx, failed, func(context.Context, natsjs.Msg[string]) error { return nil })
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || !errors.Is(err, natsjs.ErrPermanent) {
				t.Fatalf("run: %v, want the forwarded permanent failures", err)
			}
			dlq, err := js.Stream(ctx, "DLQ")
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(r75Watchdog)
			for {
				info, err := dlq.Info(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if info.State.Msgs == 2 {
					break
				}
				ci, _ := cons.Info(ctx)
				if time.Now().After(deadline) || (ci != nil && ci.NumAckPending == 0 && ci.NumPending == 0) {
					w, _ := js.Stream(ctx, "WORK")
					wi, _ := w.Info(ctx)
					var hs []nats.Header
					for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
						if m, err := dlq.GetMsg(ctx, seq); err == nil {
							hs = append(hs, m.Header)
						}
					}
					t.Fatalf("DLQ holds %d dead letters (headers %v), want 2; WORK holds %d (every message settled: ack pending %d, pending %d)",
						info.State.Msgs, hs, wi.State.Msgs, ci.NumAckPending, ci.NumPending)
				}
				time.Sleep(20 * time.Millisecond)
			}
			for seq := uint64(1); seq <= 2; seq++ {
				m, err := dlq.GetMsg(ctx, seq)
				if err != nil {
					t.Fatal(err)
				}
				h := m.Header
				if h.Get("Sluice-Reason") == "" || h.Get("Sluice-Deliveries") != "1" ||
					h.Get("Sluice-Subject") != "w."+string(m.Data[1:]) {
					t.Fatalf("dead letter %d: data %q headers %v", seq, m.Data, h)
				}
			}
		})
	}
}

// DeadLetter: "DeadLetter publishes each terminated message to subject".
// The same attack from another angle: two work streams whose producers use
// their own id sequences (a message id deduplicates within one stream), and
// one dead-letter subject for both, as the README's single "dlq.jobs"
// suggests for a fleet. Message "1" of each stream fails permanently: both
// must be stored as dead letters (each was terminated, so a dead letter the
// dead-letter stream drops is a message lost).
func TestReview75DeadLetterSharedAcrossStreams(t *testing.T) {
	url := startServer(t)
	_, js := connect(t, url)
	ctx := context.Background()
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "A", Subjects: []string{"a.>"}, Retention: jetstream.WorkQueuePolicy},
		{Name: "B", Subjects: []string{"b.>"}, Retention: jetstream.WorkQueuePolicy},
		{Name: "DLQ", Subjects: []string{"dlq"}},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"A", "B"} {
		cons, err := js.CreateOrUpdateConsumer(ctx, s, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		subj := strings.ToLower(s) + ".job"
		if _, err := js.Publish(ctx, subj, []byte(s), jetstream.WithMsgID("1")); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := r75HangCtx()
		err = sink.ForEach(rctx, natsjs.Source(cons, r14Str, natsjs.DeadLetter(js, "dlq")), func(context.Context, natsjs.Msg[string]) error {
			return natsjs.Permanent(errR75)
		})
		cancel()
		if !errors.Is(err, natsjs.ErrPermanent) {
			t.Fatalf("run over %s: %v", s, err)
		}
		// The Term is a publish the server applies in its own time, after
		// the run returned: wait for it (a message never terminated stays
		// pending for the hour of AckWait, and the watchdog fails).
		r38WaitFor(t, s+"'s message settled (Term applied by the server)", func() bool {
			ci, err := cons.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return ci.NumAckPending == 0 && ci.NumPending == 0
		})
	}
	dlq, err := js.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	info, err := dlq.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		var got []string
		for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
			if m, err := dlq.GetMsg(ctx, seq); err == nil {
				got = append(got, string(m.Data)+" "+m.Header.Get(jetstream.MsgIDHeader))
			}
		}
		t.Fatalf("DLQ holds %d dead letters %q, want 2 (one per terminated message: A's and B's)", info.State.Msgs, got)
	}
}
