package natsjs_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/stage"
)

// TestReview53OptionPanics: "Options are checked when they are made: an
// invalid one panics there", with the bounds each option's doc gives.
func TestReview53OptionPanics(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	cases := map[string]func(){
		"ReadAhead(0)":         func() { natsjs.ReadAhead(0) },
		"ReadAhead(-1)":        func() { natsjs.ReadAhead(-1) },
		"ReadAhead(Max+1)":     func() { natsjs.ReadAhead(natsjs.MaxReadAhead + 1) },
		"ReadAhead(MinInt)":    func() { natsjs.ReadAhead(math.MinInt) },
		"KeepAlive(0)":         func() { natsjs.KeepAlive(0) },
		"KeepAlive(-1)":        func() { natsjs.KeepAlive(-1) },
		"Backoff(-1,1)":        func() { natsjs.Backoff(-1, time.Second) },
		"Backoff(2,1)":         func() { natsjs.Backoff(2, 1) },
		"DeadLetter(nil,s)":    func() { natsjs.DeadLetter(nil, "dlq") },
		"DeadLetter(js,empty)": func() { natsjs.DeadLetter(w.js, "") },
		"OnAckError(nil)":      func() { natsjs.OnAckError(nil) },
		"Publish(nil js)":      func() { _ = natsjs.Publish[string](context.Background(), nil, stage.Stream[string]{}, nil, nil, nil) },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		})
	}
	// The documented bounds themselves are valid.
	natsjs.ReadAhead(1)
	natsjs.ReadAhead(natsjs.MaxReadAhead)
	natsjs.Backoff(0, 0)
	natsjs.KeepAlive(time.Nanosecond)
}

// TestReview53TinyKeepAliveReadAheadOne: hostile but valid values, KeepAlive
// of 1 ns (an in-progress ack storm) and ReadAhead(1), must not change the
// outcome: "committed by the sink: Ack", and KeepAlive's acks only keep a
// message from redelivery. Every message is delivered once and the work
// queue empties.
func TestReview53TinyKeepAliveReadAheadOne(t *testing.T) {
	const n = 15
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pubN(t, n)
	stopCtx, drain := context.WithCancel(context.Background())
	defer drain()
	src := stage.Until(natsjs.Source(w.cons, r14Str, natsjs.KeepAlive(time.Nanosecond), natsjs.ReadAhead(1)), stopCtx)
	slow := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		return m, nil
	}, stage.Workers(4))
	seen := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := stage.Run(ctx, slow, func(ctx context.Context, m natsjs.Msg[string], err error) error {
		seen[m.Value]++
		if len(seen) == n {
			drain()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for v, c := range seen {
		if c != 1 {
			t.Errorf("message %s seen %d times", v, c)
		}
	}
	r53WaitWork(t, w, 0, "every one was committed")
}
