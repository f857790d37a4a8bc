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

// r38WaitDLQ is a dead-letter JetStream (a user's wrapper) whose publish,
// when called on the sink's goroutine, waits until the sink has taken the
// output "r" or the publish's context ends (natsjs gives it 5 s), and
// records which came first, before it publishes.
type r38WaitDLQ struct {
	jetstream.JetStream
	sinkG   *atomic.Int64
	onSink  *r38Once
	rTaken  *r38Once
	firstly chan string
}

func (d *r38WaitDLQ) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
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

// TestReview38TryWaitsForADeadLetter
//
// Source: "Source is a waiting source (its next waits for the server) and
// stage.Interruptible". stage.Interruptible: a next "called with a context
// that is already done, returns at once: an item if one is ready without
// waiting, else the context's error ... The claim is yours to keep: a next
// that waits although its context is done would hold a consumer goroutine,
// and with it the outputs the stage's other workers have finished."
// DeadLetter: "A publish waits for the server's answer for up to 5 s,
// whatever the run's context".
//
// A cheap Map of three workers gives a place to the sink's goroutine. While
// one of the Map's own goroutines works on r, a try of the sink's goroutine
// (its context done from the start) meets an undecodable message: next
// terminates it at once, publishing its dead letter, and waits for the
// server's answer (here a dead-letter server that does not answer: the
// wrapper waits). r is finished meanwhile, but the sink's goroutine is held
// in the try until the publish gives up after 5 s, and takes r only then.
// The consumer wrapper only orders events (it holds a try of the sink's
// goroutine, begun with the buffer empty, until the undecodable message is
// in the buffer; nats.go then picks it or the done context at random, so
// the test repeats until the try takes it). Failure rate: 10/10 against the
// Interruptible claim; Source's doc now states this exception ("a
// consumer's look that meets a message decode rejects waits for that
// message's dead letter ... and the outputs that consumer would take wait
// with it"), which the test checks: the publish's 5 s end comes first.
func TestReview38TryWaitsForADeadLetter(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
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
	dlq := &r38WaitDLQ{JetStream: w.js, sinkG: &sinkG, onSink: newR38Once(), rTaken: newR38Once(), firstly: make(chan string, 1)}
	var badElsewhere atomic.Int64 // undecodable messages met by the Map's own goroutines
	decode := func(b []byte) (string, error) {
		if strings.HasPrefix(string(b), "bad") {
			if r38Gid() != sinkG.Load() {
				badElsewhere.Add(1)
			}
			return "", strconv.ErrSyntax
		}
		return string(b), nil
	}
	rIn, releaseR := newR38Once(), newR38Once()
	defer releaseR.fire()
	var blockedR atomic.Value // the r the Map's own goroutine holds
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
			select {
			case <-dlq.onSink.ch:
				return true
			default:
				return badElsewhere.Load() == int64(attempt+1)
			}
		})
		select {
		case <-dlq.onSink.ch:
		default:
			continue // the Map's goroutine met it: again
		}
		break
	}
	// The try of the sink's goroutine is in the dead-letter publish. r is
	// finished now: a try that returned at once would let the sink take it.
	releaseR.fire()
	// Source's doc states the exception: the look waits for the dead
	// letter (up to 5 s), and the outputs it would take wait with it.
	if got := r38Recv(t, "the dead-letter publish's end", dlq.firstly); !strings.HasPrefix(got, "the dead-letter publish's context ended") {
		t.Fatalf("the doc says a try that meets an undecodable message waits for its dead letter, and the outputs with it; first: %s", got)
	}
	cancel()
	<-errc
}
