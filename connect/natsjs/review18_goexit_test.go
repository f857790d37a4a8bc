package natsjs_test

// Review 18: runtime.Goexit in the user's callbacks of Source. stage's
// ErrGoexit: a goroutine of the run ended by runtime.Goexit in user code
// fails the run with ErrGoexit. Source promises, for a decode that does
// not return (its panic): "its message is nak'ed with the others the run
// held". A Goexit (t.FailNow in decode) is the other way decode can fail
// to return; the message was taken from the subscription before decode ran
// and must go back at once all the same, not wait out AckWait. Run in a
// child process: a Goexit that the engine did not notice could hang it.

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview18GoexitInDecodeNaksTheMessage: decode of "boom" calls
// runtime.Goexit on a worker of the Map over the source. The run fails with
// ErrGoexit, and boom (received, never settled) is nak'ed.
func TestReview18GoexitInDecodeNaksTheMessage(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		w := r14World(t, jetstream.ConsumerConfig{})
		l := r13WatchAcks(t, w.url, "WORK")
		w.pub(t, "boom")
		decode := func(b []byte) (string, error) {
			if string(b) == "boom" {
				runtime.Goexit()
			}
			return string(b), nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang bound
		defer cancel()
		work := stage.Map(natsjs.Source(w.cons, decode), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
			return m.Value, nil
		}, stage.Workers(2))
		err := sink.ForEach(ctx, work, func(context.Context, string) error { return nil })
		if !errors.Is(err, stage.ErrGoexit) {
			t.Fatalf("run error %v, want stage.ErrGoexit", err)
		}
		l.sync(t, w.nc)
		acks := l.bySeq()[1]
		if len(acks) != 1 || acks[0].kind != "nak" || acks[0].delay != 0 {
			t.Fatalf("settlements of boom = %+v, want one immediate nak", acks)
		}
	})
}

// TestReview18GoexitInOnAckErrorAtStopGivesEveryMessageBack: OnAckError
// doc: "nothing it does (a panic, a runtime.Goexit) keeps one from going
// back" (close's comment), and ackerror_test.go covers the panic. Here
// OnAckError calls runtime.Goexit for the first failed give-back at stop (y,
// on its last delivery, whose dead letter fails: "nowhere" is no stream's
// subject); x, held in the read-ahead, must still be nak'ed.
func TestReview18GoexitInOnAckErrorAtStopGivesEveryMessageBack(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 1})
		l := r13WatchAcks(t, w.url, "WORK")
		w.pub(t, "y", "x")
		nc, js, tp := tapConnect(t, w.url) // the run's connection, its deliveries counted
		cons, err := js.Consumer(context.Background(), "WORK", "c")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		entered := make(chan struct{}, 1)
		src := natsjs.Source(cons, r14Str, natsjs.DeadLetter(js, "nowhere"),
			natsjs.OnAckError(func(error) { runtime.Goexit() }))
		work := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
			entered <- struct{}{}
			<-ctx.Done() // y holds the only worker until the run is cancelled
			return "", ctx.Err()
		}, stage.Workers(1))
		errc := make(chan error, 1)
		go func() { errc <- sink.ForEach(ctx, work, func(context.Context, string) error { return nil }) }()
		rvRecv(t, "a message in the worker", entered)
		r14WaitFor(t, "both deliveries", func() bool { return w.info(t).Delivered.Consumer == 2 })
		waitReceived(t, tp, func() *jetstream.ConsumerInfo { return w.info(t) })
		cancel()
		// The stop runs on the sink's goroutine, so OnAckError's Goexit ends
		// it and ForEach does not return (stage.ErrGoexit: "A function that
		// calls Goexit on the sink's own goroutine ends that goroutine: the
		// sink does not return"): only the messages' fate is checked.
		r14WaitFor(t, "a settlement of each message", func() bool {
			l.sync(t, nc)
			return len(l.bySeq()[1]) > 0 && len(l.bySeq()[2]) > 0
		})
		if x := l.bySeq()[2]; len(x) != 1 || x[0].kind != "nak" {
			t.Fatalf("settlements of x = %+v, want one nak", x)
		}
	})
}
