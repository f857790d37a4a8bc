package natsjs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
)

// DeadLetter: "A publish waits for the server's answer for up to 5 s,
// whatever the run's context: a run that ends, even cancelled, returns
// only once the dead letters of its messages are stored or have failed",
// and "If the publish fails, the message is nak'ed instead". The dead
// letter's publish here (a wrapper of the user's) never answers: it waits
// for its context alone. The run's context is cancelled while it waits;
// the publish must still not see its context end by that, but by its own
// deadline (context.DeadlineExceeded, not context.Canceled), after which
// it fails, the run returns, the dead-letter stream holds nothing and the
// message comes again. Without the bound the run would wait for ever (the
// watchdog turns that into a failure). The wait itself (5 s) is not
// measured.
func TestReview90DeadLetterPublishWaitIsBounded(t *testing.T) {
	js, cons := r78Poison(t)
	abort := make(chan struct{}) // frees a publish that would wait for ever, once the test has failed
	t.Cleanup(func() { close(abort) })
	entered := make(chan struct{})
	var once sync.Once
	ended := make(chan error, 1) // why the publish's context ended
	dlq := &r75JS{JetStream: js, hook: func(ctx context.Context, _ *nats.Msg, _ func(context.Context, *nats.Msg) (*jetstream.PubAck, error)) (*jetstream.PubAck, error) {
		once.Do(func() { close(entered) })
		select {
		case <-ctx.Done():
			ended <- ctx.Err()
			return nil, ctx.Err()
		case <-abort:
			return nil, errR90
		}
	}}
	rctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		src := natsjs.Source(cons, r14Str, natsjs.DeadLetter(dlq, "dlq"), natsjs.Backoff(time.Millisecond, time.Millisecond))
		done <- sink.ForEach(rctx, src, func(context.Context, natsjs.Msg[string]) error {
			return natsjs.Permanent(errR90)
		})
	}()
	r75Recv(t, "the dead letter's publish", entered)
	cancel() // the run's context ends while the publish waits
	err := r75Recv(t, "the run's end (a dead letter's publish that never answers must give up)", done)
	if !errors.Is(err, natsjs.ErrPermanent) {
		t.Fatalf("run: %v; want the permanent failure", err)
	}
	if why := r75Recv(t, "the publish's context to end", ended); !errors.Is(why, context.DeadlineExceeded) {
		t.Fatalf("the dead letter's publish ended with %v; want context.DeadlineExceeded (its own bound, not the run's context)", why)
	}
	if n := r79DLQCount(t, js); n != 0 {
		t.Fatalf("DLQ holds %d dead letters; want none", n)
	}
	// Nak'ed, not terminated: the consumer delivers it again.
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(r75Watchdog))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 1 || got[0] != "poison" {
		t.Fatalf("redelivered %q; want the message again", got)
	}
}
