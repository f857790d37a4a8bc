package natsjs

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultReadAhead is the read-ahead of a [Source] unless told otherwise
// with [ReadAhead].
const DefaultReadAhead = 100

// MaxReadAhead is the largest [ReadAhead]: far more than a consumer's
// MaxAckPending lets one replica hold, and a buffer of 8 MiB.
const MaxReadAhead = 1 << 20

// ReadAhead sets how many messages a [Source] may hold that the pipeline
// has not taken yet: each run keeps one pull subscription, which asks the
// server for up to n messages at a time (nats.go's PullMaxMessages) and
// asks for more as the pipeline takes them. So one replica holds at most n
// messages beyond what its pipeline works on. (After a stall or a
// reconnect the server may deliver up to n more, which nats.go drops: see
// [Source].) More read-ahead hides the round trip to the server; it also
// counts against the consumer's MaxAckPending, and a message held when the
// run stops is nak'ed, to be redelivered at once. The subscription's
// buffer has room for n messages, made when a run starts (8 bytes each).
// A consumer's MaxRequestBatch, if set and below n, is the read-ahead
// instead (the server refuses a larger pull request). ReadAhead panics if
// n < 1 or n > [MaxReadAhead].
func ReadAhead(n int) SourceOption {
	if n < 1 || n > MaxReadAhead {
		panic(fmt.Sprintf("sluice: natsjs.ReadAhead: n = %d, want 1 to %d", n, MaxReadAhead))
	}
	return SourceOption{func(c *sourceConfig) { c.readAhead = n }}
}

// SourceOption configures [Source]; make one with [ReadAhead],
// [DeadLetter], [KeepAlive], [Backoff] or [OnAckError]. Options are checked
// when they are made: an invalid one panics there. The zero SourceOption
// is not an option: Source panics if given one.
type SourceOption struct{ apply func(*sourceConfig) }

type sourceConfig struct {
	readAhead int
	dlq       jetstream.JetStream
	dlqSubj   string
	keepAlive time.Duration
	backoff   time.Duration
	maxDelay  time.Duration
	onAckErr  func(error)
}

// DeadLetter publishes each terminated message to subject through js (a
// stream must capture subject): its data, with headers Sluice-Reason,
// Sluice-Subject, Sluice-Stream (its stream, after its domain and a dot if
// it has one), Sluice-Stream-Seq and Sluice-Deliveries (none of the
// message's own), and the message id (Nats-Msg-Id)
// "sluice-dead:<Sluice-Stream>:<consumer>:<created>:<Sluice-Stream-Seq>",
// where created is the consumer's creation time (Unix ns): a dead letter
// published again for the same message by the same consumer (a redelivery
// after a failed Term) is stored once, while no other dead letter shares
// its id: not one of the same message terminated by another consumer, nor
// one of a stream or consumer made again under its name, nor one of
// another stream with the same dead-letter subject. (A run started while
// the server was away takes the consumer's name and creation time, and its
// MaxDeliver, from what the consumer handle last learned (CachedInfo);
// when the handle knows none, it sends no id.) If the publish
// fails, the message is nak'ed instead, so that it is not lost, with the
// delay of a retryable failure ([Backoff]), so that a poison message does
// not circulate while the dead-letter subject takes nothing: it is
// delivered again, unless that was its last allowed delivery (MaxDeliver);
// then it stays in the stream, undelivered. A publish waits for the
// server's answer for up to 5 s, whatever the run's context: a run that
// ends, even cancelled, returns only once the dead letters of its messages
// are stored or have failed (a message on its last delivery that a
// cancelled run leaves is dead-lettered too; see the package
// documentation, "Outcomes"). js may be a wrapper of yours: a publish that
// panics is a failed one (the message is nak'ed as above, and the run's
// other messages still go back to the server when it stops) and fails the
// run with a *stage.SourceError wrapping the *stage.PanicError; one that
// calls runtime.Goexit is a failed one too, and ends its goroutine as any
// user code's Goexit does (see stage.ErrGoexit), after the run's other
// messages went back and [OnAckError] heard of every acknowledgement that
// could not be sent.
// DeadLetter panics if js is nil or subject is empty.
func DeadLetter(js jetstream.JetStream, subject string) SourceOption {
	if js == nil || subject == "" {
		panic("sluice: natsjs.DeadLetter: nil JetStream or empty subject")
	}
	return SourceOption{func(c *sourceConfig) { c.dlq, c.dlqSubj = js, subject }}
}

// KeepAlive sends an in-progress acknowledgement every d for each message
// still on its way through the pipeline, so that items that take longer
// than the consumer's AckWait are not redelivered meanwhile. d should be
// well under AckWait. Messages in the read-ahead, which the pipeline has
// not taken yet, are not kept alive: a pipeline that takes fewer than
// [ReadAhead] messages per AckWait sees some of them redelivered to other
// replicas meanwhile (a duplicate, never a loss); lower ReadAhead then.
// KeepAlive panics if d <= 0.
func KeepAlive(d time.Duration) SourceOption {
	if d <= 0 {
		panic(fmt.Sprintf("sluice: natsjs.KeepAlive: d = %v, want more than 0", d))
	}
	return SourceOption{func(c *sourceConfig) { c.keepAlive = d }}
}

// Backoff sets the redelivery delay of a nak'ed message: base·2^(n-1) after
// its n-th delivery, capped at max. The default is 1 s, capped at 1 min.
// Backoff panics if base < 0 or max < base.
func Backoff(base, max time.Duration) SourceOption {
	if base < 0 || max < base {
		panic(fmt.Sprintf("sluice: natsjs.Backoff: base %v, max %v; want 0 <= base <= max", base, max))
	}
	return SourceOption{func(c *sourceConfig) { c.backoff, c.maxDelay = base, max }}
}

// OnAckError is called when an acknowledgement (an Ack, a Nak, a Term)
// cannot be sent (the connection is gone), and when a dead letter's
// publish fails (with that error, joined with the Nak's if the Nak that
// replaces the Term failed too): the message will be redelivered (see
// [DeadLetter] for one on its last delivery). It is not called for [KeepAlive]'s in-progress acks: a lost
// one only lets the message be redelivered after AckWait. The default
// ignores it. A panic in f fails the run with a *stage.SourceError wrapping
// the *stage.PanicError (unless the run was cut short first), and does not
// keep the other messages from going back to the server when the run
// stops. OnAckError panics if f is nil.
func OnAckError(f func(error)) SourceOption {
	if f == nil {
		panic("sluice: natsjs.OnAckError: nil function")
	}
	return SourceOption{func(c *sourceConfig) { c.onAckErr = f }}
}
