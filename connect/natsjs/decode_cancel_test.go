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

// A run cancelled while decode rejects a message takes no more messages:
// the ones its subscription holds are not decoded (nor terminated), and go
// back to the server at the stop, so that the next run gets each of them.
func TestDecodeRejectionAfterCancelTakesNoMore(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "a", "b", "c", "d", "e")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	decode := func(b []byte) (string, error) {
		calls.Add(1)
		cancel() // the run ends while its first message is rejected
		return "", errors.New("undecodable")
	}
	err := sink.ForEach(ctx, natsjs.Source(w.cons, decode), func(context.Context, natsjs.Msg[string]) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want context.Canceled", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("decode called %d times, want 1: messages were taken after the cancellation", n)
	}
	// The four others come back at once (AckWait is far).
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute) // a hang bound
	defer cancel2()
	seen := map[string]bool{}
	err = sink.ForEach(ctx2, natsjs.Source(w.cons, r14Str), func(_ context.Context, m natsjs.Msg[string]) error {
		seen[m.Value] = true
		if len(seen) == 4 {
			return stage.ErrStop
		}
		return nil
	})
	if err != nil || len(seen) != 4 || seen["a"] {
		t.Fatalf("the next run got %v (%v); want b, c, d and e, not decoded before", seen, err)
	}
}
