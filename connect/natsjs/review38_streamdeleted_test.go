package natsjs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview38StreamDeletedWhileIdleEndsTheRun: Source: "An error of the
// consumer ends the run with a *stage.SourceError." The consumer's stream
// is deleted (and the consumer with it) while the run waits in its pull
// request: the run must end with a *stage.SourceError, not wait for ever.
func TestReview38StreamDeletedWhileIdleEndsTheRun(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := newR38Once()
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(ctx, natsjs.Source(w.cons, r14Str), func(context.Context, natsjs.Msg[string]) error {
			got.fire()
			return nil
		})
	}()
	r38Recv(t, "the message", got.ch)
	r38WaitFor(t, "the run's pull request to wait at the server", func() bool { return w.info(t).NumWaiting > 0 })
	if err := w.js.DeleteStream(context.Background(), "WORK"); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-errc:
	case <-after(r38Watchdog):
		cancel()
		t.Fatalf("hang: the run did not end after its stream was deleted (after cancel: %v)", <-errc)
	}
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("run: %v, want a *stage.SourceError", err)
	}
	t.Logf("run: %v", err)
}
