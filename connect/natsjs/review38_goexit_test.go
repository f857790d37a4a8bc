package natsjs_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r38StopWithDeadConnection holds n messages on their last delivery
// (MaxDeliver 1) in a Map of n workers, closes the run's connection and
// cancels the run, so that the stop gives each back through the dead-letter
// JetStream dlq (the test's own connection, which stays up): each dead
// letter is stored, but its Term cannot be sent (the run's connection is
// gone). It returns the errors OnAckError heard and the sink's result
// (errR31Goexited if a Goexit ended its goroutine).
func r38StopWithDeadConnection(t *testing.T, n int, dlq func(w *r14) jetstream.JetStream) (*r14, []error, error) {
	w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 1})
	w.pubN(t, n)
	rnc, rjs, tp := tapConnect(t, w.url)
	cons, err := rjs.Consumer(context.Background(), "WORK", "c")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var heard []error
	src := natsjs.Source(cons, r14Str, natsjs.DeadLetter(dlq(w), "dlq"), natsjs.OnAckError(func(err error) {
		mu.Lock()
		heard = append(heard, err)
		mu.Unlock()
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := make(chan struct{}, n)
	work := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
		in <- struct{}{}
		<-ctx.Done()
		return "", ctx.Err()
	}, stage.Workers(n))
	errc := r31Sink(func() error { return sink.ForEach(ctx, work, func(context.Context, string) error { return nil }) })
	for range n {
		r38Recv(t, "every message in a worker", in)
	}
	waitReceived(t, tp, func() *jetstream.ConsumerInfo { return w.info(t) })
	rnc.Close()
	cancel()
	err = r38Recv(t, "the sink's end", errc)
	mu.Lock()
	defer mu.Unlock()
	return w, append([]error(nil), heard...), err
}

// TestReview38GoexitInStopDeadLetterSilencesOnAckError
//
// OnAckError: "OnAckError is called when an acknowledgement (an Ack, a Nak,
// a Term) cannot be sent (the connection is gone): the message will be
// redelivered." DeadLetter: a publish that calls runtime.Goexit "is a failed
// one too, and ends its goroutine as any user code's Goexit does".
//
// Three messages on their last delivery are given back at the run's stop,
// after the run's connection closed: each goes to the dead-letter subject,
// and each Term fails. The dead-letter JetStream calls runtime.Goexit on its
// first publish. giveBacks.all goes on with the other two messages in a
// deferred call (their dead letters are stored; their Terms fail), but the
// Goexit then unwinds close() past the loop that calls OnAckError: it hears
// of none of the failed acknowledgements (the control,
// TestReview38StopDeadLettersOnADeadConnectionReportAckErrors, hears 3).
// The Goexit is the dead-letter publish's, not OnAckError's: nothing of the
// user's keeps OnAckError from being called. Failure rate: 10/10.
func TestReview38GoexitInStopDeadLetterSilencesOnAckError(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var gj *r31GoexitJS
		w, heard, err := r38StopWithDeadConnection(t, 3, func(w *r14) jetstream.JetStream {
			gj = &r31GoexitJS{JetStream: w.js, exits: 1}
			return gj
		})
		if !errors.Is(err, errR31Goexited) {
			t.Fatalf("sink: %v, want its goroutine ended by the Goexit in the stop", err)
		}
		// The other two were given back: their dead letters are stored.
		r14WaitFor(t, "the other two dead letters", func() bool { return w.streamMsgs(t, "DLQ") == 2 })
		if len(heard) != 2 {
			t.Fatalf("OnAckError heard %d errors (%v), want 2: the Terms of the two messages given back after the Goexit could not be sent "+
				"(the run's connection was closed), and OnAckError is called when an acknowledgement cannot be sent", len(heard), heard)
		}
	})
}

// TestReview38StopDeadLettersOnADeadConnectionReportAckErrors: the control
// of the test above, without the Goexit: the three dead letters are
// stored, and OnAckError hears of the three Terms that could not be sent.
// Passes; it guards OnAckError's calls for the stop's give-backs.
func TestReview38StopDeadLettersOnADeadConnectionReportAckErrors(t *testing.T) {
	w, heard, err := r38StopWithDeadConnection(t, 3, func(w *r14) jetstream.JetStream { return w.js })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("sink: %v, want context.Canceled", err)
	}
	r14WaitFor(t, "the three dead letters", func() bool { return w.streamMsgs(t, "DLQ") == 3 })
	if len(heard) != 3 {
		t.Fatalf("OnAckError heard %d errors (%v), want 3", len(heard), heard)
	}
}

// TestReview38TwoGoexitsInStopDeadLettersGiveTheRestBack: the dead-letter
// publish calls runtime.Goexit for the first two of three messages given
// back at stop; the second Goexit happens in the deferred call that goes on
// after the first. The third message must still be given back (its dead
// letter stored): giveBacks: "a dead letter's publish ... that panics, or
// calls runtime.Goexit, at one message keeps none of the others from going
// back". In a child process: a nested Goexit could crash it. Passes.
func TestReview38TwoGoexitsInStopDeadLettersGiveTheRestBack(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 1})
		const n = 3
		w.pubN(t, n)
		_, rjs, tp := tapConnect(t, w.url)
		cons, err := rjs.Consumer(context.Background(), "WORK", "c")
		if err != nil {
			t.Fatal(err)
		}
		gj := &r31GoexitJS{JetStream: w.js, exits: 2}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		in := make(chan struct{}, n)
		work := stage.Map(natsjs.Source(cons, r14Str, natsjs.DeadLetter(gj, "dlq")), func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
			in <- struct{}{}
			<-ctx.Done()
			return "", ctx.Err()
		}, stage.Workers(n))
		errc := r31Sink(func() error { return sink.ForEach(ctx, work, func(context.Context, string) error { return nil }) })
		for range n {
			r38Recv(t, "every message in a worker", in)
		}
		waitReceived(t, tp, func() *jetstream.ConsumerInfo { return w.info(t) })
		cancel()
		if err := r38Recv(t, "the sink's end", errc); !errors.Is(err, errR31Goexited) {
			t.Fatalf("sink: %v, want its goroutine ended by a Goexit in the stop", err)
		}
		r14WaitFor(t, "the third message's dead letter", func() bool { return w.streamMsgs(t, "DLQ") == 1 })
		// The two whose publish did not return were nak'ed: on their last
		// delivery they stay in the stream, not pending.
		r14WaitFor(t, "no message pending", func() bool { return w.info(t).NumAckPending == 0 })
		if got := gj.calls.Load(); got != n {
			t.Fatalf("%d dead-letter publishes, want %d", got, n)
		}
	})
}
