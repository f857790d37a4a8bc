package natsjs

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// msgAck is one message's acknowledgement.
type msgAck struct {
	s          *sourceRun
	msg        jetstream.Msg
	seq        uint64
	deliveries uint64

	// settled is set by Done before it sends the acknowledgement, under
	// mu, which KeepAlive holds while it sends an in-progress ack: so no
	// in-progress ack follows the settlement on the wire (the server
	// resets a delayed Nak's timer on one, whatever came before).
	mu      sync.Mutex
	settled bool

	rejected error // decode's Permanent error, if terminating it was left to later (see reject)
}

// inProgress sends an in-progress ack unless the message was settled.
func (a *msgAck) inProgress() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.settled {
		a.msg.InProgress()
	}
}

// track makes m's acknowledgement and counts it as in flight until it is
// settled.
func (s *sourceRun) track(m jetstream.Msg) *msgAck {
	a := s.ackOf(m)
	s.mu.Lock()
	s.inFlight[a] = struct{}{}
	s.mu.Unlock()
	return a
}

// ackOf makes m's acknowledgement.
func (s *sourceRun) ackOf(m jetstream.Msg) *msgAck {
	a := &msgAck{s: s, msg: m, deliveries: 1}
	if meta, err := m.Metadata(); err == nil {
		a.seq, a.deliveries = meta.Sequence.Stream, meta.NumDelivered
	}
	return a
}

// lastDelivery reports whether this is the message's last allowed
// delivery (MaxDeliver): the server will not deliver it again.
func (a *msgAck) lastDelivery() bool {
	return a.s.maxDeliver > 0 && a.deliveries >= uint64(a.s.maxDeliver)
}

// errUnprocessed is the dead-letter reason of a message that a run held
// on its last allowed delivery and ended without processing.
var errUnprocessed = errors.New("natsjs: the run ended before the message was processed, on its last allowed delivery")

// giveBack returns a message the run held but did not settle: nak'ed, so
// that another consumer gets it at once; on its last allowed delivery,
// which a Nak would leave in the stream undelivered, dead-lettered
// instead, if a dead-letter subject is set.
func (a *msgAck) giveBack() error {
	if a.rejected != nil { // decode rejected it: terminated, as it would have been at once
		// (Its Error cannot panic: fmt.Errorf made it, and called decode's
		// error's Error then, in the call that rejected it.)
		return a.terminate(a.rejected.Error())
	}
	if a.lastDelivery() && a.s.cfg.dlq != nil {
		return a.terminate(errUnprocessed.Error())
	}
	return a.msg.Nak()
}

// Done maps the item's outcome to an acknowledgement.
func (a *msgAck) Done(err error) {
	s := a.s
	// Classify first: errors.Is and Error call err's own methods, user code
	// that may panic (the engine makes that the run's *stage.SourceError).
	// Until then the message stays in flight, so that if one does, the
	// run's stop naks it rather than leave it unsettled until AckWait.
	terminal, reason := false, ""
	if err != nil && (errors.Is(err, ErrPermanent) || a.lastDelivery()) {
		terminal, reason = true, err.Error()
	}
	s.mu.Lock()
	delete(s.inFlight, a)
	s.mu.Unlock()
	a.mu.Lock() // after an in-progress ack on its way (see settled)
	a.settled = true
	a.mu.Unlock()
	var ackErr error
	switch {
	case err == nil:
		ackErr = a.msg.Ack()
	case terminal:
		ackErr = a.terminate(reason)
	default:
		ackErr = a.nakRetry()
	}
	if ackErr != nil && s.cfg.onAckErr != nil {
		s.cfg.onAckErr(ackErr)
	}
}

// terminate dead-letters the message, if a subject is set, and terms it;
// if the dead letter cannot be published, it naks the message instead,
// with the delay of a retryable failure.
func (a *msgAck) terminate(reason string) error {
	s := a.s
	if s.cfg.dlq != nil {
		dead := nats.NewMsg(s.cfg.dlqSubj)
		dead.Data = a.msg.Data()
		dead.Header.Set("Sluice-Reason", reason)
		dead.Header.Set("Sluice-Subject", a.msg.Subject())
		dead.Header.Set("Sluice-Stream-Seq", strconv.FormatUint(a.seq, 10))
		dead.Header.Set("Sluice-Deliveries", strconv.FormatUint(a.deliveries, 10))
		if meta, err := a.msg.Metadata(); err == nil {
			stream := meta.Stream
			if meta.Domain != "" {
				stream = meta.Domain + "." + stream
			}
			dead.Header.Set("Sluice-Stream", stream)
			// One id per termination of a message by one consumer (its
			// name and creation time: a consumer or stream made again
			// under its name, or two consumers of one stream, give other
			// ids): a dead letter published again for it (a redelivery
			// after a failed Term) is stored once, and no two
			// terminations share one (the publisher's id could: two
			// streams, or one id again once the duplicate window passed),
			// which would drop the second as a duplicate while its
			// message is terminated.
			if s.deadID != "" {
				dead.Header.Set(jetstream.MsgIDHeader, "sluice-dead:"+stream+":"+s.deadID+":"+strconv.FormatUint(meta.Sequence.Stream, 10))
			}
		}
		if err := a.publishDead(dead); err != nil {
			// Nak'ed with a retryable failure's delay: at once, a poison
			// message with a dead-letter subject that takes nothing would
			// circulate as fast as the server redelivers it.
			return errors.Join(err, a.nakRetry())
		}
	}
	return a.msg.TermWithReason(reason)
}

// publishDead publishes the dead letter of the message. The dead-letter
// JetStream is the user's (it may be a wrapper of theirs): if its publish
// panics or calls runtime.Goexit, the message is nak'ed as for a failed
// publish before that goes on (a panic then fails the run with a
// *stage.SourceError wherever the engine called: Done, next or stop), so
// that the message is not left unsettled until AckWait.
func (a *msgAck) publishDead(dead *nats.Msg) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	returned := false
	defer func() {
		if !returned {
			a.nakRetry()
		}
	}()
	_, err := a.s.cfg.dlq.PublishMsg(ctx, dead)
	returned = true
	return err
}

// nakRetry naks the message with the delay of a retryable failure.
func (a *msgAck) nakRetry() error {
	return a.msg.NakWithDelay(nakDelay(a.s.cfg.backoff, a.s.cfg.maxDelay, a.deliveries))
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
				acks := make([]*msgAck, 0, len(s.inFlight))
				for a := range s.inFlight {
					acks = append(acks, a)
				}
				s.mu.Unlock()
				for _, a := range acks {
					a.inProgress()
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

// nakDelay is the redelivery delay after the n-th delivery (see Backoff):
// base·2^(n-1), capped at max, without overflow at any n.
func nakDelay(base, max time.Duration, n uint64) time.Duration {
	if base <= 0 {
		return 0
	}
	d := base
	for i := uint64(1); i < n; i++ { // at most 63 doublings before d passes max/2
		if d > max/2 {
			return max
		}
		d *= 2
	}
	return min(d, max)
}
