package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// r38WaitDLQ is a dead-letter JetStream (a user's wrapper) whose publish,
// when called on the sink's goroutine, waits until the sink has taken the
// output "r" or the publish's context ends (natsjs gives it 5 s), and
// records which came first, before it publishes.
type r38WaitDLQ struct {
	jetstream.JetStream
	f         *tryForce
	onSink    *r38Once
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
	if d.f.onSink() {
		d.onSink.fire()
		select {
		case <-d.f.rTaken.ch:
			d.firstly <- "the sink took r"
		case <-ctx.Done():
			d.firstly <- "the dead-letter publish's context ended (" + context.Cause(ctx).Error() + ")"
		}
	}
	return d.JetStream.PublishMsg(ctx, m, opts...)
}

// r38TryMeetsBad brings a Map of three workers over a Source with a
// dead-letter subject (r38WaitDLQ) to the point where a try of the sink's
// goroutine has met an undecodable message while one of the Map's own
// goroutines holds r (see tryMeetsBad). If cancelOnSink, decode cancels
// the run there, before it returns its error.
func r38TryMeetsBad(t *testing.T, cancelOnSink bool) (*tryBad, *r38WaitDLQ, *r13Log) {
	w := r14World(t, jetstream.ConsumerConfig{})
	l := r13WatchAcks(t, w.url, "WORK")
	f := newTryForce(t, w)
	dlq := &r38WaitDLQ{JetStream: w.js, f: f, onSink: newR38Once(), firstly: make(chan string, 1), published: make(chan string, 64), seqs: make(chan string, 64)}
	return tryMeetsBad(f, dlq, false, cancelOnSink), dlq, l
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
func TestReview38TryLeavesADeadLetterToALiveCall(t *testing.T) {
	b, dlq, _ := r38TryMeetsBad(t, false)
	attempts, releaseR, cancel, errc := b.attempts, b.releaseR, b.cancel, b.errc
	// The try of the sink's goroutine met the undecodable message. r is
	// finished now: the sink takes it, as the try answered at once.
	releaseR.fire()
	select {
	case <-b.f.rTaken.ch:
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
	b, dlq, l := r38TryMeetsBad(t, true)
	b.f.rTaken.fire() // a publish on the sink's goroutine (the stop's) need not wait
	b.cancel()
	if err := r38Recv(t, "the run's end", b.errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want context.Canceled", err)
	}
	seqs := map[uint64]bool{} // every undecodable message's (the Map's goroutines met the first attempts-1)
	for range b.attempts {
		if got := r38Recv(t, "a dead letter", dlq.published); !strings.HasPrefix(got, "bad") {
			t.Fatalf("dead letter %q, want a bad message", got)
		}
		seq, err := strconv.ParseUint(<-dlq.seqs, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seqs[seq] = true
	}
	l.sync(t, b.f.rnc)
	kinds := map[uint64][]string{}
	for _, a := range l.all {
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
