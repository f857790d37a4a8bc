package natsjs_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Outcomes: "failed with an error wrapped by Permanent ...: Term, after
// publishing it to the dead-letter subject" -- here the error is the sink's
// (a failed commit), and it fails the run.
func TestReview14PermanentFromTheSinkIsDeadLettered(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "p")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cause := errors.New("row violates a constraint")
	err := sink.ForEach(ctx, natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(w.js, "dlq")), func(context.Context, natsjs.Msg[string]) error {
		return natsjs.Permanent(cause)
	})
	if !errors.Is(err, cause) || !errors.Is(err, natsjs.ErrPermanent) {
		t.Fatalf("err = %v", err)
	}
	r14WaitFor(t, "the dead letter", func() bool { return w.streamMsgs(t, "DLQ") == 1 })
	r14WaitFor(t, "the work queue to empty (Term)", func() bool { return w.streamMsgs(t, "WORK") == 0 })
	dl := w.dlq(t)[0]
	if string(dl.Data) != "p" || dl.Header.Get("Sluice-Reason") == "" || dl.Header.Get("Sluice-Deliveries") != "1" {
		t.Fatalf("dead letter %q %v", dl.Data, dl.Header)
	}
}

// The same through a Batch: "an item in a Batch is done when its batch is",
// so a Permanent failure of the batch's commit terminates every member.
func TestReview14PermanentBatchCommitDeadLettersEveryMember(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "a", "b", "c")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := sink.ForEach(ctx, stage.Batch(natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(w.js, "dlq")), 3, 0), func(context.Context, []natsjs.Msg[string]) error {
		return natsjs.Permanent(errors.New("batch rejected"))
	})
	if !errors.Is(err, natsjs.ErrPermanent) {
		t.Fatalf("err = %v", err)
	}
	r14WaitFor(t, "three dead letters", func() bool { return w.streamMsgs(t, "DLQ") == 3 })
	r14WaitFor(t, "the work queue to empty (Term)", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// A Handle policy whose error is Permanent: stage.Ack says Done(err) for
// "its stage's policy ended the run at it (... a Handle or Budget error)",
// and the message is terminated.
func TestReview14PermanentFromAHandlePolicyIsDeadLettered(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "h")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	work := stage.Map(natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(w.js, "dlq")), func(context.Context, natsjs.Msg[string]) (string, error) {
		return "", errors.New("bad input")
	}, stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
		return natsjs.Permanent(e)
	})))
	err := sink.ForEach(ctx, work, func(context.Context, string) error { return nil })
	if !errors.Is(err, natsjs.ErrPermanent) {
		t.Fatalf("err = %v", err)
	}
	r14WaitFor(t, "the dead letter", func() bool { return w.streamMsgs(t, "DLQ") == 1 })
	r14WaitFor(t, "the work queue to empty (Term)", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// Outcomes: "dropped on purpose by a Filter or a Handle policy: Ack".
func TestReview14DroppedOnPurposeIsAcked(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "drop-filter", "drop-handle", "keep")
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var seen atomic.Int32
	s := stage.Filter(stage.Until(natsjs.Source(w.cons, r14Str), stop), func(_ context.Context, m natsjs.Msg[string]) (bool, error) {
		if seen.Add(1) == 3 {
			defer drain()
		}
		return m.Value != "drop-filter", nil
	})
	s2 := stage.Map(s, func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		if m.Value == "drop-handle" {
			return "", errors.New("nope")
		}
		return m.Value, nil
	}, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	if err := sink.ForEach(ctx, s2, func(context.Context, string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
	if w.streamMsgs(t, "DLQ") != 0 {
		t.Fatal("a dropped message was dead-lettered")
	}
}

// Outcomes: "failed on its last allowed delivery (MaxDeliver) ...: Term,
// after publishing it to the dead-letter subject"; Msg.Deliveries "1 on the
// first delivery"; DeadLetter's headers. The run goes on (Forward), and the
// sink reports the three failures.
func TestReview14DeadLetterAfterMaxDeliverCarriesItsHistory(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 3})
	w.pub(t, "ok1", "x", "ok2")
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var mu sync.Mutex
	var deliveries []uint64
	src := natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(w.js, "dlq"), natsjs.Backoff(time.Millisecond, time.Millisecond))
	work := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		if m.Value == "x" {
			mu.Lock()
			deliveries = append(deliveries, m.Deliveries)
			mu.Unlock()
			return "", errors.New("always fails")
		}
		return m.Value, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	go func() {
		r14WaitFor(t, "the dead letter", func() bool { return w.streamMsgs(t, "DLQ") == 1 })
		drain()
	}()
	err := sink.ForEach(ctx, work, func(context.Context, string) error { return nil })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 3 {
		t.Fatalf("err = %v, want 3 forwarded errors", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deliveries) != 3 || deliveries[0] != 1 || deliveries[1] != 2 || deliveries[2] != 3 {
		t.Fatalf("deliveries of the failing message: %v", deliveries)
	}
	dl := w.dlq(t)[0]
	if string(dl.Data) != "x" || dl.Header.Get("Sluice-Deliveries") != "3" || dl.Header.Get("Sluice-Stream-Seq") != "2" || dl.Header.Get("Sluice-Subject") != "w.x" || dl.Header.Get("Sluice-Reason") == "" {
		t.Fatalf("dead letter %q %v", dl.Data, dl.Header)
	}
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// gatedJS holds every publish until its gate opens; with honourCtx it gives
// up when the publish's context ends.
type gatedJS struct {
	jetstream.JetStream
	honourCtx bool
	gate      chan struct{}
	entered   chan struct{} // closed at the first publish
	once      sync.Once
	inside    atomic.Int32
}

func (g *gatedJS) hold(ctx context.Context) error {
	g.inside.Add(1)
	defer g.inside.Add(-1)
	g.once.Do(func() { close(g.entered) })
	if g.honourCtx {
		select {
		case <-g.gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	<-g.gate
	return nil
}

func (g *gatedJS) Publish(ctx context.Context, subj string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if err := g.hold(ctx); err != nil {
		return nil, err
	}
	return g.JetStream.Publish(ctx, subj, data, opts...)
}

func (g *gatedJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if err := g.hold(ctx); err != nil {
		return nil, err
	}
	return g.JetStream.PublishMsg(ctx, m, opts...)
}

func (g *gatedJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if err := g.hold(context.Background()); err != nil {
		return nil, err
	}
	return g.JetStream.PublishMsgAsync(m, opts...)
}

func (g *gatedJS) PublishAsync(subj string, data []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if err := g.hold(context.Background()); err != nil {
		return nil, err
	}
	return g.JetStream.PublishAsync(subj, data, opts...)
}

// A cancellation while a dead letter's publish is in flight, and the publish
// gives up with the context: DeadLetter: "If the publish fails, the message
// is nak'ed instead, so that it is not lost: it is delivered again".
func TestReview14CancelDuringADeadLetterPublishLosesNothing(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "p")
	g := &gatedJS{JetStream: w.js, honourCtx: true, gate: make(chan struct{}), entered: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work := stage.Map(natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(g, "dlq")), func(context.Context, natsjs.Msg[string]) (string, error) {
		return "", natsjs.Permanent(errors.New("poison"))
	}, stage.OnError(stage.Forward))
	errc := make(chan error, 1)
	go func() { errc <- sink.ForEach(ctx, work, func(context.Context, string) error { return nil }) }()
	select {
	case <-g.entered:
	case err := <-errc:
		t.Fatalf("the run ended (%v) without publishing a dead letter", err)
	}
	t0 := time.Now()
	cancel()
	err := <-errc
	t.Logf("the run returned %v after the cancellation", time.Since(t0))
	inside := g.inside.Load()
	close(g.gate)
	if inside > 0 {
		t.Fatalf("the sink returned (%v) while the run's dead-letter publish was still running", err)
	}
	t.Logf("run: %v", err)
	// Either the dead letter was written (and the message terminated), or
	// the message comes back.
	if w.streamMsgs(t, "DLQ") == 1 {
		r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
		return
	}
	seen := r14Collect(t, w.cons, func(s *r14Seen) bool { return s.has("p") || w.streamMsgs(t, "DLQ") == 1 })
	t.Logf("second run saw %v, DLQ %d", seen.snapshot(), w.streamMsgs(t, "DLQ"))
}

// A cancellation while a dead letter's publish is in flight, and the publish
// does not give up (a slow server): the sink returns only when no goroutine
// of the run is running (package sink), so not while the publish is still
// inside the run's code; and the dead letter is written in the end.
func TestReview14RunDoesNotOutliveItsDeadLetterPublish(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "p")
	g := &gatedJS{JetStream: w.js, gate: make(chan struct{}), entered: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work := stage.Map(natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(g, "dlq")), func(context.Context, natsjs.Msg[string]) (string, error) {
		return "", natsjs.Permanent(errors.New("poison"))
	}, stage.OnError(stage.Forward))
	errc := make(chan error, 1)
	go func() { errc <- sink.ForEach(ctx, work, func(context.Context, string) error { return nil }) }()
	select {
	case <-g.entered:
	case err := <-errc:
		t.Fatalf("the run ended (%v) without publishing a dead letter", err)
	}
	cancel()
	select {
	case err := <-errc:
		inside := g.inside.Load()
		close(g.gate)
		if inside > 0 {
			t.Fatalf("the sink returned (%v) while the run's dead-letter publish was still running", err)
		}
	case <-time.After(3 * time.Second): // the run waits for the publish, as it should
		close(g.gate)
		t.Logf("run: %v", <-errc)
	}
	r14WaitFor(t, "the dead letter or the message back", func() bool {
		return w.streamMsgs(t, "DLQ") == 1 || w.info(t).NumAckPending == 0
	})
}
