package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/stage"
)

// Publish: "a failed publish, or an error or panic in msg or id, ends the run
// with a *stage.Error (Stage "foreach") wrapping it" and "An item is committed
// (and its source message acknowledged) only once its publish is
// acknowledged."
//
// The attack: hostile error values that sink.ForEach would take for a quiet
// stop (stage.ErrStop, bare or wrapped). Returned from msg, or from the
// user's JetStream wrapper, for item "b", they must still end the run with a
// *stage.Error, and "b", never published, must not be acknowledged.
func TestReview75PublishStopValuesAreNoCommit(t *testing.T) {
	type fail struct {
		msgErr, pubErr error // returned for "b"
		nilMsg         bool
		idPanic        any
		want           error
	}
	wrapped := fmt.Errorf("review75: %w", stage.ErrStop)
	cases := map[string]fail{
		"msg-ErrStop":         {msgErr: stage.ErrStop, want: stage.ErrStop},
		"msg-wrapped-ErrStop": {msgErr: wrapped, want: stage.ErrStop},
		"publish-ErrStop":     {pubErr: stage.ErrStop, want: stage.ErrStop},
		"publish-wrapped":     {pubErr: wrapped, want: stage.ErrStop},
		"msg-nil":             {nilMsg: true, want: natsjs.ErrNilMsg},
		"id-panics-ErrStop":   {idPanic: stage.ErrStop, want: stage.ErrStop},
		"msg-Permanent":       {msgErr: natsjs.Permanent(stage.ErrStop), want: natsjs.ErrPermanent},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{})
			log := r63WatchAcks(t, e.url)
			e.pub(t, "a", "b", "c")
			js := &r75JS{JetStream: e.srcJS}
			js.hook = func(ctx context.Context, m *nats.Msg, next func(context.Context, *nats.Msg) (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
				if string(m.Data) == "b" && c.pubErr != nil {
					return nil, c.pubErr
				}
				return next(ctx, m)
			}
			ctx, cancel := r75HangCtx()
			defer cancel()
			var counts natsjs.Published
			src := natsjs.Source(e.srcCons, r14Str, natsjs.DeadLetter(e.srcJS, "dlq"))
			err := natsjs.Publish(ctx, js, src, func(m natsjs.Msg[string]) (*nats.Msg, error) {
				if m.Value == "b" {
					if c.msgErr != nil {
						return nil, c.msgErr
					}
					if c.nilMsg {
						return nil, nil
					}
				}
				out := nats.NewMsg("out")
				out.Data = []byte(m.Value)
				return out, nil
			}, func(m natsjs.Msg[string]) string {
				if m.Value == "b" && c.idPanic != nil {
					panic(c.idPanic)
				}
				return "id-" + m.Value
			}, &counts)
			var se *stage.Error
			if !errors.As(err, &se) || se.Stage != "foreach" {
				t.Errorf("Publish returned %T %v, want a *stage.Error of stage \"foreach\"", err, err)
			}
			if !errors.Is(err, c.want) {
				t.Errorf("Publish returned %v, want one wrapping %v", err, c.want)
			}
			if (c.msgErr != nil || c.pubErr != nil) && stage.IsStop(errors.Unwrap(err)) {
				t.Errorf("the \"foreach\" error holds a stop as it is: %v", err)
			}
			if c.want == stage.ErrStop && c.idPanic == nil {
				// Publish: "wrapped once more, in a *stage.Error of Stage
				// "publish" inside the "foreach" one (its Index counts the
				// items msg was called for)".
				var inner *stage.Error
				if !errors.As(se.Err, &inner) || inner.Stage != "publish" || inner.Index != 1 || inner.Input.(natsjs.Msg[string]).Value != "b" {
					t.Errorf("Publish returned %v; want a *stage.Error of Stage \"publish\", Index 1, Input b inside", err)
				}
			}
			if c.idPanic != nil {
				var pe *stage.PanicError
				if !errors.As(err, &pe) {
					t.Errorf("Publish returned %v, want a *stage.PanicError inside", err)
				}
			}
			if err := log.sync(e.src); err != nil {
				t.Fatal(err)
			}
			if ks := log.of(2); slices.Contains(ks, "ack") || len(ks) == 0 {
				t.Errorf("\"b\" (never published) was settled %v; want it given back (nak) or terminated, never acked", ks)
			}
			if ks := log.of(1); len(ks) != 1 || ks[0] != "ack" {
				t.Errorf("\"a\" (published) was settled %v, want [ack]", ks)
			}
			if n := counts.Stored.Load(); n != 1 {
				t.Errorf("Stored %d, want 1 (only \"a\")", n)
			}
			t.Logf("settlements: %v; DLQ %d; WORK %d", log.all(), e.streamMsgs(t, "DLQ"), e.streamMsgs(t, "WORK"))
			if n := e.streamMsgs(t, "OUT"); n != 1 {
				t.Fatalf("OUT holds %d, want 1", n)
			}
		})
	}
}

// Publish: "publishes each item with js, as the message that msg makes of
// it, with the message id id(item) (the Nats-Msg-Id header; an empty id
// leaves the header as msg made it, and without one the stream cannot tell
// a duplicate)". A msg that sets a Nats-Msg-Id of its own (the same for
// every item): a non-empty id(item) wins, and distinct items are not
// duplicates of each other; an empty one leaves msg's, and the stream keeps
// the first item only. Without either, all three are stored.
func TestReview75PublishIDWinsOverTheMessagesOwnHeader(t *testing.T) {
	for _, c := range []struct {
		name          string
		own, prefix   string // msg's own id; id(item) is prefix+item, or "" without a prefix
		stored, dupes int64
	}{
		{"id wins", "the-same-for-all", "id-", 3, 0},
		{"empty id keeps msg's", "the-same-for-all", "", 1, 2},
		{"no id at all", "", "", 3, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{})
			e.pub(t, "a", "b", "c")
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			ctx, cancel := r75HangCtx()
			defer cancel()
			var counts natsjs.Published
			src := stage.Map(stage.Until(natsjs.Source(e.srcCons, r14Str), stop), func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
				if m.Value == "c" {
					drain()
				}
				return m, nil
			}, stage.Workers(1))
			id := func(m natsjs.Msg[string]) string {
				if c.prefix == "" {
					return ""
				}
				return c.prefix + m.Value
			}
			err := natsjs.Publish(ctx, e.srcJS, src, func(m natsjs.Msg[string]) (*nats.Msg, error) {
				out := nats.NewMsg("out")
				out.Data = []byte(m.Value)
				if c.own != "" {
					out.Header.Set(jetstream.MsgIDHeader, c.own)
				}
				return out, nil
			}, id, &counts)
			if err != nil {
				t.Fatal(err)
			}
			if s, d := counts.Stored.Load(), counts.Duplicates.Load(); s != c.stored || d != c.dupes {
				t.Fatalf("Stored %d, Duplicates %d; want %d, %d", s, d, c.stored, c.dupes)
			}
			out, err := e.js.Stream(context.Background(), "OUT")
			if err != nil {
				t.Fatal(err)
			}
			for seq := uint64(1); seq <= uint64(c.stored); seq++ {
				m, err := out.GetMsg(context.Background(), seq)
				if err != nil {
					t.Fatal(err)
				}
				want := c.own
				if c.prefix != "" {
					want = c.prefix + string(m.Data)
				}
				if got := m.Header.Get(jetstream.MsgIDHeader); got != want {
					t.Fatalf("OUT seq %d: Nats-Msg-Id %q, want %q", seq, got, want)
				}
			}
		})
	}
}

// Publish: "Items are published one at a time." A pipeline of many workers
// and a buffer feeds it; the user's JetStream wrapper counts publishes in
// flight.
func TestReview75PublishOneAtATime(t *testing.T) {
	e := r63New(t, jetstream.ConsumerConfig{})
	vals := r63Vals(0, 200)
	e.pub(t, vals...)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := r75HangCtx()
	defer cancel()
	js := &r75JS{JetStream: e.srcJS}
	var counts natsjs.Published
	src := stage.Map(stage.Until(natsjs.Source(e.srcCons, r14Str), stop), r63Ident, stage.Workers(8), stage.Buffer(16))
	go func() {
		_ = r63Poll(stop, "OUT to hold everything", func() bool { return counts.Stored.Load() == int64(len(vals)) })
		drain()
	}()
	err := natsjs.Publish(ctx, js, src, func(m natsjs.Msg[string]) (*nats.Msg, error) {
		out := nats.NewMsg("out")
		out.Data = []byte(m.Value)
		return out, nil
	}, func(m natsjs.Msg[string]) string { return m.Value }, &counts)
	if err != nil {
		t.Fatal(err)
	}
	if js.asyncUsed.Load() {
		t.Fatalf("Publish used an asynchronous publish")
	}
	if m := js.maxInflight.Load(); m != 1 {
		t.Fatalf("at most %d publishes in flight at once, want 1", m)
	}
}
