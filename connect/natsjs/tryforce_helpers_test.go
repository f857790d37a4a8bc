package natsjs_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// tryForce brings a run over a Source to the point where a try of the
// sink's goroutine (a call whose context is done from the start: see
// stage.Interruptible) takes a message the test chose.
//
// How: a cheap Map of several workers gives a place to the sink's goroutine
// (warmUp); the consumer wrapper (cons) holds a try of the sink's goroutine
// that begins with the subscription's buffer empty; meet then publishes the
// chosen message, waits until it reached the run's connection, and lets the
// try go on. nats.go's Next then picks the message or the done context at
// random, so meet repeats, with a new message each time, until the try
// takes one. Only the order of events decides; the waits' durations are
// hang watchdogs.
type tryForce struct {
	t    *testing.T
	w    *r14
	tp   *tap
	rnc  *nats.Conn // the run's connection
	cons *r38Cons   // the consumer to give the Source

	sinkG               atomic.Int64 // the sink's goroutine, once its function ran
	published, returned atomic.Int64 // messages published, and returned by the run's Next
	target              atomic.Value // string: the chosen message a try of the sink's goroutine met (set by the test)
	rTaken              *r38Once     // tryMeetsBad: the sink took the r a Map goroutine held

	armed      atomic.Bool // hold the next try of the sink's goroutine that begins with the buffer empty
	pubMu      sync.Mutex  // a batch's publishing against the hook's look
	held, goOn chan struct{}

	seqMu sync.Mutex
	seqOf map[string]uint64 // each published message's stream sequence

	wrap func(jetstream.Msg) jetstream.Msg // if set (before the run starts), wraps each message the run's Next returns
}

// newTryForce connects the run's connection (tapped) to w's server and
// wraps the consumer "c".
func newTryForce(t *testing.T, w *r14) *tryForce {
	t.Helper()
	rnc, rjs, tp := tapConnect(t, w.url)
	rc, err := rjs.Consumer(context.Background(), "WORK", "c")
	if err != nil {
		t.Fatal(err)
	}
	f := &tryForce{t: t, w: w, tp: tp, rnc: rnc, held: make(chan struct{}), goOn: make(chan struct{}), seqOf: map[string]uint64{}, rTaken: newR38Once()}
	f.cons = &r38Cons{Consumer: rc, hook: f.hook}
	return f
}

func (f *tryForce) hook(next func() (jetstream.Msg, error)) (jetstream.Msg, error) {
	f.pubMu.Lock()
	hold := f.sinkG.Load() != 0 && f.onSink() &&
		f.returned.Load() == f.published.Load() && f.armed.CompareAndSwap(true, false)
	f.pubMu.Unlock()
	if hold {
		f.held <- struct{}{}
		<-f.goOn
	}
	m, err := next()
	if m != nil {
		f.returned.Add(1)
		if f.wrap != nil {
			m = f.wrap(m)
		}
	}
	return m, err
}

// onSink reports whether the caller runs on the sink's goroutine.
func (f *tryForce) onSink() bool { return r38Gid() == f.sinkG.Load() }

// sinkRan is called by the sink's function: it names the sink's goroutine.
func (f *tryForce) sinkRan() {
	if f.sinkG.Load() == 0 {
		f.sinkG.Store(r38Gid())
	}
}

// pub publishes v to WORK and records its sequence.
func (f *tryForce) pub(v string) {
	f.t.Helper()
	f.published.Add(1)
	ack, err := f.w.js.Publish(context.Background(), "w.x", []byte(v))
	if err != nil {
		f.t.Fatal(err)
	}
	f.seqMu.Lock()
	f.seqOf[v] = ack.Sequence
	f.seqMu.Unlock()
}

// seq is v's stream sequence.
func (f *tryForce) seq(v string) uint64 {
	f.seqMu.Lock()
	defer f.seqMu.Unlock()
	return f.seqOf[v]
}

// warmUp runs 64 messages through: calls prove cheap, and a place goes to
// the sink's goroutine, whose function names it.
func (f *tryForce) warmUp() {
	for i := range 64 {
		f.pub("w" + strconv.Itoa(i))
	}
	r38WaitFor(f.t, "the warm-up", func() bool { return f.returned.Load() == f.published.Load() && f.sinkG.Load() != 0 })
}

// pubUntil publishes prefix+i, one at a time, each taken before the next,
// until fired is closed.
func (f *tryForce) pubUntil(prefix string, fired <-chan struct{}) {
	for i := 0; ; i++ {
		f.pub(prefix + strconv.Itoa(i))
		r38WaitFor(f.t, prefix+" taken", func() bool { return f.returned.Load() == f.published.Load() })
		select {
		case <-fired:
			return
		default:
		}
	}
}

// meet publishes prefix+attempt messages, one per attempt, each offered to
// a held try of the sink's goroutine, until metOnSink reports that one such
// try met one; elsewhere counts those the run's other goroutines met. It
// returns the number of attempts (the chosen messages published).
func (f *tryForce) meet(prefix string, metOnSink func() bool, elsewhere func() int64) int {
	t := f.t
	for attempt := 0; ; attempt++ {
		f.armed.Store(true)
		// Batches until a try of the sink's goroutine begins with the
		// buffer empty.
	batches:
		for b := 0; ; b++ {
			select {
			case <-f.held:
				break batches
			default:
			}
			f.pubMu.Lock()
			if !f.armed.Load() { // a try is being held: publish nothing
				f.pubMu.Unlock()
				<-f.held
				break
			}
			for i := range 4 {
				f.pub("a" + strconv.Itoa(attempt) + "-" + strconv.Itoa(b) + "-" + strconv.Itoa(i))
			}
			f.pubMu.Unlock()
			r38WaitFor(t, "a batch taken, or a try held", func() bool {
				return f.returned.Load() == f.published.Load() || !f.armed.Load()
			})
		}
		// Held: nobody else is in next. Put the chosen message in the buffer.
		before := f.tp.received()
		f.pub(prefix + strconv.Itoa(attempt))
		r38WaitFor(t, prefix+" at the run's connection", func() bool { return f.tp.received() > before })
		if err := f.rnc.Flush(); err != nil {
			t.Fatal(err)
		}
		f.goOn <- struct{}{}
		r38WaitFor(t, prefix+" met", func() bool { return metOnSink() || elsewhere() == int64(attempt+1) })
		if metOnSink() {
			return attempt + 1
		}
	}
}

// tryBad is a run whose sink's goroutine, in a try, met an undecodable
// message ("bad"+n, f.target) while one of the Map's own goroutines holds a
// message "r"+n.
type tryBad struct {
	f        *tryForce
	releaseR *r38Once // lets r's worker finish r and ask for its next message
	cancel   func()   // cancels the run's context
	stopNow  func()   // ends Until's stop, if until
	errc     <-chan error
	attempts int // undecodable messages published (the Map's goroutines met all but the last)
	target   string
}

// tryMeetsBad starts a Map of three workers over a Source of f.cons with a
// dead-letter subject published through dlq (none if dlq is nil), under Until if until, and
// brings it to the point where a try of the sink's goroutine met an
// undecodable message while one of the Map's own goroutines holds r. If
// cancelOnSink, decode cancels the run there, before it returns its error.
func tryMeetsBad(f *tryForce, dlq jetstream.JetStream, until, cancelOnSink bool) *tryBad {
	t := f.t
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stop, stopNow := context.WithCancel(context.Background())
	t.Cleanup(stopNow)
	var badElsewhere, badOnSink atomic.Int64 // undecodable messages met by the Map's own goroutines, by the sink's
	decode := func(b []byte) (string, error) {
		if strings.HasPrefix(string(b), "bad") {
			if !f.onSink() {
				badElsewhere.Add(1)
			} else {
				f.target.Store(string(b))
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
	var blockedR atomic.Value // the r the Map's own goroutine holds
	var opts []natsjs.SourceOption
	if dlq != nil {
		opts = append(opts, natsjs.DeadLetter(dlq, "dlq"))
	}
	var src stage.Stream[natsjs.Msg[string]] = natsjs.Source(f.cons, decode, opts...)
	if until {
		src = stage.Until(src, stop)
	}
	work := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
		if strings.HasPrefix(m.Value, "r") && !f.onSink() && blockedR.CompareAndSwap(nil, m.Value) {
			rIn.fire()
			select {
			case <-releaseR.ch:
			case <-ctx.Done():
			}
		}
		return m.Value, nil
	}, stage.Workers(3))
	errc := r31Sink(func() error {
		return sink.ForEach(ctx, work, func(_ context.Context, v string) error {
			f.sinkRan()
			if b := blockedR.Load(); b != nil && v == b.(string) {
				f.rTaken.fire()
			}
			return nil
		})
	})
	f.warmUp()
	f.pubUntil("r", rIn.ch) // r, in a Map goroutine of its own
	attempts := f.meet("bad", func() bool { return badOnSink.Load() == 1 }, badElsewhere.Load)
	return &tryBad{f: f, releaseR: releaseR, cancel: cancel, stopNow: stopNow, errc: errc, attempts: attempts, target: f.target.Load().(string)}
}
