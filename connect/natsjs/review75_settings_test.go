package natsjs_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// The run's consumer handle (e.srcCons) is looked up once, before the
// settings change: its cached info is stale. The same Source value is run
// twice. A failed message is nak'ed with a delay (2 s), so that the server
// does not redeliver it into the failing run's subscription as it stops
// (the stop would nak it again, spending a delivery); the next run waits
// for it. A stop that outlasts the delay (a stalled machine) spoils the
// scenario: r75FailOnce sees it in the consumer's delivery count and the
// test then checks nothing.
//
// Package doc: "A run reads MaxDeliver, MaxRequestBatch and MaxRequestExpires
// as it starts; change them between runs." Source: "As a run starts, the
// source asks the server for the consumer's info (one round trip)".
// And: "MaxDeliver: the source terminates a message that fails on its last
// delivery (to the dead-letter subject)".

// failOnce runs src once; its sink fails the first message it gets (a failed
// commit, retryable) and returns that message's delivery count. If the
// server delivered the message again into the run as it stopped (its Nak's
// delay passed first), the test is skipped: see above.
func r75FailOnce(t *testing.T, e *r63Env, src stage.Stream[natsjs.Msg[string]]) uint64 {
	t.Helper()
	ctx, cancel := r75HangCtx()
	defer cancel()
	var got uint64
	err := sink.ForEach(ctx, src, func(_ context.Context, m natsjs.Msg[string]) error {
		got = m.Deliveries
		return errR75
	})
	if !errors.Is(err, errR75) {
		t.Fatalf("run: %v, want the commit's error", err)
	}
	// The run's subscription is gone: no delivery can reach it any more.
	if d := e.info(t).Delivered.Consumer; d != got {
		t.Skipf("the message failed on delivery %d, and was delivered again into the run as it stopped (the consumer made %d deliveries): the stop outlasted the Nak's delay; not checked", got, d)
	}
	return got
}

func TestReview75MaxDeliverLoweredBetweenRuns(t *testing.T) {
	e := r63New(t, jetstream.ConsumerConfig{MaxDeliver: 5})
	log := r63WatchAcks(t, e.url)
	e.pub(t, "x")
	src := natsjs.Source(e.srcCons, r14Str, natsjs.DeadLetter(e.srcJS, "dlq"), natsjs.Backoff(2*time.Second, 2*time.Second))
	if d := r75FailOnce(t, e, src); d != 1 {
		t.Fatalf("first run saw delivery %d", d)
	}
	r75UpdateConsumer(t, e.js, jetstream.ConsumerConfig{MaxDeliver: 2})
	if d := r75FailOnce(t, e, src); d != 2 {
		t.Fatalf("second run saw delivery %d", d)
	}
	if err := log.sync(e.src); err != nil {
		t.Fatal(err)
	}
	if ks := log.of(1); len(ks) != 2 || ks[0] != "nak" || ks[1] != "term" {
		t.Fatalf("settlements %v, want [nak term]: the second run did not see MaxDeliver lowered to 2", ks)
	}
	if n := e.streamMsgs(t, "DLQ"); n != 1 {
		t.Fatalf("DLQ holds %d, want 1", n)
	}
}

func TestReview75MaxDeliverRaisedBetweenRuns(t *testing.T) {
	e := r63New(t, jetstream.ConsumerConfig{MaxDeliver: 2})
	log := r63WatchAcks(t, e.url)
	e.pub(t, "x")
	src := natsjs.Source(e.srcCons, r14Str, natsjs.DeadLetter(e.srcJS, "dlq"), natsjs.Backoff(2*time.Second, 2*time.Second))
	if d := r75FailOnce(t, e, src); d != 1 {
		t.Fatalf("first run saw delivery %d", d)
	}
	r75UpdateConsumer(t, e.js, jetstream.ConsumerConfig{MaxDeliver: 5})
	if d := r75FailOnce(t, e, src); d != 2 {
		t.Fatalf("second run saw delivery %d", d)
	}
	if err := log.sync(e.src); err != nil {
		t.Fatal(err)
	}
	if ks := log.of(1); len(ks) != 2 || ks[0] != "nak" || ks[1] != "nak" {
		t.Fatalf("settlements %v, want [nak nak]: the second run terminated on MaxDeliver 2, not 5", ks)
	}
	if n := e.streamMsgs(t, "DLQ"); n != 0 {
		t.Fatalf("DLQ holds %d, want 0", n)
	}
	if d := r75FailOnce(t, e, src); d != 3 {
		t.Fatalf("third run saw delivery %d, want 3", d)
	}
}

// r75CommitAll runs src until it committed want distinct values, then drains;
// a run that cannot get them fails after the watchdog.
func r75CommitAll(t *testing.T, src stage.Stream[natsjs.Msg[string]], want int) error {
	t.Helper()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := r75HangCtx()
	defer cancel()
	seen := map[string]bool{}
	return sink.ForEach(ctx, stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) error {
		seen[m.Value] = true
		if len(seen) == want {
			drain()
		}
		return nil
	})
}

// "MaxRequestBatch and MaxRequestExpires: none, or what the source asks
// within: a MaxRequestBatch below ReadAhead lowers the read-ahead to it, and a
// MaxRequestExpires below 5 s shortens each pull request's wait" — read as a
// run starts, so a change between runs is kept by the next run.
func TestReview75PullLimitsLoweredBetweenRuns(t *testing.T) {
	cases := []struct {
		name string
		cfg  jetstream.ConsumerConfig
	}{
		{"MaxRequestBatch=3", jetstream.ConsumerConfig{MaxRequestBatch: 3}},
		{"MaxRequestBatch=1", jetstream.ConsumerConfig{MaxRequestBatch: 1}},
		{"MaxRequestExpires=2s", jetstream.ConsumerConfig{MaxRequestExpires: 2 * time.Second}},
		{"both", jetstream.ConsumerConfig{MaxRequestBatch: 2, MaxRequestExpires: 1500 * time.Millisecond}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{})
			src := natsjs.Source(e.srcCons, r14Str)
			e.pub(t, r63Vals(0, 1)...)
			if err := r75CommitAll(t, src, 1); err != nil {
				t.Fatalf("first run: %v", err)
			}
			r75UpdateConsumer(t, e.js, c.cfg)
			e.pub(t, r63Vals(1, 20)...)
			if err := r75CommitAll(t, src, 20); err != nil {
				t.Fatalf("second run after the limits were lowered: %v (consumer %+v)", err, e.info(t))
			}
			e.waitWork(t, 0, "all acknowledged")
		})
	}
}

// "a MaxRequestExpires below 5 s shortens each pull request's wait (below
// 1 s, which nats.go cannot ask for, a run fails at once)" + Source: "ends the
// run at once with a *stage.SourceError and nothing taken (so does a
// MaxRequestExpires below 1 s ...)" — set between two runs of one Source.
func TestReview75MaxRequestExpiresBelowOneSecondSetBetweenRuns(t *testing.T) {
	e := r63New(t, jetstream.ConsumerConfig{})
	src := natsjs.Source(e.srcCons, r14Str)
	e.pub(t, r63Vals(0, 1)...)
	if err := r75CommitAll(t, src, 1); err != nil {
		t.Fatalf("first run: %v", err)
	}
	r75UpdateConsumer(t, e.js, jetstream.ConsumerConfig{MaxRequestExpires: 999 * time.Millisecond})
	e.pub(t, r63Vals(1, 3)...)
	var taken atomic.Int64
	ctx, cancel := r75HangCtx()
	defer cancel()
	err := sink.ForEach(ctx, src, func(_ context.Context, m natsjs.Msg[string]) error {
		taken.Add(1)
		return nil
	})
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("second run: %T %v, want a *stage.SourceError", err, err)
	}
	if n := taken.Load(); n != 0 {
		t.Fatalf("second run took %d messages, want none", n)
	}
	if i := e.info(t); i.Delivered.Consumer != 1 || i.NumAckPending != 0 {
		t.Fatalf("consumer after the refused run: delivered %d, ack pending %d; want 1, 0", i.Delivered.Consumer, i.NumAckPending)
	}
}

// Boundary: exactly 1 s is not below 1 s, so a run must work, and keep
// working across several of its pull requests' expiries while idle. The
// idle wait is ordered by the run's own pull requests, counted on the wire.
func TestReview75MaxRequestExpiresExactlyOneSecond(t *testing.T) {
	for _, exp := range []time.Duration{time.Second, 1500 * time.Millisecond} {
		t.Run(exp.String(), func(t *testing.T) {
			w := r14World(t, jetstream.ConsumerConfig{MaxRequestExpires: exp})
			wr := &r75Writes{pat: []byte("CONSUMER.MSG.NEXT.WORK.c")}
			_, js2 := connect(t, w.url, r75CountWrites(wr))
			cons2, err := js2.Consumer(context.Background(), "WORK", "c")
			if err != nil {
				t.Fatal(err)
			}
			src := natsjs.Source(cons2, r14Str)
			done := make(chan error, 1)
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			ctx, cancel := r75HangCtx()
			defer cancel()
			var got atomic.Int64
			go func() {
				done <- sink.ForEach(ctx, stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) error {
					if got.Add(1) == 5 {
						drain()
					}
					return nil
				})
			}()
			// Wait until the idle run has sent at least 4 pull requests (so
			// 3 expired), or it ended (a failure).
			deadline := time.Now().Add(r75Watchdog)
			for wr.n.Load() < 4 {
				select {
				case err := <-done:
					t.Fatalf("the idle run ended: %v (MaxRequestExpires %v is not below 1 s)", err, exp)
				case <-time.After(10 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatal("hang: the run sent fewer than 4 pull requests")
				}
			}
			w.pub(t, r63Vals(0, 5)...)
			if err := r75Recv(t, "the run's end", done); err != nil {
				t.Fatalf("run: %v", err)
			}
			r53WaitWork(t, w, 0, "all acknowledged")
		})
	}
}
