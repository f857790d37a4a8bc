package natsjs_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

var (
	errR41DLQ = errors.New("review41: the dead-letter subject takes nothing")
)

// r41DLQ is a dead-letter JetStream (a user's wrapper): the publish of the
// dead letter of the message the sink's try met (target) succeeds, fails,
// panics or calls runtime.Goexit, by mode; every other one succeeds. It
// records each publish attempt's data and stream sequence.
type r41DLQ struct {
	jetstream.JetStream
	mode     string
	f        *tryForce // f.target: the data of the message the sink's try met
	mu       sync.Mutex
	attempts map[string]int
	seqs     map[string]string
	stored   map[string]int
	onSink   []string // data of the publishes made on the sink's goroutine (under mu)
}

func (d *r41DLQ) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	data := string(m.Data)
	d.mu.Lock()
	d.attempts[data]++
	d.seqs[data] = m.Header.Get("Sluice-Stream-Seq")
	d.mu.Unlock()
	if d.f.onSink() {
		d.mu.Lock()
		d.onSink = append(d.onSink, data)
		d.mu.Unlock()
	}
	if t, _ := d.f.target.Load().(string); t == data {
		switch d.mode {
		case "fail":
			return nil, errR41DLQ
		case "panic":
			panic(errR41DLQ)
		case "goexit":
			runtime.Goexit()
		}
	}
	ack, err := d.JetStream.PublishMsg(ctx, m, opts...)
	if err == nil {
		d.mu.Lock()
		d.stored[data]++
		d.mu.Unlock()
	}
	return ack, err
}

func (d *r41DLQ) counts(data string) (attempts, stored int, seq string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attempts[data], d.stored[data], d.seqs[data]
}

// r41TryMeetsBad is tryMeetsBad with the dead-letter publish's behaviour
// (mode, see r41DLQ) and the consumer's config as parameters.
func r41TryMeetsBad(t *testing.T, mode string, cfg jetstream.ConsumerConfig, until, cancelOnSink bool) (*tryBad, *r41DLQ, *r13Log) {
	w := r14World(t, cfg)
	l := r13WatchAcks(t, w.url, "WORK")
	f := newTryForce(t, w)
	dlq := &r41DLQ{JetStream: w.js, mode: mode, f: f, attempts: map[string]int{}, seqs: map[string]string{}, stored: map[string]int{}}
	return tryMeetsBad(f, dlq, until, cancelOnSink), dlq, l
}

// TestReview41TryDeadLetterMatrix attacks Source's "A consumer's look
// answers at once also when it meets a message decode rejects: with a
// DeadLetter subject ... that message is terminated and dead-lettered by the
// next call that may wait ..., or at the run's stop if none comes" with
// DeadLetter's "If the publish fails, the message is nak'ed instead ... a
// publish that panics is a failed one (the message is nak'ed as above ...)
// and fails the run with a *stage.SourceError wrapping the
// *stage.PanicError; one that calls runtime.Goexit is a failed one too". The
// message a try of the sink's goroutine rejected is settled by a live call,
// by the stop of a cancelled run, or by the stop of a drained one (Until),
// with a dead-letter publish that succeeds, fails, panics or calls Goexit
// (in a child process), on a consumer with or without MaxDeliver 1 (its last
// delivery). It must get exactly one settlement on the wire: a Term, with
// exactly one dead letter stored, when the publish succeeds; else a Nak and
// no Term, no dead letter. No publish may run on the sink's goroutine.
func TestReview41TryDeadLetterMatrix(t *testing.T) {
	for _, end := range []string{"live", "cancel", "until"} {
		for _, mode := range []string{"ok", "fail", "panic", "goexit"} {
			for _, maxDeliver := range []int{0, 1} {
				name := end + "/" + mode + "/maxdeliver" + strconv.Itoa(maxDeliver)
				t.Run(name, func(t *testing.T) {
					body := func(t *testing.T) { r41TryDeadLetter(t, end, mode, maxDeliver) }
					if mode == "goexit" {
						runcheck.InChildTest(t, body)
						return
					}
					body(t)
				})
			}
		}
	}
}

func r41TryDeadLetter(t *testing.T, end, mode string, maxDeliver int) {
	cfg := jetstream.ConsumerConfig{MaxDeliver: maxDeliver}
	if maxDeliver == 0 {
		cfg.MaxDeliver = -1
	}
	b, dlq, l := r41TryMeetsBad(t, mode, cfg, end == "until", end == "cancel")
	switch end {
	case "live":
		// r's worker finishes r and asks for its next message: a live call.
		b.releaseR.fire()
		r38WaitFor(t, "the live call's dead-letter publish", func() bool {
			a, _, _ := dlq.counts(b.target)
			return a > 0
		})
		if mode != "panic" && mode != "goexit" {
			b.cancel() // a panic or a Goexit ends the run by itself
		}
	case "cancel":
		b.cancel()
	case "until":
		b.stopNow()
		b.releaseR.fire()
	}
	err := r38Recv(t, "the run's end", b.errc)
	var pe *stage.PanicError
	var se *stage.SourceError
	t.Logf("run: %v", err)
	switch {
	case mode == "goexit" && end == "live":
		if !errors.Is(err, stage.ErrGoexit) {
			t.Errorf("run: %v, want ErrGoexit", err)
		}
	case mode == "goexit":
		// The stop runs on some goroutine of the run's end; a Goexit there
		// ends it (the sink's own: the sink does not return).
	case end == "cancel":
		// A cancellation decides the run's result first.
		if !errors.Is(err, context.Canceled) {
			t.Errorf("run: %v, want context.Canceled", err)
		}
	case mode == "panic":
		if !errors.As(err, &se) || !errors.As(err, &pe) {
			t.Errorf("run: %v, want a *stage.SourceError wrapping a *stage.PanicError", err)
		}
	case end == "until":
		if err != nil {
			t.Errorf("run: %v, want nil (drained)", err)
		}
	default:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("run: %v, want context.Canceled", err)
		}
	}
	attempts, stored, seqText := dlq.counts(b.target)
	if attempts != 1 {
		t.Errorf("%s: %d dead-letter publishes of the message the try met, want 1", b.target, attempts)
	}
	wantStored := 0
	if mode == "ok" {
		wantStored = 1
	}
	if stored != wantStored {
		t.Errorf("%s: %d dead letters stored, want %d", b.target, stored, wantStored)
	}
	dlq.mu.Lock()
	onSink := dlq.onSink
	dlq.mu.Unlock()
	// (A message the run left on its last delivery is dead-lettered by the
	// stop, which may run there: only the try's message counts.)
	if slices.Contains(onSink, b.target) && end == "live" {
		t.Errorf("the dead letter of %s, which the sink's try met, was published on the sink's goroutine", b.target)
	}
	seq, perr := strconv.ParseUint(seqText, 10, 64)
	if perr != nil {
		t.Fatalf("the dead letter's Sluice-Stream-Seq %q: %v", seqText, perr)
	}
	l.sync(t, b.f.rnc)
	var kinds []string
	for _, a := range l.all {
		if a.seq == seq && a.kind != "wpi" {
			kinds = append(kinds, a.kind)
		}
	}
	want := "term"
	if mode != "ok" {
		want = "nak"
	}
	if len(kinds) != 1 || kinds[0] != want {
		t.Errorf("%s (seq %d): settlements on the wire %v, want one %s", b.target, seq, kinds, want)
	}
}
