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

// DeadLetter: "a publish that panics is a failed one (the message is
// nak'ed as above, and the run's other messages still go back to the
// server when it stops) and fails the run with a *stage.SourceError
// wrapping the *stage.PanicError". Review 31 holds the first half at a
// cancelled run's stop, whose error is the cancellation; this holds the
// second at a drained run's stop (stage.Until), which ends with no error
// of its own. Twenty messages on their last allowed delivery (MaxDeliver
// 1) reach the run's client; the sink drains the run at the first, so the
// rest, held in the read-ahead, go to the dead-letter subject at the stop,
// where the first publish panics: the run must fail with that panic, and
// the other messages must still be dead-lettered.
func TestReview90DeadLetterPanicAtADrainedStopFailsTheRun(t *testing.T) {
	e := r63New(t, jetstream.ConsumerConfig{MaxDeliver: 1})
	const n = 20
	e.pub(t, r63Vals(0, n)...)
	pj := &r31PanicJS{JetStream: e.js, panics: 1}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := r75HangCtx()
	defer cancel()
	taken := 0
	err := sink.ForEach(ctx, stage.Until(natsjs.Source(e.srcCons, r14Str, natsjs.DeadLetter(pj, "dlq")), stop), func(ctx context.Context, _ natsjs.Msg[string]) error {
		taken++
		if err := e.quiet(ctx); err != nil { // the rest are in the run's client
			return err
		}
		drain()
		return nil
	})
	var se *stage.SourceError
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) {
		t.Fatalf("run: %v (%T); want a *stage.SourceError wrapping the dead-letter publish's *stage.PanicError", err, err)
	}
	// Every message the sink did not take went back; the first dead
	// letter's publish panicked (its message was nak'ed, and on its last
	// delivery stays in the stream), the others' were stored.
	want := uint64(n - taken - 1)
	r63WaitFor(t, "the other messages' dead letters", func() bool {
		c, err := e.count("DLQ")
		return err == nil && c == want
	})
}
