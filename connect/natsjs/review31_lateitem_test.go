package natsjs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
)

// A message whose next returned after the run was cancelled (decode,
// called inside next, holds it until the cancellation) is not taken: its
// Ack is never told, and the stop must give it back at once: a plain Nak
// (Backoff of an hour: a delayed Nak, or nothing, would keep it away for an
// hour), never an Ack or a Term.
func TestReview31MessageReturnedAfterCancelIsGivenBack(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "x")
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	decode := func(b []byte) (string, error) {
		once.Do(func() { close(entered) })
		<-release
		return string(b), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []string
	errc := make(chan error, 1)
	src := natsjs.Source(w.cons, decode, natsjs.Backoff(time.Hour, time.Hour))
	go func() {
		errc <- sink.ForEach(ctx, src, func(_ context.Context, m natsjs.Msg[string]) error {
			mu.Lock()
			got = append(got, m.Value)
			mu.Unlock()
			return nil
		})
	}()
	select {
	case <-entered:
	case err := <-errc:
		t.Fatalf("the run ended (%v) before decoding x", err)
	case <-time.After(time.Minute):
		t.Fatal("hang: x was never decoded")
	}
	cancel()
	close(release)
	t.Logf("run: %v", <-errc)
	mu.Lock()
	if len(got) > 0 {
		t.Errorf("the sink got %v, returned by next after the cancellation", got)
	}
	mu.Unlock()
	seen := r14Collect(t, w.cons, func(s *r14Seen) bool { return s.has("x") })
	if d := seen.snapshot()["x"]; len(d) == 0 || d[0] != 2 {
		t.Errorf("x came back with deliveries %v, want 2", d)
	}
}
