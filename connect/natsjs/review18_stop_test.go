package natsjs_test

// Review 18: the wire behind a break out of sink.All. stage.Ack: "the item
// sink.First returns, or the one before a break out of sink.All, counts" as
// committed, and the run's stop naks every message it held but did not
// settle. If the yielded item were settled after the stop (or the stop
// took it for unsettled), it would get a Nak and an Ack: delivered again at
// once to another replica, and acknowledged under it. The existing test
// (TestReview14BreakOutOfAllCommitsWhatWasYielded) only sees whether the
// yielded messages come back; this one holds every settlement on the wire:
// each yielded message exactly one Ack, every other one no Ack and at most
// one immediate Nak. A regression test; it passes.

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
)

func TestReview18BreakOutOfAllSettlesOnceOnTheWire(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	l := r13WatchAcks(t, w.url, "WORK")
	w.pubN(t, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang bound
	defer cancel()
	yielded := map[uint64]bool{}
	for m, err := range sink.All(ctx, natsjs.Source(w.cons, r14Str)) {
		if err != nil {
			t.Fatal(err)
		}
		yielded[m.Sequence] = true
		if len(yielded) == 2 {
			break
		}
	}
	l.sync(t, w.nc)
	by := l.bySeq()
	for seq := range yielded {
		if acks := by[seq]; len(acks) != 1 || acks[0].kind != "ack" {
			t.Errorf("message %d, yielded before the break: settlements %+v, want one ack", seq, acks)
		}
	}
	for seq, acks := range by {
		if yielded[seq] {
			continue
		}
		if len(acks) > 1 || acks[0].kind != "nak" || acks[0].delay != 0 {
			t.Errorf("message %d, held by the run: settlements %+v, want one immediate nak", seq, acks)
		}
	}
}
