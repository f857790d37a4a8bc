package natsjs_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Package doc, Outcomes: "dropped on purpose by a Filter or a Handle policy:
// Ack"; "failed with a retryable error (... a FailFast error at this
// message): Nak with a delay that grows with the delivery count"; "failed
// with an error wrapped by Permanent ...: Term, after publishing it to the
// dead-letter subject"; "the run ended first (... a FailFast error at
// another message ...): Nak, when the run stops, so that another consumer
// gets it at once". stage.Budget: "the first n failed items of a run are
// dropped after being passed to h ..., and the (n+1)th ... fails the run with
// an error that wraps both ErrBudget and that item's *Error".
//
// Budget(1): v0 fails (dropped: Ack), v1 fails (over budget: a FailFast
// error at v1), v2.. are held when the run ends.
func TestReview75BudgetOutcomes(t *testing.T) {
	for _, permanent := range []bool{false, true} {
		name := "retryable"
		if permanent {
			name = "permanent"
		}
		t.Run(name, func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{})
			log := r63WatchAcks(t, e.url)
			vals := r63Vals(0, 6)
			e.pub(t, vals...)
			ctx, cancel := r75HangCtx()
			defer cancel()
			const base = 7 * time.Second
			var seenH atomic.Int64
			work := stage.Map(natsjs.Source(e.srcCons, r14Str, natsjs.DeadLetter(e.srcJS, "dlq"), natsjs.Backoff(base, time.Hour)),
				func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
					switch m.Value {
					case "v0":
						// let the run's client hold every message first
						qctx, qcancel := context.WithTimeout(context.Background(), r75Watchdog)
						defer qcancel()
						if err := e.quiet(qctx); err != nil {
							return m, err
						}
						return m, errR75
					case "v1":
						if permanent {
							return m, natsjs.Permanent(errR75)
						}
						return m, errR75
					}
					return m, nil
				}, stage.Workers(1), stage.OnError(stage.Budget(1, func(_ context.Context, e *stage.Error) error {
					seenH.Add(1)
					return nil
				})))
			var commits atomic.Int64
			err := sink.ForEach(ctx, work, func(context.Context, natsjs.Msg[string]) error {
				commits.Add(1)
				return nil
			})
			if !errors.Is(err, stage.ErrBudget) || !errors.Is(err, errR75) {
				t.Fatalf("run: %v, want ErrBudget and v1's error", err)
			}
			if seenH.Load() != 1 || commits.Load() != 0 {
				t.Fatalf("handler saw %d, sink committed %d; want 1, 0", seenH.Load(), commits.Load())
			}
			if err := log.sync(e.src); err != nil {
				t.Fatal(err)
			}
			if ks := log.of(1); !slices.Equal(ks, []string{"ack"}) {
				t.Errorf("v0 (dropped by the budget's handler) settled %v, want [ack]", ks)
			}
			ks, d := log.of(2), log.nakDelays(2)
			switch {
			case permanent && !slices.Equal(ks, []string{"term"}):
				t.Errorf("v1 (over budget, permanent) settled %v, want [term]", ks)
			case !permanent && (!slices.Equal(ks, []string{"nak"}) || len(d) != 1 || d[0] != base):
				t.Errorf("v1 (over budget, retryable) settled %v with delays %v, want [nak] after %v", ks, d, base)
			}
			for seq := uint64(3); seq <= 6; seq++ {
				if ks, d := log.of(seq), log.nakDelays(seq); !slices.Equal(ks, []string{"nak"}) || d[0] != 0 {
					t.Errorf("seq %d (held when the run ended) settled %v with delays %v, want one immediate nak", seq, ks, d)
				}
			}
			wantDLQ := uint64(0)
			if permanent {
				wantDLQ = 1
			}
			if n := e.streamMsgs(t, "DLQ"); n != wantDLQ {
				t.Errorf("DLQ holds %d, want %d", n, wantDLQ)
			}
		})
	}
}

// KeepAlive: "sends an in-progress acknowledgement every d for each message
// still on its way through the pipeline". A message waiting in a stage's
// Retry backoff is on its way; so is one whose failure a Handle handler is
// looking at. The test waits (ordered by the acknowledgements seen on the
// wire) until in-progress acks for the message arrived while it waits there;
// a hang is the failure. Then the run is cancelled (Retry) or the handler
// accepts (Handle): Nak at stop, or Ack.
func TestReview75KeepAliveWhileRetryingOrHandled(t *testing.T) {
	for _, where := range []string{"retry-wait", "handle"} {
		t.Run(where, func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{})
			log := r63WatchAcks(t, e.url)
			e.pub(t, "x")
			ctx, cancel := r75HangCtx()
			defer cancel()
			release := newR75Gate()
			var opts []stage.Option
			var tries atomic.Int64
			opts = append(opts, stage.Workers(1))
			if where == "retry-wait" {
				opts = append(opts, stage.Retry(2, time.Hour))
			} else {
				opts = append(opts, stage.OnError(stage.Handle(func(hctx context.Context, _ *stage.Error) error {
					select {
					case <-release.c():
						return nil
					case <-hctx.Done():
						return hctx.Err()
					}
				})))
			}
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			work := stage.Map(stage.Until(natsjs.Source(e.srcCons, r14Str, natsjs.KeepAlive(20*time.Millisecond)), stop),
				func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
					tries.Add(1)
					return m, errR75
				}, opts...)
			done := make(chan error, 1)
			go func() {
				done <- sink.ForEach(ctx, work, func(context.Context, natsjs.Msg[string]) error { return nil })
			}()
			wpis := func() int {
				_ = log.sync(e.src)
				log.mu.Lock()
				defer log.mu.Unlock()
				n := 0
				for _, k := range log.by[1] {
					if k == "wpi" {
						n++
					}
				}
				return n
			}
			r63WaitFor(t, "a try", func() bool { return tries.Load() >= 1 })
			start := wpis()
			r63WaitFor(t, "in-progress acks while x waits in the "+where, func() bool {
				select {
				case err := <-done:
					t.Fatalf("the run ended: %v", err)
				default:
				}
				return wpis() >= start+3
			})
			if n := tries.Load(); n != 1 {
				t.Fatalf("%d tries; the wait is still on", n)
			}
			if where == "retry-wait" {
				cancel()
			} else {
				drain() // the run ends once x is settled
				release.open()
			}
			err := r75Recv(t, "the run's end", done)
			if err := log.sync(e.src); err != nil {
				t.Fatal(err)
			}
			ks := log.of(1)
			if where == "retry-wait" {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("run: %v, want context.Canceled", err)
				}
				if d := log.nakDelays(1); !slices.Equal(ks, []string{"nak"}) || d[0] != 0 {
					t.Errorf("x (cut short in its retry wait) settled %v (delays %v), want one immediate nak", ks, d)
				}
			} else {
				if err != nil {
					t.Errorf("run: %v", err)
				}
				if !slices.Equal(ks, []string{"ack"}) {
					t.Errorf("x (accepted by the handler) settled %v, want [ack]", ks)
				}
			}
		})
	}
}
