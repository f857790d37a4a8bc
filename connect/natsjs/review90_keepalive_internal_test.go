package natsjs

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// r90Msg is a message that logs its in-progress acks and settlements, in
// the order they were sent, into a log it shares with the others; the
// rest of jetstream.Msg is not used here. hold, if set, is called inside
// InProgress before it is logged.
type r90Msg struct {
	jetstream.Msg
	name string
	log  *r90Log
	hold func(name string)
}

// r90Log is the shared log of what the messages sent.
type r90Log struct {
	mu  sync.Mutex
	out []string
}

func (l *r90Log) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out = append(l.out, s)
}

func (l *r90Log) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.out...)
}

func (m *r90Msg) Metadata() (*jetstream.MsgMetadata, error) {
	return nil, errors.New("no metadata")
}

func (m *r90Msg) InProgress() error {
	if m.hold != nil {
		m.hold(m.name)
	}
	m.log.add("wpi " + m.name)
	return nil
}

func (m *r90Msg) Ack() error {
	m.log.add("ack " + m.name)
	return nil
}

func (m *r90Msg) NakWithDelay(time.Duration) error {
	m.log.add("nak " + m.name)
	return nil
}

// The keep-alive ticker sends no in-progress ack for a message after its
// settlement (msgAck's settled: "no in-progress ack follows the settlement
// on the wire", since the server restarts a delayed Nak's timer on one, so
// that Backoff's delay would become AckWait). The ticker takes a snapshot
// of the messages in flight, then sends to each in turn: a message settled
// between the two must be skipped. Black-box, that window cannot be forced
// (the ticker's goroutine is the source's own), so this orders it by hand:
// two messages in flight before the ticker starts, so that its first
// snapshot holds both; the first in-progress ack of that tick (to one of
// them, "first") is held while the other ("second", after it in the
// snapshot) is settled (acked in one subtest, nak'ed in the other); once
// released, the tick goes on to "second", which must get nothing. The ticker's next tick
// holds only "first": its in-progress ack there shows the first tick is
// over.
func TestReview90NoInProgressAckAfterSettlement(t *testing.T) {
	for _, outcome := range []error{nil, errors.New("retryable")} {
		name := "ack"
		if outcome != nil {
			name = "nak"
		}
		t.Run(name, func(t *testing.T) {
			log := &r90Log{}
			entered := make(chan string, 1) // the held message's name
			release := make(chan struct{})
			var mu sync.Mutex
			held, calls := "", 0
			hold := func(name string) {
				mu.Lock()
				calls++
				wait := calls == 1 || (held != "" && name == held)
				if calls == 1 {
					held = name
				} else if wait {
					held = "" // once more only: the call that shows the first tick is over
				}
				mu.Unlock()
				if wait {
					entered <- name
					<-release
				}
			}
			s := &sourceRun{cfg: sourceConfig{keepAlive: time.Millisecond, backoff: time.Second, maxDelay: time.Minute}, inFlight: map[*msgAck]struct{}{}}
			acks := map[string]*msgAck{}
			for _, name := range []string{"x", "y"} {
				acks[name] = s.track(&r90Msg{name: name, log: log, hold: hold})
			}
			stop := s.startKeepAlive()
			defer func() {
				select {
				case <-release:
				default:
					close(release)
				}
				stop()
			}()
			first := r90Recv(t, entered)
			second := "x"
			if first == "x" {
				second = "y"
			}
			acks[second].Done(outcome) // settled while the ticker holds its snapshot, which still has it
			release <- struct{}{}      // on with the first tick: "second" comes next, and must get nothing
			r90Recv(t, entered)        // "first" again: a later tick, so the first one is over
			close(release)
			settled := false
			for _, e := range log.all() {
				switch e {
				case "ack " + second, "nak " + second:
					settled = true
				case "wpi " + second:
					if settled {
						t.Fatalf("an in-progress ack for %q after its settlement; log %v", second, log.all())
					}
				}
			}
			if !settled {
				t.Fatalf("%q was not settled; log %v", second, log.all())
			}
		})
	}
}

// r90Recv waits for c; the wait is a hang watchdog only.
func r90Recv[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("hang: gave up waiting")
		panic("unreachable")
	}
}

// r90FailingMsg is a message whose in-progress acks cannot be sent (the
// connection is gone); it reports each attempt.
type r90FailingMsg struct {
	jetstream.Msg
	tried chan struct{}
}

func (m *r90FailingMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return nil, errors.New("no metadata")
}

func (m *r90FailingMsg) InProgress() error {
	m.tried <- struct{}{}
	return nats.ErrConnectionClosed
}

// OnAckError "is not called for KeepAlive's in-progress acks: a lost one
// only lets the message be redelivered after AckWait". A message in flight
// whose in-progress acks all fail: once the ticker has tried twice (so the
// first attempt, and whatever followed its failure, is over: the ticker
// sends one at a time), OnAckError must not have heard of it.
func TestReview90OnAckErrorNotCalledForInProgressAcks(t *testing.T) {
	var mu sync.Mutex
	var heard []error
	s := &sourceRun{cfg: sourceConfig{keepAlive: time.Millisecond, onAckErr: func(err error) {
		mu.Lock()
		heard = append(heard, err)
		mu.Unlock()
	}}, inFlight: map[*msgAck]struct{}{}}
	m := &r90FailingMsg{tried: make(chan struct{})}
	s.track(m)
	stop := s.startKeepAlive()
	r90Recv(t, (<-chan struct{})(m.tried))
	r90Recv(t, (<-chan struct{})(m.tried))
	go func() { // the ticker may be trying again: let it, until it stopped
		for range m.tried {
		}
	}()
	stop()
	close(m.tried)
	mu.Lock()
	defer mu.Unlock()
	if len(heard) != 0 {
		t.Fatalf("OnAckError heard %v for in-progress acks", heard)
	}
}
