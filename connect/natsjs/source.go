// Package natsjs runs sluice pipelines on NATS JetStream: a source over a
// durable pull consumer, whose messages are acknowledged only once the sink
// has committed what they led to, and a sink that publishes with message
// ids, so that the server drops duplicates. Run the same pipeline in N
// processes on N machines against one consumer and they share the work,
// with at-least-once delivery; make the sink idempotent (a message id, an
// upsert, INSERT … ON CONFLICT DO NOTHING) and the effect is exactly once.
//
// # Outcomes
//
// Each message's fate maps to an acknowledgement (see stage.Ack):
//
//   - committed by the sink (or a duplicate it recognised, or dropped on
//     purpose by a Filter or a Handle policy): Ack;
//   - failed with a retryable error (a forwarded *stage.Error, a failed
//     commit, a FailFast error at this message): Nak with a delay that
//     grows with the delivery count;
//   - failed with an error wrapped by [Permanent], failed on its last
//     allowed delivery (MaxDeliver), or not decodable: Term, after
//     publishing it to the dead-letter subject if one is set
//     ([DeadLetter]);
//   - the run ended first (cancelled, a FailFast error at another message,
//     a crash): nothing; the server redelivers it once AckWait has passed.
//
// # Consumer settings
//
// The consumer is yours to create; these settings matter:
//
//   - AckPolicy: AckExplicitPolicy (required; the source checks).
//   - AckWait: longer than an item takes from source to sink, or use
//     [KeepAlive] to send in-progress acks while it is on its way;
//     otherwise the server redelivers items still in flight. It is also how
//     long a crashed replica's messages wait before another replica gets
//     them.
//   - MaxAckPending: at least the items in flight in one replica (the
//     pipeline's read-ahead: the first stage's workers and buffers, and
//     batch sizes) times the number of replicas, or replicas starve.
//   - MaxDeliver: the source terminates a message on its last delivery
//     (to the dead-letter subject), so that poison does not circulate.
//   - Retention: WorkQueuePolicy on the stream, so that acknowledged
//     messages are deleted and the stream's size is the work left.
package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/stage"
)

// Msg is a decoded message and its JetStream metadata.
type Msg[T any] struct {
	Value      T
	Subject    string
	Sequence   uint64 // the message's sequence in its stream
	Deliveries uint64 // 1 on the first delivery
	ID         string // its Nats-Msg-Id header, if it has one
}

// ErrPermanent marks an error that a redelivery cannot cure; wrap one with
// [Permanent].
var ErrPermanent = errors.New("natsjs: permanent failure")

// Permanent wraps err so that the message it concerns is terminated (and
// dead-lettered) instead of redelivered.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// SourceOption configures [Source]; make one with [DeadLetter],
// [KeepAlive], [Backoff] or [OnAckError].
type SourceOption struct{ apply func(*sourceConfig) }

type sourceConfig struct {
	dlq       jetstream.JetStream
	dlqSubj   string
	keepAlive time.Duration
	backoff   time.Duration
	maxDelay  time.Duration
	onAckErr  func(error)
}

// DeadLetter publishes each terminated message to subject through js (a
// stream must capture subject), with headers Sluice-Reason,
// Sluice-Subject, Sluice-Stream-Seq and Sluice-Deliveries. If the publish
// fails, the message is nak'ed instead, so that it is not lost.
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
// well under AckWait. KeepAlive panics if d <= 0.
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

// OnAckError is called when an acknowledgement cannot be sent (the
// connection is gone): the message will be redelivered. The default
// ignores it. OnAckError panics if f is nil.
func OnAckError(f func(error)) SourceOption {
	if f == nil {
		panic("sluice: natsjs.OnAckError: nil function")
	}
	return SourceOption{func(c *sourceConfig) { c.onAckErr = f }}
}

// Source returns a stream of the messages of the durable pull consumer
// cons, decoded by decode. A message is fetched only when a stage is ready
// for it (no prefetch beyond the pipeline's read-ahead); its
// acknowledgement travels with it and is settled when the sink has
// committed what it led to (see the package documentation, "Outcomes"). A
// message that decode rejects is terminated (and dead-lettered) at once
// and never enters the pipeline.
//
// The run's end stops the fetch: a drained run (stage.Until) stops taking
// messages and acknowledges what it took; a cancelled run acknowledges
// nothing more. An error of the consumer (other than a fetch timeout) ends
// the run with a *stage.SourceError.
func Source[T any](cons jetstream.Consumer, decode func([]byte) (T, error), opts ...SourceOption) stage.Stream[Msg[T]] {
	if cons == nil || decode == nil {
		panic("sluice: natsjs.Source: nil consumer or decode function")
	}
	cfg := sourceConfig{backoff: time.Second, maxDelay: time.Minute}
	for _, o := range opts {
		if o.apply == nil {
			panic("sluice: natsjs.Source: zero SourceOption")
		}
		o.apply(&cfg)
	}
	return stage.AckSource(func(context.Context) (func(context.Context) (Msg[T], stage.Ack, error), func()) {
		s := &sourceRun{cfg: cfg, inFlight: map[*msgAck]struct{}{}}
		info := cons.CachedInfo()
		if info != nil {
			s.maxDeliver = info.Config.MaxDeliver
			if info.Config.AckPolicy != jetstream.AckExplicitPolicy {
				s.err = fmt.Errorf("natsjs: consumer %q: AckPolicy is %v, want explicit", info.Name, info.Config.AckPolicy)
			}
		}
		stop := s.startKeepAlive()
		next := func(ctx context.Context) (Msg[T], stage.Ack, error) {
			if s.err != nil {
				return Msg[T]{}, nil, s.err
			}
			for {
				m, err := cons.Next(jetstream.FetchContext(ctx))
				switch {
				case ctx.Err() != nil:
					return Msg[T]{}, nil, ctx.Err()
				case errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded):
					continue // no message yet
				case err != nil:
					return Msg[T]{}, nil, err
				}
				a := s.track(m)
				v, err := decode(m.Data())
				if err != nil {
					a.Done(Permanent(fmt.Errorf("decode: %w", err)))
					continue
				}
				out := Msg[T]{Value: v, Subject: m.Subject(), Sequence: a.seq, Deliveries: a.deliveries, ID: m.Headers().Get(jetstream.MsgIDHeader)}
				return out, a, nil
			}
		}
		return next, stop
	})
}

// sourceRun is a Source in one run.
type sourceRun struct {
	cfg        sourceConfig
	maxDeliver int
	err        error

	mu       sync.Mutex
	inFlight map[*msgAck]struct{}
}

// msgAck is one message's acknowledgement.
type msgAck struct {
	s          *sourceRun
	msg        jetstream.Msg
	seq        uint64
	deliveries uint64
}

func (s *sourceRun) track(m jetstream.Msg) *msgAck {
	a := &msgAck{s: s, msg: m, deliveries: 1}
	if meta, err := m.Metadata(); err == nil {
		a.seq, a.deliveries = meta.Sequence.Stream, meta.NumDelivered
	}
	s.mu.Lock()
	s.inFlight[a] = struct{}{}
	s.mu.Unlock()
	return a
}

// Done maps the item's outcome to an acknowledgement.
func (a *msgAck) Done(err error) {
	s := a.s
	s.mu.Lock()
	delete(s.inFlight, a)
	s.mu.Unlock()
	var ackErr error
	switch {
	case err == nil:
		ackErr = a.msg.Ack()
	case errors.Is(err, ErrPermanent) || s.maxDeliver > 0 && a.deliveries >= uint64(s.maxDeliver):
		ackErr = a.terminate(err)
	default:
		delay := s.cfg.backoff << min(a.deliveries-1, 20)
		ackErr = a.msg.NakWithDelay(min(delay, s.cfg.maxDelay))
	}
	if ackErr != nil && s.cfg.onAckErr != nil {
		s.cfg.onAckErr(ackErr)
	}
}

// terminate dead-letters the message, if a subject is set, and terms it.
func (a *msgAck) terminate(reason error) error {
	s := a.s
	if s.cfg.dlq != nil {
		dead := nats.NewMsg(s.cfg.dlqSubj)
		dead.Data = a.msg.Data()
		dead.Header.Set("Sluice-Reason", reason.Error())
		dead.Header.Set("Sluice-Subject", a.msg.Subject())
		dead.Header.Set("Sluice-Stream-Seq", strconv.FormatUint(a.seq, 10))
		dead.Header.Set("Sluice-Deliveries", strconv.FormatUint(a.deliveries, 10))
		if id := a.msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
			dead.Header.Set(jetstream.MsgIDHeader, "dead-"+id) // a retried dead-letter is not stored twice
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.cfg.dlq.PublishMsg(ctx, dead); err != nil {
			return errors.Join(err, a.msg.Nak())
		}
	}
	return a.msg.TermWithReason(reason.Error())
}

// startKeepAlive starts the in-progress ticker, if configured, and returns
// the function that stops it (called once the run's goroutines have
// exited).
func (s *sourceRun) startKeepAlive() func() {
	if s.cfg.keepAlive <= 0 {
		return nil
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.cfg.keepAlive)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.mu.Lock()
				msgs := make([]jetstream.Msg, 0, len(s.inFlight))
				for a := range s.inFlight {
					msgs = append(msgs, a.msg)
				}
				s.mu.Unlock()
				for _, m := range msgs {
					m.InProgress()
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
