package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

func r14Panics(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

// SourceOption: "Options are checked when they are made: an invalid one
// panics there", with each constructor's bounds.
func TestReview14OptionBounds(t *testing.T) {
	url := startServer(t)
	_, js := connect(t, url)
	cases := []struct {
		name  string
		f     func()
		panic bool
	}{
		{"ReadAhead(0)", func() { natsjs.ReadAhead(0) }, true},
		{"ReadAhead(-1)", func() { natsjs.ReadAhead(-1) }, true},
		{"ReadAhead(1)", func() { natsjs.ReadAhead(1) }, false},
		{"ReadAhead(Max)", func() { natsjs.ReadAhead(natsjs.MaxReadAhead) }, false},
		{"ReadAhead(Max+1)", func() { natsjs.ReadAhead(natsjs.MaxReadAhead + 1) }, true},
		{"Backoff(-1,0)", func() { natsjs.Backoff(-1, 0) }, true},
		{"Backoff(2,1)", func() { natsjs.Backoff(2, 1) }, true},
		{"Backoff(0,0)", func() { natsjs.Backoff(0, 0) }, false},
		{"Backoff(1,1)", func() { natsjs.Backoff(1, 1) }, false},
		{"KeepAlive(0)", func() { natsjs.KeepAlive(0) }, true},
		{"KeepAlive(-1)", func() { natsjs.KeepAlive(-1) }, true},
		{"KeepAlive(1)", func() { natsjs.KeepAlive(1) }, false},
		{"DeadLetter(nil, s)", func() { natsjs.DeadLetter(nil, "dlq") }, true},
		{"DeadLetter(js, \"\")", func() { natsjs.DeadLetter(js, "") }, true},
		{"OnAckError(nil)", func() { natsjs.OnAckError(nil) }, true},
	}
	for _, c := range cases {
		v := r14Panics(c.f)
		if (v != nil) != c.panic {
			t.Errorf("%s: panic %v, want a panic: %v", c.name, v, c.panic)
		} else if v != nil {
			t.Logf("%s: %v", c.name, v)
		}
	}
}

// Backoff(0, 0) is allowed: a Nak without delay. The failed message comes
// back with its delivery count up, and is committed then.
func TestReview14ZeroBackoffRedelivers(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "x")
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []uint64
	work := stage.Map(stage.Until(natsjs.Source(w.cons, r14Str, natsjs.Backoff(0, 0)), stop), func(_ context.Context, m natsjs.Msg[string]) (uint64, error) {
		got = append(got, m.Deliveries)
		if m.Deliveries < 3 {
			return 0, errors.New("not yet")
		}
		drain()
		return m.Deliveries, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	err := sink.ForEach(ctx, work, func(context.Context, uint64) error { return nil })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 2 {
		t.Fatalf("err = %v", err)
	}
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("deliveries %v", got)
	}
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// Publish: "Publish panics, before it runs s, if js, msg or id is nil."
func TestReview14PublishNilArgumentsPanicBeforeRunning(t *testing.T) {
	url := startServer(t)
	_, js := connect(t, url)
	var opened atomic.Bool
	s := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		opened.Store(true)
		return func(context.Context) (int, error) { return 0, errors.New("unused") }, nil
	})
	msg := func(int) (*nats.Msg, error) { return &nats.Msg{Subject: "out"}, nil }
	id := func(int) string { return "x" }
	for name, f := range map[string]func(){
		"js":  func() { _ = natsjs.Publish(context.Background(), nil, s, msg, id, nil) },
		"msg": func() { _ = natsjs.Publish(context.Background(), js, s, nil, id, nil) },
		"id":  func() { _ = natsjs.Publish(context.Background(), js, s, msg, nil, nil) },
	} {
		if r14Panics(f) == nil {
			t.Errorf("nil %s: no panic", name)
		}
		if opened.Load() {
			t.Fatalf("nil %s: s was run before the panic", name)
		}
	}
}

// Publish: a redelivered item published before is a duplicate, "counts it as
// committed, so a redelivered item that was published before is
// acknowledged, not stored twice".
func TestReview14PublishDuplicateAcksTheSourceMessage(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "a", "b", "c")
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var n atomic.Int32
	var counts natsjs.Published
	err := natsjs.Publish(ctx, w.js, stage.Until(natsjs.Source(w.cons, r14Str), stop), func(m natsjs.Msg[string]) (*nats.Msg, error) {
		if n.Add(1) == 3 {
			defer drain()
		}
		return &nats.Msg{Subject: "out", Data: []byte(m.Value)}, nil
	}, func(natsjs.Msg[string]) string { return "same-id" }, &counts)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Stored.Load() != 1 || counts.Duplicates.Load() != 2 {
		t.Fatalf("counts %s", pubCounts(&counts))
	}
	if got := w.streamMsgs(t, "OUT"); got != 1 {
		t.Fatalf("OUT holds %d", got)
	}
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// Publish: "a failed publish ... ends the run with a *stage.Error (Stage
// "foreach")"; the source message whose publish failed is not acknowledged
// (Outcomes: a failed commit: Nak) and comes back; the ones published before
// it do not.
func TestReview14PublishFailureNaksItsMessage(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	all := w.pubN(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	published := map[string]bool{}
	var failed string
	err := natsjs.Publish(ctx, w.js, natsjs.Source(w.cons, r14Str, natsjs.Backoff(time.Millisecond, time.Millisecond)), func(m natsjs.Msg[string]) (*nats.Msg, error) {
		if len(published) == 2 {
			failed = m.Value
			return &nats.Msg{Subject: "no.stream.here", Data: []byte(m.Value)}, nil
		}
		published[m.Value] = true
		return &nats.Msg{Subject: "out", Data: []byte(m.Value)}, nil
	}, func(m natsjs.Msg[string]) string { return m.Value }, nil)
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "foreach" {
		t.Fatalf("err = %v", err)
	}
	seen := r14Collect(t, w.cons, func(s *r14Seen) bool {
		n := 0
		for _, v := range all {
			if published[v] || s.has(v) {
				n++
			}
		}
		return n == len(all)
	})
	for v := range seen.snapshot() {
		if published[v] {
			t.Fatalf("%q, published, came again", v)
		}
	}
	if !seen.has(failed) {
		t.Fatalf("%q, whose publish failed, did not come back", failed)
	}
}

// Publish: "a msg that returns a nil message and no error fails the same
// way, with ErrNilMsg"; "an error or panic in msg or id ends the run with a
// *stage.Error (Stage "foreach") wrapping it".
func TestReview14PublishCallbackFailures(t *testing.T) {
	url := startServer(t)
	_, js := connect(t, url)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "OUT", Subjects: []string{"out"}}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	items := func() stage.Stream[int] {
		i := 0
		return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(context.Context) (int, error) {
				i++
				if i > 3 {
					return 0, io.EOF
				}
				return i, nil
			}, nil
		})
	}
	okMsg := func(int) (*nats.Msg, error) { return &nats.Msg{Subject: "out"}, nil }
	id := func(v int) string { return fmt.Sprint(v) }

	var c natsjs.Published
	err := natsjs.Publish(ctx, js, items(), func(v int) (*nats.Msg, error) {
		if v == 2 {
			return nil, nil
		}
		return okMsg(v)
	}, id, &c)
	var se *stage.Error
	if !errors.Is(err, natsjs.ErrNilMsg) || !errors.As(err, &se) || se.Stage != "foreach" {
		t.Fatalf("nil msg: %v", err)
	}
	if c.Stored.Load() != 1 {
		t.Fatalf("nil msg: stored %d, want 1 (items are published one at a time)", c.Stored.Load())
	}

	err = natsjs.Publish(ctx, js, items(), okMsg, func(v int) string {
		if v == 3 {
			panic("id exploded")
		}
		return id(v)
	}, nil)
	var pe *stage.PanicError
	if !errors.As(err, &se) || se.Stage != "foreach" || !errors.As(err, &pe) {
		t.Fatalf("panic in id: %v", err)
	}

	cause := errors.New("cannot build")
	err = natsjs.Publish(ctx, js, items(), func(int) (*nats.Msg, error) { return nil, cause }, id, nil)
	if !errors.Is(err, cause) || !errors.As(err, &se) || se.Stage != "foreach" {
		t.Fatalf("error in msg: %v", err)
	}

	// A context cancelled before the run: nothing is published.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	var c2 natsjs.Published
	err = natsjs.Publish(cctx, js, items(), func(v int) (*nats.Msg, error) { return &nats.Msg{Subject: "out", Data: []byte("late")}, nil }, func(v int) string { return "late" + id(v) }, &c2)
	if !errors.Is(err, context.Canceled) || c2.Stored.Load()+c2.Duplicates.Load() != 0 {
		t.Fatalf("cancelled: %v %s", err, pubCounts(&c2))
	}
}
