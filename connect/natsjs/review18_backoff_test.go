package natsjs_test

// Review 18: Backoff at its limit. Backoff(base, max) accepts any max >=
// base; nakDelay caps base·2^(n-1) at max "without overflow at any n". A
// delay of math.MaxInt64 ns (292 years) puts the server's redelivery time
// past 2262, where UnixNano wraps; the server's own arithmetic wraps back
// (now - timestamp), so the message waits as asked. A regression test for
// the promise "Backoff sets the redelivery delay of a nak'ed message:
// base·2^(n-1) after its n-th delivery, capped at max" at its limit:
// the largest delay is never the shortest. (It passes.)

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
)

// r18FailOnDelivery brings x to its n-th delivery (n-1 plain Naks by a
// fetcher), runs a source with opts whose commit of x fails, and reports
// whether the server delivers x again within 10 s.
func r18FailOnDelivery(t *testing.T, n int, opts ...natsjs.SourceOption) bool {
	t.Helper()
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "x")
	for i := 1; i < n; i++ {
		batch, err := w.cons.Fetch(1, jetstream.FetchMaxWait(30*time.Second)) // a watchdog: a nak'ed message comes at once
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if err := m.Nak(); err != nil {
				t.Fatal(err)
			}
		}
		if got != 1 {
			t.Fatalf("delivery %d: fetched %d messages, want x (err %v)", i, got, batch.Error())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang bound
	defer cancel()
	var dlv uint64
	err := sink.ForEach(ctx, natsjs.Source(w.cons, r14Str, opts...), func(_ context.Context, m natsjs.Msg[string]) error {
		dlv = m.Deliveries
		return errors.New("r18: commit failed") // retryable: NakWithDelay(Backoff)
	})
	if err == nil || dlv != uint64(n) {
		t.Fatalf("run: %v, x on delivery %d; want the commit's failure on delivery %d", err, dlv, n)
	}
	if err := w.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	batch, err := w.cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	back := false
	for m := range batch.Messages() {
		back = true
		meta, _ := m.Metadata()
		t.Logf("x delivered again at once (delivery %d)", meta.NumDelivered)
	}
	return back
}

// TestReview18MaxBackoffIsNotTheShortest: Backoff(MaxInt64, MaxInt64), x
// fails on its first delivery: it does not come back. Passes.
func TestReview18MaxBackoffIsNotTheShortest(t *testing.T) {
	if r18FailOnDelivery(t, 1, natsjs.Backoff(math.MaxInt64, math.MaxInt64)) {
		t.Fatalf("x, nak'ed with a delay of %v, came back at once", time.Duration(math.MaxInt64))
	}
}
