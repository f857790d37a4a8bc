package natsjs_test

import (
	"context"
	"errors"
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

// r38WaitDLQ is a dead-letter JetStream (a user's wrapper) whose publish,
// when called on the sink's goroutine, waits until the sink has taken the
// output "r" or the publish's context ends (natsjs gives it 5 s), and
// records which came first, before it publishes.
type r38WaitDLQ struct {
	jetstream.JetStream
	sinkG     *atomic.Int64
	onSink    *r38Once
	rTaken    *r38Once
	firstly   chan string
	published chan string // the data of every dead letter published (buffered)
	seqs      chan string // and its Sluice-Stream-Seq header
}

func (d *r38WaitDLQ) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	defer func() {
		select {
		case d.published <- string(m.Data):
			d.seqs <- m.Header.Get("Sluice-Stream-Seq")
		default:
		}
	}()
	if r38Gid() == d.sinkG.Load() {
		d.onSink.fire()
		select {
		case <-d.rTaken.ch:
			d.firstly <- "the sink took r"
		case <-ctx.Done():
			d.firstly <- "the dead-letter publish's context ended (" + context.Cause(ctx).Error() + ")"
		}
	}
	return d.JetStream.PublishMsg(ctx, m, opts...)
}

// TestReview38TryLeavesADeadLetterToALiveCall
//
// Source: "A consumer's look answers at once also when it meets a message
// decode rejects: with a DeadLetter subject, whose publish waits for the
// server, that message is terminated and dead-lettered by the next call
// that may wait ..., or at the run's stop if none comes". stage.Interruptible:
// a next "called with a context that is already done, returns at once".
//
// A cheap Map of three workers gives a place to the sink's goroutine. While
// one of the Map's own goroutines works on r, a try of the sink's goroutine
// (its context done from the start) meets an undecodable message. The
// dead-letter JetStream (a wrapper) holds any publish made on the sink's
// goroutine until the sink has taken r (or for 5 s, the publish's bound):
// so a try that published there would keep the sink from r until the
// publish gave up. r is released; the sink must take it, and the dead
// letter must then be published (by the Map's worker that takes its next
// message), not by the sink's goroutine. The consumer wrapper only orders
// events (it holds a try of the sink's goroutine, begun with the buffer
// empty, until the undecodable message is in the buffer; nats.go then
// picks it or the done context at random, so the test repeats until the
// try takes it). Before the source left the dead letter to a live call,
// the try waited for the publish (10 of 10 runs, then a documented
// exception).
// r38TryBad is a run whose sink's goroutine, in a try, met an undecodable
// message while one of the Map's own goroutines holds r (see
// TestReview38TryLeavesADeadLetterToALiveCall).
type r38TryBad struct {
	dlq      *r38WaitDLQ
	releaseR *r38Once
	cancel   func()
	errc     chan error
	attempts int64 // undecodable messages published (the Map's goroutines met all but the last)
	log      *r13Log
	rnc      *nats.Conn
}

// r38TryMeetsBad starts a Map of three workers over a Source with a
// dead-letter subject and brings it to the point where a try of the sink's
// goroutine has met an undecodable message while one of the Map's own
// goroutines holds r. If cancelOnSink, decode cancels the run there, before
// it returns its error.
func r38TryMeetsBad(t *testing.T, cancelOnSink bool) *r38TryBad {
	w := r14World(t, jetstream.ConsumerConfig{})
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
	dlq := &r38WaitDLQ{JetStream: w.js, sinkG: &sinkG, onSink: newR38Once(), rTaken: newR38Once(), firstly: make(chan string, 1), published: make(chan string, 64), seqs: make(chan string, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var badElsewhere, badOnSink atomic.Int64 // undecodable messages met by the Map's own goroutines, by the sink's
	decode := func(b []byte) (string, error) {
		if strings.HasPrefix(string(b), "bad") {
			if r38Gid() != sinkG.Load() {
				badElsewhere.Add(1)
			} else {
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
	work := stage.Map(natsjs.Source(cons, decode, natsjs.DeadLetter(dlq, "dlq")), func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
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
		errc <- sink.ForEach(ctx, work, func(_ context.Context, v string) error {
			if sinkG.Load() == 0 {
				sinkG.Store(r38Gid())
			}
			if b := blockedR.Load(); b != nil && v == b.(string) {
				dlq.rTaken.fire()
			}
			return nil
		})
	}()
	for i := range 64 { // the warm-up: calls prove cheap, a place goes to the sink's goroutine
		pub("w" + strconv.Itoa(i))
	}
	r38WaitFor(t, "the warm-up", func() bool { return returned.Load() == published.Load() && sinkG.Load() != 0 })
	for i := 0; ; i++ { // r, in a Map goroutine of its own
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
		// A try of the sink's goroutine is held, nobody else is in next:
		// put an undecodable message in the buffer.
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
			continue // the Map's goroutine met it: again
		}
		break
	}
	return &r38TryBad{dlq: dlq, releaseR: releaseR, cancel: cancel, errc: errc, attempts: badElsewhere.Load() + 1, log: l, rnc: rnc}
}

func TestReview38TryLeavesADeadLetterToALiveCall(t *testing.T) {
	b := r38TryMeetsBad(t, false)
	dlq, attempts, releaseR, cancel, errc := b.dlq, b.attempts, b.releaseR, b.cancel, b.errc
	// The try of the sink's goroutine met the undecodable message. r is
	// finished now: the sink takes it, as the try answered at once.
	releaseR.fire()
	select {
	case <-dlq.rTaken.ch:
	case got := <-dlq.firstly:
		t.Fatalf("the sink's goroutine published a dead letter, which held it from r: %s", got)
	case <-after(r38Watchdog):
		t.Fatalf("hang: the sink never took r")
	}
	// Every undecodable message is dead-lettered (those the Map's
	// goroutines met at once, the sink's by a later live call), none on the
	// sink's goroutine.
	for range attempts {
		if got := r38Recv(t, "a dead letter", dlq.published); !strings.HasPrefix(got, "bad") {
			t.Fatalf("dead letter %q, want one of the bad messages", got)
		}
	}
	select {
	case <-dlq.onSink.ch:
		t.Fatal("a dead letter was published on the sink's goroutine")
	default:
	}
	cancel()
	<-errc
}

// TestReview38TryLeavesADeadLetterToTheStop: as above, but decode cancels
// the run as it rejects the message in the sink's try, so that no call
// with a live context comes after it. Source: the message is "terminated
// and dead-lettered ... at the run's stop if none comes" (not nak'ed as
// the other messages a run leaves are).
func TestReview38TryLeavesADeadLetterToTheStop(t *testing.T) {
	b := r38TryMeetsBad(t, true)
	b.dlq.rTaken.fire() // a publish on the sink's goroutine (the stop's) need not wait
	b.cancel()
	if err := r38Recv(t, "the run's end", b.errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want context.Canceled", err)
	}
	seqs := map[uint64]bool{} // every undecodable message's (the Map's goroutines met the first attempts-1)
	for range b.attempts {
		if got := r38Recv(t, "a dead letter", b.dlq.published); !strings.HasPrefix(got, "bad") {
			t.Fatalf("dead letter %q, want a bad message", got)
		}
		seq, err := strconv.ParseUint(<-b.dlq.seqs, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seqs[seq] = true
	}
	b.log.sync(t, b.rnc)
	kinds := map[uint64][]string{}
	for _, a := range b.log.all {
		if seqs[a.seq] {
			kinds[a.seq] = append(kinds[a.seq], a.kind)
		}
	}
	for seq := range seqs {
		if k := kinds[seq]; len(k) != 1 || k[0] != "term" {
			t.Fatalf("acknowledgements of undecodable message %d: %v, want one term", seq, k)
		}
	}
}
