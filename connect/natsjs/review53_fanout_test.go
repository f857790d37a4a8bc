package natsjs_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/stage"
)

type r53Part struct {
	v     string
	part  string
	deliv uint64
}

// TestReview53FanOutPartialFailure: a message fans out (FlatMap) to two
// outputs; one is committed, the other fails in a Forward stage, so its
// forwarded *stage.Error reaches the sink.
//
// Doc sentences checked: package doc "failed with a retryable error (a
// forwarded *stage.Error ...): Nak with a delay" (Backoff(0,0): at once),
// stage.Ack "An item that fans out (FlatMap, Tee) is done when all its outputs
// are" and "Done(err) as soon as its way failed ... a forwarded *Error it led
// to reached the sink". So message "3" must come again (Deliveries 2) in the
// same run, no other message may come twice (all Acked, AckWait is an hour),
// and once every message is committed the work-queue stream is empty.
func TestReview53FanOutPartialFailure(t *testing.T) {
	const n = 12
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pubN(t, n)
	stopCtx, drain := context.WithCancel(context.Background())
	defer drain()
	src := stage.Until(natsjs.Source(w.cons, r14Str, natsjs.Backoff(0, 0)), stopCtx)
	fan := stage.FlatMap(src, func(ctx context.Context, m natsjs.Msg[string]) ([]r53Part, error) {
		return []r53Part{{m.Value, "a", m.Deliveries}, {m.Value, "b", m.Deliveries}}, nil
	})
	failing := stage.Map(fan, func(ctx context.Context, p r53Part) (r53Part, error) {
		if p.v == "3" && p.part == "b" && p.deliv == 1 {
			return p, errR53Boom
		}
		return p, nil
	}, stage.OnError(stage.Forward))
	done := map[string]map[string]bool{} // v -> parts committed (any delivery)
	deliveries := map[string]map[uint64]bool{}
	forwarded := 0
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := stage.Run(ctx, failing, func(ctx context.Context, p r53Part, err error) error {
		if err != nil {
			forwarded++
			return nil
		}
		if done[p.v] == nil {
			done[p.v] = map[string]bool{}
			deliveries[p.v] = map[uint64]bool{}
		}
		done[p.v][p.part] = true
		deliveries[p.v][p.deliv] = true
		all := len(done) == n
		for _, d := range done {
			all = all && len(d) == 2
		}
		if all && deliveries["3"][2] {
			drain()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("run: %v (forwarded %d, done %v)", err, forwarded, done)
	}
	if forwarded != 1 {
		t.Errorf("forwarded errors at the sink: %d, want 1", forwarded)
	}
	for v, ds := range deliveries {
		if v != "3" && (len(ds) != 1 || !ds[1]) {
			t.Errorf("message %s: deliveries %v, want only the first", v, ds)
		}
	}
	if !deliveries["3"][2] {
		t.Errorf("message 3 was not redelivered after its forwarded failure: %v", deliveries["3"])
	}
	// Every message was committed: the work queue must empty (the acks are
	// asynchronous; the wait is a watchdog only).
	r53WaitWork(t, w, 0, "every one was committed")
}
