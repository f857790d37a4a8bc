package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview53LastDeliveryCancelled: MaxDeliver 1 (every delivery is the last)
// with a dead-letter subject; the run is cancelled from the sink while
// messages are in the read-ahead and in flight in a worker stage.
//
// Doc sentences checked: "A message on its last allowed delivery (MaxDeliver)
// is not delivered again after a Nak, so it goes to the dead-letter subject
// instead (Term), if one is set"; DeadLetter: "a run that ends, even
// cancelled, returns only once the dead letters of its messages are stored
// ... (a message on its last delivery that a cancelled run leaves is
// dead-lettered too)"; Source: a message "the server was still sending as the
// subscription stopped ... stays in the stream". So every message is exactly
// one of: committed (acked, gone from the work queue), dead-lettered (termed,
// gone), or never delivered (still in WORK) — none lost, none twice; and
// the dead letters are all stored when the run returns.
func TestReview53LastDeliveryCancelled(t *testing.T) {
	const n, k = 30, 5
	w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 1})
	w.pubN(t, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wd, cancelWd := context.WithTimeout(ctx, 60*time.Second)
	defer cancelWd()
	src := natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(w.js, "dlq"), natsjs.ReadAhead(8))
	mapped := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		return m, nil
	}, stage.Workers(3))
	committed := map[string]bool{}
	calls := 0
	err := sink.ForEach(wd, mapped, func(ctx context.Context, m natsjs.Msg[string]) error {
		calls++
		if calls == k {
			cancel()
			return ctx.Err()
		}
		committed[m.Value] = true
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: got %v, want context.Canceled", err)
	}
	// The dead letters must be stored by the time the run returned.
	dls := w.dlq(t)
	dead := map[string]bool{}
	for _, dl := range dls {
		v := string(dl.Data)
		if dead[v] {
			t.Errorf("message %s dead-lettered twice", v)
		}
		dead[v] = true
		if committed[v] {
			t.Errorf("message %s both committed and dead-lettered", v)
		}
		if dl.Header.Get("Sluice-Deliveries") != "1" || dl.Header.Get("Sluice-Subject") != "w.x" {
			t.Errorf("dead letter %s headers %v", v, dl.Header)
		}
	}
	if len(dead) == 0 {
		t.Errorf("no dead letters after a cancelled run that held messages on their last delivery (committed %d)", len(committed))
	}
	// The acks and terms are asynchronous: wait (watchdog only) for the work
	// queue to hold exactly the rest.
	want := uint64(n - len(committed) - len(dead))
	r53WaitWork(t, w, want, fmt.Sprintf("n %d - committed %d - dead-lettered %d", n, len(committed), len(dead)))
	// Those left were never delivered: a second run may not get them (MaxDeliver
	// 1), but it must not see a committed or dead-lettered one either; only
	// check the counts above.
}
