package natsjs_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Backoff: "Backoff sets the redelivery delay of a nak'ed message:
// base·2^(n-1) after its n-th delivery, capped at max. The default is 1 s,
// capped at 1 min."
// Package doc: "failed with a retryable error (... a failed commit ...): Nak
// with a delay that grows with the delivery count".
//
// The attack: a delivery count high enough that base·2^(n-1) does not fit in
// a time.Duration. The nak's delay (as sent on the wire) must still be the
// cap, never a wrapped-around value (0, negative, or small).
func TestReview75BackoffCappedAtHighDeliveryCounts(t *testing.T) {
	cases := []struct {
		name string
		opts []natsjs.SourceOption
		n    int // the delivery at which the commit fails
		want time.Duration
	}{
		{"default-n35", nil, 35, time.Minute},
		{"default-n64", nil, 64, time.Minute},
		{"default-n70", nil, 70, time.Minute},
		{"1ns-n63", []natsjs.SourceOption{natsjs.Backoff(1, math.MaxInt64)}, 63, 1 << 62},
		{"1ns-n64", []natsjs.SourceOption{natsjs.Backoff(1, math.MaxInt64)}, 64, math.MaxInt64},
		{"1ns-n66", []natsjs.SourceOption{natsjs.Backoff(1, math.MaxInt64)}, 66, math.MaxInt64},
		{"huge-base-n2", []natsjs.SourceOption{natsjs.Backoff(math.MaxInt64/2+1, math.MaxInt64)}, 2, math.MaxInt64},
		{"hour-n40", []natsjs.SourceOption{natsjs.Backoff(time.Hour, 48*time.Hour)}, 40, 48 * time.Hour},
		{"3s-n3-control", []natsjs.SourceOption{natsjs.Backoff(3*time.Second, time.Hour)}, 3, 12 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{})
			log := r63WatchAcks(t, e.url)
			e.pub(t, "x")
			seq := r75Bump(t, e.cons, c.n-1)
			if c.n == 1 {
				seq = 1
			}
			ctx, cancel := r75HangCtx()
			defer cancel()
			var got uint64
			err := sink.ForEach(ctx, natsjs.Source(e.srcCons, r14Str, c.opts...), func(_ context.Context, m natsjs.Msg[string]) error {
				got = m.Deliveries
				return errR75 // a failed commit: retryable
			})
			if !errors.Is(err, errR75) {
				t.Fatalf("run: %v, want the commit's error", err)
			}
			var se *stage.Error
			if !errors.As(err, &se) {
				t.Fatalf("run: %T %v, want a *stage.Error", err, err)
			}
			if got != uint64(c.n) {
				t.Fatalf("the run saw delivery %d, want %d", got, c.n)
			}
			if err := log.sync(e.src); err != nil {
				t.Fatal(err)
			}
			ks := log.of(seq)
			d := log.nakDelays(seq)
			if len(ks) != c.n || ks[len(ks)-1] != "nak" || len(d) != c.n {
				t.Fatalf("settlements of seq %d: %v (delays %v), want %d naks", seq, ks, d, c.n)
			}
			if last := d[len(d)-1]; last != c.want {
				t.Fatalf("the nak after delivery %d asked for a delay of %v (%d ns), want %v (%d ns)", c.n, last, int64(last), c.want, int64(c.want))
			}
		})
	}
}
