package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r39DLQHook panics when the source's client buffers a dead letter: user
// code of kopts (kgo.WithHooks) that runs in the dead letter's Produce,
// on the goroutine that settles the record.
type r39DLQHook struct{}

func (r39DLQHook) OnProduceRecordBuffered(r *kgo.Record) {
	if r.Topic == "dlq" {
		panic("r39: dead-letter hook panicked")
	}
}

// A panic in user code that the dead letter's produce runs (a hook of
// kopts) must not crash the process or hang the run: the run fails with a
// *stage.SourceError wrapping a *stage.PanicError (stage.Ack: "A panic in
// Done ends the run with a *SourceError"; for the record decode rejected,
// the dead letter is written by next, whose panic is a *stage.SourceError
// too), and the record is not committed (DeadLetter: "The record is
// settled once the broker confirmed the dead letter").
func TestReview39PanicInDeadLetterHook(t *testing.T) {
	for _, mode := range []string{"ack", "decode"} {
		t.Run(mode, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) { r39DLQHookRun(t, mode) })
		})
	}
}

func r39DLQHookRun(t *testing.T, mode string) {
	_, addrs := newCluster(t, 1, "jobs", "dlq")
	produceTo(t, addrs, "jobs", 0, 0, 5)
	decode := func(r *kgo.Record) (int, error) {
		if mode == "decode" && r.Offset == 2 {
			return 0, errors.New("undecodable")
		}
		return decodeInt(r)
	}
	kopts := append(memberOpts(addrs, "g", "jobs"), kgo.WithHooks(r39DLQHook{}))
	src := kafka.Source(kopts, decode, kafka.Attempts(1), kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Hour))
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (int, error) {
		if mode == "ack" && r.Offset == 2 {
			return 0, errors.New("poison")
		}
		return r.Value, nil
	}, stage.OnError(stage.Forward), stage.Workers(2))
	err := waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(context.Background(), work, func(context.Context, int) error { return nil })
	}))
	t.Logf("run: %v", err)
	var se *stage.SourceError
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) {
		t.Errorf("run returned %v, want a *stage.SourceError wrapping the hook's *stage.PanicError", err)
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > 2 {
		t.Errorf("committed %d, past record 2 whose dead letter was never written", got)
	}
}
