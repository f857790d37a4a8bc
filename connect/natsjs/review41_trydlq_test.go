package natsjs_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

var (
	errR41DLQ        = errors.New("review41: the dead-letter subject takes nothing")
	errR41SinkGoexit = errors.New("review41: the sink's goroutine was ended by runtime.Goexit")
)

// r41DLQ is a dead-letter JetStream (a user's wrapper): the publish of the
// dead letter of the message the sink's try met (target) succeeds, fails,
// panics or calls runtime.Goexit, by mode; every other one succeeds. It
// records each publish attempt's data and stream sequence.
type r41DLQ struct {
	jetstream.JetStream
	mode     string
	target   atomic.Value // string: the data of the message the sink's try met
	mu       sync.Mutex
	attempts map[string]int
	seqs     map[string]string
	stored   map[string]int
	onSink   []string // data of the publishes made on the sink's goroutine (under mu)
	sinkG    *atomic.Int64
}

func (d *r41DLQ) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	data := string(m.Data)
	d.mu.Lock()
	d.attempts[data]++
	d.seqs[data] = m.Header.Get("Sluice-Stream-Seq")
	d.mu.Unlock()
	if r38Gid() == d.sinkG.Load() {
		d.mu.Lock()
		d.onSink = append(d.onSink, data)
		d.mu.Unlock()
	}
	if t, _ := d.target.Load().(string); t == data {
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

// r41TryBad is a run whose sink's goroutine, in a try, met an undecodable
// message (target) while one of the Map's own goroutines holds r.
type r41TryBad struct {
	w        *r14
	dlq      *r41DLQ
	releaseR *r38Once
	cancel   func()
	stopNow  func()
	errc     chan error
	target   string
	log      *r13Log
	rnc      *nats.Conn
}

// r41TryMeetsBad is review38's r38TryMeetsBad with the dead-letter
// publish's behaviour (mode), a consumer config and Until as parameters; if cancelOnSink, decode cancels the run as it rejects the
// message in the sink's try.
func r41TryMeetsBad(t *testing.T, mode string, cfg jetstream.ConsumerConfig, until, cancelOnSink bool) *r41TryBad {
	w := r14World(t, cfg)
	l := r13WatchAcks(t, w.url, "WORK")
	rnc, rjs, tp := tapConnect(t, w.url)
	rc, err := rjs.Consumer(context.Background(), "WORK", "c")
	if err != nil {
		t.Fatal(err)
	}
	var sinkG, published, returned atomic.Int64
	pub := func(v string) {
		published.Add(1)
		w.pub(t, v)
	}
	var armed atomic.Bool
	var pubMu sync.Mutex
	held := make(chan struct{})
	goOn := make(chan struct{})
	cons := &r38Cons{Consumer: rc, hook: func(next func() (jetstream.Msg, error)) (jetstream.Msg, error) {
		pubMu.Lock()
		hold := sinkG.Load() != 0 && r38Gid() == sinkG.Load() &&
			returned.Load() == published.Load() && armed.CompareAndSwap(true, false)
		pubMu.Unlock()
		if hold {
			held <- struct{}{}
			<-goOn
		}
		m, err := next()
		if m != nil {
			returned.Add(1)
		}
		return m, err
	}}
	dlq := &r41DLQ{JetStream: w.js, mode: mode, attempts: map[string]int{}, seqs: map[string]string{}, stored: map[string]int{}, sinkG: &sinkG}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stop, stopNow := context.WithCancel(context.Background())
	t.Cleanup(stopNow)
	var badElsewhere, badOnSink atomic.Int64
	decode := func(b []byte) (string, error) {
		if strings.HasPrefix(string(b), "bad") {
			if r38Gid() != sinkG.Load() {
				badElsewhere.Add(1)
			} else {
				dlq.target.Store(string(b))
				badOnSink.Add(1)
				if cancelOnSink {
					cancel()
				}
			}
			return "", strconv.ErrSyntax
		}
		return string(b), nil
	}
	rIn, releaseR := newR38Once(), newR38Once()
	t.Cleanup(releaseR.fire)
	var blockedR atomic.Value
	var src stage.Stream[natsjs.Msg[string]] = natsjs.Source(cons, decode, natsjs.DeadLetter(dlq, "dlq"))
	if until {
		src = stage.Until(src, stop)
	}
	work := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
		if strings.HasPrefix(m.Value, "r") && r38Gid() != sinkG.Load() && blockedR.CompareAndSwap(nil, m.Value) {
			rIn.fire()
			select {
			case <-releaseR.ch:
			case <-ctx.Done():
			}
		}
		return m.Value, nil
	}, stage.Workers(3))
	errc := make(chan error, 1)
	go func() {
		returned := false
		defer func() {
			if !returned { // runtime.Goexit on the sink's goroutine
				errc <- errR41SinkGoexit
			}
		}()
		err := sink.ForEach(ctx, work, func(_ context.Context, v string) error {
			if sinkG.Load() == 0 {
				sinkG.Store(r38Gid())
			}
			return nil
		})
		returned = true
		errc <- err
	}()
	for i := range 64 {
		pub("w" + strconv.Itoa(i))
	}
	r38WaitFor(t, "the warm-up", func() bool { return returned.Load() == published.Load() && sinkG.Load() != 0 })
	for i := 0; ; i++ {
		pub("r" + strconv.Itoa(i))
		r38WaitFor(t, "r taken", func() bool { return returned.Load() == published.Load() })
		select {
		case <-rIn.ch:
		default:
			continue
		}
		break
	}
	for attempt := 0; ; attempt++ {
		armed.Store(true)
	batches:
		for b := 0; ; b++ {
			select {
			case <-held:
				break batches
			default:
			}
			pubMu.Lock()
			if !armed.Load() {
				pubMu.Unlock()
				<-held
				break
			}
			for i := range 4 {
				pub("a" + strconv.Itoa(attempt) + "-" + strconv.Itoa(b) + "-" + strconv.Itoa(i))
			}
			pubMu.Unlock()
			r38WaitFor(t, "a batch taken, or a try held", func() bool {
				return returned.Load() == published.Load() || !armed.Load()
			})
		}
		before := tp.received()
		pub("bad" + strconv.Itoa(attempt))
		r38WaitFor(t, "bad at the run's connection", func() bool { return tp.received() > before })
		if err := rnc.Flush(); err != nil {
			t.Fatal(err)
		}
		goOn <- struct{}{}
		r38WaitFor(t, "bad met", func() bool {
			return badOnSink.Load() == 1 || badElsewhere.Load() == int64(attempt+1)
		})
		if badOnSink.Load() == 0 {
			continue
		}
		break
	}
	return &r41TryBad{w: w, dlq: dlq, releaseR: releaseR, cancel: cancel, stopNow: stopNow, errc: errc, target: dlq.target.Load().(string), log: l, rnc: rnc}
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
	b := r41TryMeetsBad(t, mode, cfg, end == "until", end == "cancel")
	switch end {
	case "live":
		// r's worker finishes r and asks for its next message: a live call.
		b.releaseR.fire()
		r38WaitFor(t, "the live call's dead-letter publish", func() bool {
			a, _, _ := b.dlq.counts(b.target)
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
	attempts, stored, seqText := b.dlq.counts(b.target)
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
	b.dlq.mu.Lock()
	onSink := b.dlq.onSink
	b.dlq.mu.Unlock()
	// (A message the run left on its last delivery is dead-lettered by the
	// stop, which may run there: only the try's message counts.)
	if slices.Contains(onSink, b.target) && end == "live" {
		t.Errorf("the dead letter of %s, which the sink's try met, was published on the sink's goroutine", b.target)
	}
	seq, perr := strconv.ParseUint(seqText, 10, 64)
	if perr != nil {
		t.Fatalf("the dead letter's Sluice-Stream-Seq %q: %v", seqText, perr)
	}
	b.log.sync(t, b.rnc)
	var kinds []string
	for _, a := range b.log.all {
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
