package natsjs_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r31PanicJS is a JetStream (a user's wrapper, given to DeadLetter) whose
// PublishMsg panics on its first `panics` calls, and publishes
// through the real one after.
type r31PanicJS struct {
	jetstream.JetStream
	panics int32
	calls  atomic.Int32
}

func (p *r31PanicJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if p.calls.Add(1) <= p.panics {
		panic("r31: dead-letter publish panicked")
	}
	return p.JetStream.PublishMsg(ctx, m, opts...)
}

// r31WaitFor polls cond; the deadline only turns a stranded message (one
// that waits out AckWait, an hour here) into a failure.
func r31WaitFor(t *testing.T, what string, cond func() bool, report func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang bound
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s: %s", what, report())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A panic in the dead-letter JetStream's PublishMsg (user code given to
// DeadLetter) while Done terminates a Permanent failure: the run fails
// with a *stage.SourceError, and the message must not be lost to the run:
// Source: "every message the run held but did not settle ... is nak'ed
// once the run's goroutines have exited". It must come back (it is not
// settled: neither dead-lettered nor terminated).
func TestReview31DeadLetterPanicInDoneGivesTheMessageBack(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "x")
	pj := &r31PanicJS{JetStream: w.js, panics: 1}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang bound
	defer cancel()
	work := stage.Map(natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(pj, "dlq"), natsjs.Backoff(time.Millisecond, time.Millisecond)), func(context.Context, natsjs.Msg[string]) (string, error) {
		return "", natsjs.Permanent(errors.New("poison"))
	}, stage.OnError(stage.Forward))
	err := sink.ForEach(ctx, work, func(context.Context, string) error { return nil })
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("run: %v (%T), want a *stage.SourceError for the panic in Done", err, err)
	}
	// The message was neither dead-lettered nor terminated: it must be
	// nak'ed (with a failed publish's retry delay, a millisecond here), not
	// held until AckWait (an hour): the next run gets it again.
	r31Redelivered(t, w, "x")
}

// r31Redelivered runs the consumer again and checks that its first message
// is want, redelivered: the run before gave it back, since AckWait (an
// hour) cannot have passed. The timeout only bounds a hang.
func r31Redelivered(t *testing.T, w *r14, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, ok, err := sink.First(ctx, natsjs.Source(w.cons, r14Str))
	if err != nil || !ok {
		t.Fatalf("the next run: %v, %v: the message did not come back (NumAckPending %d, DLQ %d)", ok, err, w.info(t).NumAckPending, w.streamMsgs(t, "DLQ"))
	}
	// Its second delivery, or a later one: nak'ed with a short Backoff, it
	// can come back to the run that gave it back before that run stops,
	// which gives it back once more.
	if m.Value != want || m.Deliveries < 2 {
		t.Fatalf("the next run got %q on delivery %d, want %q redelivered", m.Value, m.Deliveries, want)
	}
}

// A panic in the dead-letter JetStream's PublishMsg while the run's stop
// gives back the messages it held on their last allowed delivery (which go
// to the dead-letter subject): the other messages must still go back
// (Source: every message the run held but did not settle is given back
// once the run's goroutines have exited; OnAckError: a panic "does not
// keep the other messages from going back to the server when the run
// stops").
func TestReview31DeadLetterPanicAtStopKeepsTheOthersBack(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 1})
	const n = 3
	w.pubN(t, n)
	pj := &r31PanicJS{JetStream: w.js, panics: 1}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	// Every message is taken and held (cut short at the cancellation).
	work := stage.Map(natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(pj, "dlq")), func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
		mu.Lock()
		if arrived++; arrived == n {
			close(all)
		}
		mu.Unlock()
		<-ctx.Done()
		return "", ctx.Err()
	}, stage.Workers(n))
	errc := make(chan error, 1)
	go func() { errc <- sink.ForEach(ctx, work, func(context.Context, string) error { return nil }) }()
	select {
	case <-all:
	case err := <-errc:
		t.Fatalf("the run ended (%v) before it took every message", err)
	case <-time.After(time.Minute):
		t.Fatal("hang: the run did not take every message")
	}
	cancel()
	err := <-errc
	t.Logf("run: %v", err)
	// The first give-back panicked; the other n-1 messages, on their last
	// delivery, must be dead-lettered (through the wrapper, which works
	// after its first call).
	r31WaitFor(t, "the other messages' dead letters", func() bool { return w.streamMsgs(t, "DLQ") == n-1 }, func() string {
		return "DLQ holds " + itoa(int(w.streamMsgs(t, "DLQ"))) + ", publish calls " + itoa(int(pj.calls.Load())) + ", NumAckPending " + itoa(w.info(t).NumAckPending)
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

// The same panic while next terminates a message that decode rejected: the
// message must come back, not wait out AckWait.
func TestReview31DeadLetterPanicAtDecodeGivesTheMessageBack(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "bad")
	pj := &r31PanicJS{JetStream: w.js, panics: 1}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang bound
	defer cancel()
	decode := func(b []byte) (string, error) { return "", errors.New("undecodable") }
	err := sink.ForEach(ctx, natsjs.Source(w.cons, decode, natsjs.DeadLetter(pj, "dlq"), natsjs.Backoff(time.Millisecond, time.Millisecond)), func(context.Context, natsjs.Msg[string]) error { return nil })
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("run: %v (%T), want a *stage.SourceError for the panic in next", err, err)
	}
	r31Redelivered(t, w, "bad")
}

// r31GoexitJS is r31PanicJS whose first `exits` publishes call
// runtime.Goexit instead (t.FailNow in a user's wrapper).
type r31GoexitJS struct {
	jetstream.JetStream
	exits int32
	calls atomic.Int32
}

func (p *r31GoexitJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if p.calls.Add(1) <= p.exits {
		runtime.Goexit()
	}
	return p.JetStream.PublishMsg(ctx, m, opts...)
}

// A runtime.Goexit in the dead-letter publish of the run's stop, for the
// first of three messages on their last delivery: the run fails with
// stage.ErrGoexit (or a *stage.SourceError), the first message is nak'ed
// (its publish did not return) and the other two are still dead-lettered.
// In a child process: a Goexit the engine missed could hang it.
func TestReview31DeadLetterGoexitAtStopKeepsTheOthersBack(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 1})
		const n = 3
		w.pubN(t, n)
		gj := &r31GoexitJS{JetStream: w.js, exits: 1}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var mu sync.Mutex
		arrived := 0
		all := make(chan struct{})
		work := stage.Map(natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(gj, "dlq")), func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
			mu.Lock()
			if arrived++; arrived == n {
				close(all)
			}
			mu.Unlock()
			<-ctx.Done()
			return "", ctx.Err()
		}, stage.Workers(n))
		errc := r31Sink(func() error { return sink.ForEach(ctx, work, func(context.Context, string) error { return nil }) })
		select {
		case <-all:
		case err := <-errc:
			t.Fatalf("the run ended (%v) before it took every message", err)
		case <-time.After(time.Minute):
			t.Fatal("hang: the run did not take every message")
		}
		cancel()
		err := <-errc
		// The stop runs on the sink's goroutine, which a Goexit there ends
		// (stage.ErrGoexit's doc).
		if !errors.Is(err, errR31Goexited) {
			t.Fatalf("run: %v, want the sink's goroutine ended by the Goexit in the stop", err)
		}
		r31WaitFor(t, "the other messages' dead letters", func() bool { return w.streamMsgs(t, "DLQ") == n-1 }, func() string {
			return "DLQ holds " + itoa(int(w.streamMsgs(t, "DLQ"))) + ", publish calls " + itoa(int(gj.calls.Load()))
		})
		// The one whose publish did not return was nak'ed: on its last
		// delivery it stays in the stream, not pending.
		r31WaitFor(t, "no message pending", func() bool { return w.info(t).NumAckPending == 0 }, func() string {
			return "NumAckPending " + itoa(w.info(t).NumAckPending)
		})
	})
}

// A runtime.Goexit in the dead-letter publish of Done (a Permanent
// failure): the message is nak'ed, and the next run gets it again.
func TestReview31DeadLetterGoexitInDoneGivesTheMessageBack(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		w := r14World(t, jetstream.ConsumerConfig{})
		w.pub(t, "x")
		gj := &r31GoexitJS{JetStream: w.js, exits: 1}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang bound
		defer cancel()
		work := stage.Map(natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(gj, "dlq"), natsjs.Backoff(time.Millisecond, time.Millisecond)), func(context.Context, natsjs.Msg[string]) (string, error) {
			return "", natsjs.Permanent(errors.New("poison"))
		}, stage.OnError(stage.Forward))
		// Done runs on the sink's goroutine (the sink committed the
		// forwarded error), which a Goexit there ends (stage.ErrGoexit's doc).
		if err := <-r31Sink(func() error { return sink.ForEach(ctx, work, func(context.Context, string) error { return nil }) }); !errors.Is(err, errR31Goexited) {
			t.Fatalf("run: %v, want the sink's goroutine ended by the Goexit in Done", err)
		}
		r31Redelivered(t, w, "x")
	})
}

// errR31Goexited stands for a sink whose goroutine runtime.Goexit ended.
var errR31Goexited = errors.New("r31: the sink's goroutine was ended by runtime.Goexit")

// r31Sink runs a sink on a goroutine of its own and sends its result, or
// errR31Goexited if a Goexit on that goroutine ended it.
func r31Sink(run func() error) <-chan error {
	errc := make(chan error, 1)
	go func() {
		returned := false
		defer func() {
			if !returned {
				errc <- errR31Goexited
			}
		}()
		err := run()
		returned = true
		errc <- err
	}()
	return errc
}
