package natsjs_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// r93TermOn is a message that records the goroutine that terminates it.
type r93TermOn struct {
	jetstream.Msg
	mu  *sync.Mutex
	gid map[string]int64 // data -> the goroutine of its first TermWithReason
}

func (m *r93TermOn) TermWithReason(reason string) error {
	m.mu.Lock()
	if _, ok := m.gid[string(m.Data())]; !ok {
		m.gid[string(m.Data())] = r38Gid()
	}
	m.mu.Unlock()
	return m.Msg.TermWithReason(reason)
}

// TestReview93TryTermsARejectionAtOnceWithoutADeadLetter
//
// Source: "A message that decode rejects is terminated (and dead-lettered)
// at once, or by a later call (see below)", and below, only "with a
// DeadLetter subject, whose publish waits for the server," is a message a
// consumer's look met left to "the next call that may wait". Without a
// DeadLetter, a try (a call whose context is done from the start: see
// stage.Interruptible) that meets a message decode rejects terminates it
// itself: there is no publish to wait for.
//
// A cheap Map of three workers gives a place to the sink's goroutine; a
// try of the sink's goroutine meets an undecodable message (see
// tryMeetsBad). It must be terminated by that call, on the sink's
// goroutine, and exactly once. A source that left it to the next live
// call (as it does with a DeadLetter) terminates it on a goroutine of the
// Map's own, which asks for messages with a live context (the sink's
// goroutine only tries).
func TestReview93TryTermsARejectionAtOnceWithoutADeadLetter(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	l := r13WatchAcks(t, w.url, "WORK")
	f := newTryForce(t, w)
	var mu sync.Mutex
	termedBy := map[string]int64{}
	f.wrap = func(m jetstream.Msg) jetstream.Msg { return &r93TermOn{Msg: m, mu: &mu, gid: termedBy} }
	b := tryMeetsBad(f, nil, false, false)
	seq := f.seq(b.target)
	r38WaitFor(t, "the Term of "+b.target, func() bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := termedBy[b.target]
		return ok
	})
	mu.Lock()
	by := termedBy[b.target]
	mu.Unlock()
	if by != f.sinkG.Load() {
		t.Errorf("%s, which a try of the sink's goroutine (%d) met, was terminated on goroutine %d: not by the call that met it", b.target, f.sinkG.Load(), by)
	}
	b.releaseR.fire()
	select {
	case <-f.rTaken.ch:
	case <-after(r38Watchdog):
		t.Fatal("hang: the sink never took r")
	}
	b.cancel()
	if err := r38Recv(t, "the run's end", b.errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want context.Canceled", err)
	}
	l.sync(t, f.rnc)
	var kinds []string
	for _, a := range l.all {
		if a.seq == seq && a.kind != "wpi" {
			kinds = append(kinds, a.kind)
		}
	}
	if len(kinds) != 1 || kinds[0] != "term" {
		t.Errorf("%s (seq %d): settlements on the wire %v, want one term", b.target, seq, kinds)
	}
}
