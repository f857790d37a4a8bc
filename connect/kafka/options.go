package kafka

import (
	"fmt"
	"time"
)

// Option configures [Source]; make one with [MaxPending], [CommitInterval],
// [Attempts], [DeadLetter] or [OnEvent]. Options are checked when they are
// made: an invalid one panics there. Options are applied in order: of two
// that set the same thing, the last wins.
type Option struct{ apply func(*config) }

type config struct {
	maxPending int
	interval   time.Duration
	attempts   int
	dlq        string
	onEvent    func(Event)
}

func defaults() config {
	return config{maxPending: 1000, interval: time.Second, attempts: 3}
}

// MaxPending sets how many records of one partition may be held at once,
// from its watermark on: taken by the pipeline, waiting to be tried again,
// polled and not taken yet, or settled behind one that is not. A full
// partition's fetches pause until its oldest record is settled (the
// watermark moves). It bounds the memory a partition holds and what its
// next owner repeats after a crash or a rebalance. The default is 1000.
// MaxPending panics if n < 1.
func MaxPending(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("sluice: kafka.MaxPending: n = %d, want 1 or more", n))
	}
	return Option{func(c *config) { c.maxPending = n }}
}

// CommitInterval sets how often the source commits its watermarks while
// the run goes on (it also commits when a partition is revoked and when the
// run stops). The default is 1 s. CommitInterval panics if d <= 0.
func CommitInterval(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("sluice: kafka.CommitInterval: d = %v, want more than 0", d))
	}
	return Option{func(c *config) { c.interval = d }}
}

// Attempts sets how many times a record is tried before it goes to the
// dead-letter topic (or, without one, fails the run). The default is 3.
// Attempts panics if n < 1.
func Attempts(n int) Option {
	if n < 1 {
		panic(fmt.Sprintf("sluice: kafka.Attempts: n = %d, want 1 or more", n))
	}
	return Option{func(c *config) { c.attempts = n }}
}

// DeadLetter sends a record that failed [Attempts] times, or that does not
// decode, to topic (through the source's own client), with its key, value
// and headers and these headers added: sluice-reason, sluice-topic,
// sluice-partition, sluice-offset, sluice-attempts (the tries it had: 1
// for a record that did not decode). The record is settled
// once the broker confirmed the dead letter; if that fails, the run fails
// and the record is not committed. DeadLetter panics if topic is empty.
func DeadLetter(topic string) Option {
	if topic == "" {
		panic("sluice: kafka.DeadLetter: empty topic")
	}
	return Option{func(c *config) { c.dlq = topic }}
}

// OnEvent calls f for what the source does with the group: partitions
// assigned, revoked or lost, and every commit (with its offsets). Within a
// run, f is called from the source's goroutines one call at a time (runs
// of one Source at the same time are several members: they may call f at
// once), each call on a goroutine of its own that the source waits for; it
// should be quick. A runtime.Goexit in f (t.Fatal) fails the run with
// stage.ErrGoexit, and f is called no more. A panic in f fails the run with a
// *stage.SourceError wrapping a *stage.PanicError (unless the run's result
// was decided first: the sink stopped it with ErrStop or sink.First, see
// stage.Source), and f is called no more in that run. OnEvent panics if f
// is nil.
func OnEvent(f func(Event)) Option {
	if f == nil {
		panic("sluice: kafka.OnEvent: nil function")
	}
	return Option{func(c *config) { c.onEvent = f }}
}

// Event is something the source did, for [OnEvent].
type Event struct {
	Kind       EventKind
	Member     string                     // this member's id in the group
	Partitions map[string][]int32         // Assigned, Revoked, Lost
	Offsets    map[string]map[int32]int64 // Committed: the offsets committed
	Err        error                      // Committed: nil, or why the commit failed
}

// EventKind says what an [Event] is.
type EventKind int

const (
	Assigned EventKind = iota + 1
	Revoked
	Lost
	Committed
)

func (k EventKind) String() string {
	switch k {
	case Assigned:
		return "assigned"
	case Revoked:
		return "revoked"
	case Lost:
		return "lost"
	case Committed:
		return "committed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}
