package natsjs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestOnAckErrorPanicAtStopGivesEveryMessageBack: when the run stops, every
// message it holds goes back to the server (the package doc's table: "Nak
// when the run stops: another replica gets it at once"). A panic in the
// OnAckError function for one of them (its dead letter could not be
// published) must not keep the others from going back: they would wait out
// AckWait (an hour here).
//
// y fails its first delivery and comes back (its second, the last allowed)
// into the read-ahead while x, received before y came back, holds the only
// worker; the run is then cancelled. At stop, y's dead letter fails
// ("nowhere" is no stream's) and OnAckError panics; x must still be nak'ed,
// so that a fetch gets it at once. (Before, the panic left the stop's loop:
// x waited out AckWait. The server's NumAckPending cannot tell: it counts a
// nak'ed message until it is delivered again.)
func TestOnAckErrorPanicAtStopGivesEveryMessageBack(t *testing.T) {
	_, js, tp := tapConnect(t, startServer(t))
	const name = "ACKERR"
	cons := rvSetup(t, js, name, time.Hour, 2)
	rvPub(t, js, name+".job", "y")
	rvPub(t, js, name+".job", "x") // taken after y, before y comes back
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	entered := make(chan struct{}, 1)
	var calls int
	src := natsjs.Source(cons, decodeString, natsjs.Backoff(0, 0), natsjs.DeadLetter(js, "nowhere"),
		natsjs.OnAckError(func(error) {
			calls++
			panic("OnAckError exploded")
		}))
	work := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
		if m.Value == "y" {
			return "", errRetry // nak'ed, delivered again: its last delivery
		}
		entered <- struct{}{}
		<-ctx.Done() // X holds the only worker until the run is cancelled
		return "", ctx.Err()
	}, stage.Workers(1), stage.OnError(stage.Forward))
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(ctx, work, func(context.Context, string) error { return nil })
	}()
	rvRecv(t, "x in the worker", entered)
	waitFor(t, "y's last delivery", func() bool { return rvInfo(t, cons).Delivered.Consumer >= 3 })
	waitReceived(t, tp, func() *jetstream.ConsumerInfo { return rvInfo(t, cons) })
	cancel()
	err := rvRecv(t, "the cancelled run", errc)
	// The cancellation cut the run short before the panic: the run reports
	// what cut it short (see the README's guarantees).
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run error %v, want the cancellation", err)
	}
	if calls != 1 {
		t.Fatalf("OnAckError called %d times, want once (y's failed dead letter)", calls)
	}
	// x was nak'ed, so a fetch gets it at once (its AckWait is an hour); y,
	// whose dead letter failed, stays with the server until AckWait.
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(30*time.Second)) // a watchdog: a nak'ed message comes at once
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
	}
	if len(got) != 1 || got[0] != "x" {
		t.Fatalf("fetched %v after the stop, want x, given back although OnAckError panicked for y", got)
	}
}

// TestOnAckErrorPanicFailsTheRun: a panic in the OnAckError function while
// the run goes on (a message's dead letter failed on its last delivery)
// fails the run with a *stage.SourceError wrapping the *stage.PanicError.
func TestOnAckErrorPanicFailsTheRun(t *testing.T) {
	_, js := connect(t, startServer(t))
	const name = "ACKERRRUN"
	cons := rvSetup(t, js, name, time.Hour, 2)
	rvPub(t, js, name+".job", "y")
	src := natsjs.Source(cons, decodeString, natsjs.Backoff(0, 0), natsjs.DeadLetter(js, "nowhere"),
		natsjs.OnAckError(func(error) { panic("OnAckError exploded") }))
	work := stage.Map(src, func(context.Context, natsjs.Msg[string]) (string, error) {
		return "", errRetry // every delivery fails; the last one's dead letter cannot be published
	}, stage.OnError(stage.Forward))
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(context.Background(), work, func(context.Context, string) error { return nil })
	}()
	err := rvRecv(t, "the run", errc)
	var se *stage.SourceError
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "OnAckError exploded" {
		t.Fatalf("run error %v, want a *stage.SourceError wrapping OnAckError's panic", err)
	}
}
