package natsjs_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/stage"
)

// TestReview53DroppedAndBatched: messages dropped by a Filter, failures
// accepted by a Handle policy, and the rest committed in batches, with the
// last partial batch flushed by a drain.
//
// Doc sentences checked: package doc "committed by the sink (or ... dropped on
// purpose by a Filter or a Handle policy): Ack"; stage.Ack "an item in a Batch
// is done when its batch is"; stage.Until "Batch flushes its partial batch,
// and the sink returns nil"; Source "A drained run ... settles what it took".
// So the run returns nil, no message is delivered twice (AckWait is an hour:
// only a Nak would bring one back), and the work queue empties.
func TestReview53DroppedAndBatched(t *testing.T) {
	const n = 23 // not a multiple of the batch size
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pubN(t, n)
	stopCtx, drain := context.WithCancel(context.Background())
	defer drain()
	var entered atomic.Int64
	var mu sync.Mutex
	deliveries := map[string]int{}
	src := stage.Until(natsjs.Source(w.cons, r14Str, natsjs.Backoff(0, 0)), stopCtx)
	kept := stage.Filter(src, func(ctx context.Context, m natsjs.Msg[string]) (bool, error) {
		mu.Lock()
		deliveries[m.Value]++
		mu.Unlock()
		if entered.Add(1) == n {
			drain()
		}
		i, _ := strconv.Atoi(m.Value)
		return i%3 != 0, nil
	})
	handled := stage.Map(kept, func(ctx context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		if i, _ := strconv.Atoi(m.Value); i%5 == 0 {
			return m, errR53Boom
		}
		return m, nil
	}, stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error { return nil })))
	batches := stage.Batch(handled, 4, 0)
	sunk := 0
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := stage.Run(ctx, batches, func(ctx context.Context, b []natsjs.Msg[string], err error) error {
		if err != nil {
			t.Errorf("forwarded error %v", err)
			return nil
		}
		sunk += len(b)
		return nil
	})
	if err != nil {
		t.Fatalf("drained run: got %v, want nil", err)
	}
	wantSunk := 0
	for i := range n {
		if i%3 != 0 && i%5 != 0 {
			wantSunk++
		}
	}
	if sunk != wantSunk {
		t.Errorf("sink got %d messages, want %d", sunk, wantSunk)
	}
	for v, d := range deliveries {
		if d != 1 {
			t.Errorf("message %s delivered %d times", v, d)
		}
	}
	r53WaitWork(t, w, 0, "every one was committed or dropped on purpose")
}
