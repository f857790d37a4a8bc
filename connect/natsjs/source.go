package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/internal/guard"
	"github.com/sluicedev/sluice/stage"
)

// Source returns a stream of the messages of the durable pull consumer
// cons, decoded by decode. Each run keeps one pull subscription to cons,
// which holds up to [ReadAhead] messages (100 by default) beyond what the
// pipeline has taken, and asks the server for more as the pipeline takes
// them. A message's acknowledgement travels with it and is settled when the
// sink has committed what it led to (see the package documentation,
// "Outcomes"). A message that decode rejects is terminated (and
// dead-lettered) at once, or by a later call (see below), and never enters
// the pipeline; a panic in decode
// ends the run with a *stage.SourceError wrapping a *stage.PanicError, and
// its message is nak'ed with the others the run held.
//
// The run's end stops the subscription. A drained run (stage.Until) takes
// no more messages and settles what it took; every message the run held
// but did not settle (received and not yet taken, or taken and cut short
// by a cancellation) is nak'ed once the run's goroutines have exited, so
// that another consumer gets it at once rather than after AckWait. (One
// on its last allowed delivery, which the server would not deliver again,
// goes to the dead-letter subject instead, if one is set; see the package
// documentation, "Outcomes".) A message the server was still sending as
// the subscription stopped never reaches the run: the server redelivers it
// once AckWait has passed (on its last allowed delivery, it is not
// delivered again and stays in the stream). If the subscription misses its heartbeats (a
// stalled connection or pull request), or the connection comes back after
// a drop, the source asks the server again on the same subscription and
// goes on (after a stall it first asks for the consumer's info: a consumer
// or stream deleted meanwhile, or limits lowered below what the run asks,
// see the package documentation, "Consumer settings", end the run with a
// *stage.SourceError; a deletion's wraps jetstream.ErrConsumerNotFound or
// ErrStreamNotFound, as at the run's start), and messages the server delivered
// into the stall are taken when they arrive, as far as the subscription
// has room for them: nats.go asks for a new batch while the stalled one
// may still come, and drops what finds no room (a "slow consumer" error,
// reported to the connection's error handler). The server redelivers those
// once AckWait has passed; none is lost. An error of the consumer ends the
// run with a *stage.SourceError wrapping it (a consumer deleted while the
// subscription is live: jetstream.ErrConsumerDeleted, as nats.go reports
// it; once stage.Until's stop is done, it ends the stream quietly instead,
// as any source's error then does). As a run
// starts, the source asks the server for the consumer's info (one round
// trip): a consumer or stream
// that does not exist then (errors.Is with jetstream.ErrConsumerNotFound or
// ErrStreamNotFound), or a consumer whose AckPolicy is not explicit, ends
// the run at once with a *stage.SourceError and nothing taken (so does a
// MaxRequestExpires below 1 s; pull requests keep within the consumer's
// MaxRequestBatch and MaxRequestExpires, see the package documentation,
// "Consumer settings"). If the
// server cannot be asked then (the ask gives up after the JetStream
// context's default timeout, 5 s unless set, or when the run's context
// ends), the run goes on and waits for it.
//
// Source is a waiting source (its next waits for the server) and
// stage.Interruptible: a cheap stage over it takes messages the
// subscription already holds in its consumer's goroutines. A consumer's
// look answers at once also when it meets a message decode rejects: with
// a DeadLetter subject, whose publish waits for the server, that message
// is terminated and dead-lettered by the next call that may wait (a
// stage's own worker asking for its next message), or at the run's stop if
// none comes; it stays in flight until then (kept alive by KeepAlive, if
// set). Without a DeadLetter subject, the look terminates it itself.
//
// Source panics if cons or decode is nil, or if an option is the zero
// SourceOption (programmer errors; the message starts with "sluice:").
func Source[T any](cons jetstream.Consumer, decode func([]byte) (T, error), opts ...SourceOption) stage.Stream[Msg[T]] {
	if cons == nil || decode == nil {
		panic("sluice: natsjs.Source: nil consumer or decode function")
	}
	cfg := sourceConfig{readAhead: DefaultReadAhead, backoff: time.Second, maxDelay: time.Minute}
	for _, o := range opts {
		if o.apply == nil {
			panic("sluice: natsjs.Source: zero SourceOption")
		}
		o.apply(&cfg)
	}
	return stage.Interruptible(stage.AckSource(func(ctx context.Context) (func(context.Context) (Msg[T], stage.Ack, error), func()) {
		s := &sourceRun{cfg: cfg, cons: cons, inFlight: map[*msgAck]struct{}{}}
		s.check(ctx)
		if s.err == nil {
			s.it, s.err = s.subscribe()
		}
		stopKeepAlive := s.startKeepAlive()
		next := func(ctx context.Context) (Msg[T], stage.Ack, error) {
			if ctx.Err() == nil {
				s.settleRejected()
			}
			for {
				m, err := s.next(ctx)
				if err != nil {
					return Msg[T]{}, nil, err
				}
				a := s.track(m)
				v, err := decode(m.Data())
				if err != nil {
					err = Permanent(fmt.Errorf("decode: %w", err))
					if ctx.Err() != nil && s.cfg.dlq != nil {
						// A try (or a run that ended meanwhile), which
						// answers at once: the dead letter's publish, which
						// waits for the server, is left to the next call
						// whose ctx is live, or to the stop (see reject).
						s.reject(a, err)
						return Msg[T]{}, nil, ctx.Err()
					}
					a.Done(err)
					if err := ctx.Err(); err != nil {
						// The run ended meanwhile: take no more messages
						// (they go back with the subscription at stop).
						return Msg[T]{}, nil, err
					}
					continue
				}
				out := Msg[T]{Value: v, Subject: m.Subject(), Sequence: a.seq, Deliveries: a.deliveries, ID: m.Headers().Get(jetstream.MsgIDHeader)}
				return out, a, nil
			}
		}
		stop := func() {
			if stopKeepAlive != nil {
				stopKeepAlive()
			}
			s.close()
		}
		return next, stop
	}))
}

// sourceRun is a Source in one run.
type sourceRun struct {
	cfg        sourceConfig // readAhead lowered to the consumer's MaxRequestBatch (see check)
	cons       jetstream.Consumer
	maxDeliver int
	pullExpiry time.Duration // the consumer's MaxRequestExpires, if below pullExpiry (see expiry)
	// deadID names this consumer in its dead letters' ids: its name and
	// creation time, "" if the run knows neither (see msgAck.terminate).
	deadID string
	err    error // the subscription could not be made, or failed: every next fails

	// Only next (never called concurrently) and close (once every
	// goroutine of the run has exited) touch it.
	it jetstream.MessagesContext

	mu       sync.Mutex
	inFlight map[*msgAck]struct{} // taken by the pipeline, not settled

	// rejected holds the messages decode rejected in a call whose ctx was
	// done, in flight until a live call or the stop terminates them (see
	// reject). Only next and close touch it, as it.
	rejected []*msgAck
}

// reject leaves a, which decode rejected with err (a Permanent error) in a
// call whose ctx was done, to be terminated and dead-lettered by the next
// call whose ctx is live (settleRejected), or by the stop (giveBack): such
// a call answers at once, as stage.Interruptible asks, and the dead
// letter's publish waits for the server (up to 5 s). The message stays in
// flight meanwhile, kept alive by KeepAlive if set; no live call comes
// only if the run ends, whose stop terminates it.
func (s *sourceRun) reject(a *msgAck, err error) {
	a.rejected = err
	s.rejected = append(s.rejected, a)
}

// settleRejected terminates the messages reject left, in a call whose ctx
// is live, one at a time: if one panics (the engine ends the run), the
// rest are still in flight and the stop terminates them.
func (s *sourceRun) settleRejected() {
	for len(s.rejected) > 0 {
		a := s.rejected[0]
		s.rejected[0] = nil
		s.rejected = s.rejected[1:]
		a.Done(a.rejected)
	}
}

// pullExpiry is how long one pull request waits at the server; the
// server sends heartbeats at half of it. A subscription that misses two in
// a row (the connection or the pull request stalled) asks the server
// again, on the same subscription (nats.go does, within Next), so that
// messages the server delivered into the stall are still taken when they
// arrive. (A new subscription would leave them to an abandoned one, to
// wait out AckWait.) nats.go's subscription buffer has room for ReadAhead
// messages, and the new batch it asks for does not count the stalled one:
// when both arrive while the pipeline takes nothing, the excess is dropped
// and waits out AckWait (TestReview3StallUnderASlowPipeline).
const pullExpiry = 5 * time.Second

// check asks the server for the consumer's info as the run starts (one
// round trip): a consumer (or stream) that does not exist fails the run at
// once (a pull subscription on it would only miss heartbeats, which the
// source takes for a stall, and wait for ever), and so does one whose
// AckPolicy is not explicit. If the server cannot be asked now (away, or
// the run's ctx ended), the check falls back on what the handle knew, and
// the subscription waits for the server.
func (s *sourceRun) check(ctx context.Context) {
	info, err := s.cons.Info(ctx)
	if err != nil {
		known := s.cons.CachedInfo()
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			if known != nil {
				err = fmt.Errorf("consumer %q: %w", known.Name, err)
			}
			s.err = fmt.Errorf("natsjs: %w", err)
			return
		}
		if info = known; info == nil {
			return
		}
	}
	s.maxDeliver = info.Config.MaxDeliver
	if info.Name != "" && !info.Created.IsZero() {
		s.deadID = info.Name + ":" + strconv.FormatInt(info.Created.UnixNano(), 10)
	}
	if info.Config.AckPolicy != jetstream.AckExplicitPolicy {
		s.err = fmt.Errorf("natsjs: consumer %q: AckPolicy is %v, want explicit", info.Name, info.Config.AckPolicy)
	}
	// The server refuses a pull request over the consumer's limits (a 409
	// that nats.go ignores, asking again for ever): ask within them.
	if b := info.Config.MaxRequestBatch; b > 0 && b < s.cfg.readAhead {
		s.cfg.readAhead = b
	}
	if e := info.Config.MaxRequestExpires; e > 0 && e < s.expiry() {
		if e < time.Second { // nats.go asks for 1 s at least
			s.err = fmt.Errorf("natsjs: consumer %q: MaxRequestExpires is %v, want 1s or more (or none)", info.Name, e)
		}
		s.pullExpiry = e
	}
}

// expiry is how long each pull request waits at the server: pullExpiry,
// or the consumer's MaxRequestExpires if shorter (see check).
func (s *sourceRun) expiry() time.Duration {
	if s.pullExpiry > 0 {
		return s.pullExpiry
	}
	return pullExpiry
}

// subscribe starts the run's pull subscription.
func (s *sourceRun) subscribe() (jetstream.MessagesContext, error) {
	return s.cons.Messages(
		jetstream.PullMaxMessages(s.cfg.readAhead),
		jetstream.PullExpiry(s.expiry()),
		jetstream.WithMessagesErrOnMissingHeartbeat(true)) // next looks at the consumer, then nats.go asks again
}

// next waits for the next message, or for ctx to end.
func (s *sourceRun) next(ctx context.Context) (jetstream.Msg, error) {
	if s.err != nil {
		return nil, s.err
	}
	for {
		m, err := s.it.Next(jetstream.NextContext(ctx))
		switch {
		case err == nil:
			return m, nil // even if ctx ended meanwhile: the run settles or naks it
		case ctx.Err() != nil && (err == ctx.Err() || errors.Is(err, jetstream.ErrNoHeartbeat)):
			return nil, ctx.Err() // the wait ended with ctx (nats.go returns ctx.Err() itself)
		case ctx.Err() != nil:
			// The subscription's own error (the consumer deleted: nats.go
			// has stopped the subscription), met by a next whose ctx
			// ended, such as a try (see stage.Interruptible), whose ctx is
			// done from the start: it answers "nothing ready", and the
			// error is kept for the next call, which a live run makes and
			// reports. (Returned now, it would be lost for a try, and the
			// run would report the closed subscription instead.)
			s.err = err
			return nil, ctx.Err()
		case errors.Is(err, jetstream.ErrNoHeartbeat):
			// A stall: nats.go asks the server again at the next call.
			// First, is the consumer still there, and does it still take
			// the run's pull requests? (The server's answers that say no
			// are ignored by nats.go, which would ask for ever.)
			if err := s.recheck(ctx); err != nil {
				s.err = err
				return nil, err
			}
		default:
			return nil, err
		}
	}
}

// recheck asks the server for the consumer's info after a stall (one round
// trip, abandoned when ctx ends): a consumer or stream that no longer
// exists, or limits lowered below what the run's pull requests ask
// (MaxRequestBatch below the read-ahead, MaxRequestExpires below the pull
// expiry), which the server refuses, fail the run. If the server cannot be
// asked, the stall goes on as before.
func (s *sourceRun) recheck(ctx context.Context) error {
	name := ""
	if known := s.cons.CachedInfo(); known != nil {
		name = known.Name
	}
	info, err := s.cons.Info(ctx)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("natsjs: consumer %q: %w", name, err)
	case err != nil:
		return nil
	}
	if b := info.Config.MaxRequestBatch; b > 0 && b < s.cfg.readAhead {
		return fmt.Errorf("natsjs: consumer %q: MaxRequestBatch lowered to %d during the run, below its read-ahead of %d: the server refuses its pull requests", info.Name, b, s.cfg.readAhead)
	}
	if e := info.Config.MaxRequestExpires; e > 0 && e < s.expiry() {
		return fmt.Errorf("natsjs: consumer %q: MaxRequestExpires lowered to %v during the run, below its pull requests' %v: the server refuses them", info.Name, e, s.expiry())
	}
	return nil
}

// close ends the run's subscription and gives back every message the run
// held but did not settle: received and never taken, or taken and left by
// a run that ended first (see giveBack). It runs once every goroutine of
// the run has exited, so no acknowledgement can come any more.
func (s *sourceRun) close() {
	var left []*msgAck
	if s.it != nil {
		for _, m := range drain(s.it) {
			left = append(left, s.ackOf(m))
		}
	}
	s.mu.Lock()
	for a := range s.inFlight {
		left = append(left, a)
	}
	clear(s.inFlight)
	s.mu.Unlock()
	// Every message goes back before OnAckError hears of any failure, so
	// that nothing it does (a panic, a runtime.Goexit) keeps one from going
	// back. Its first panic is raised then (the engine makes it the run's
	// *stage.SourceError), and it is called no more; else the first panic
	// of a dead letter's publish, if any. Deferred, so that OnAckError
	// hears of every failure also when a dead letter's publish calls
	// runtime.Goexit (which ends the goroutine once the defers ran).
	var gb giveBacks
	defer gb.report(s.cfg.onAckErr)
	gb.all(left)
}

// report tells onAckErr (if set) of every give-back that failed, then
// raises the first panic: onAckErr's, which ends the calls, else a dead
// letter's publish's.
func (gb *giveBacks) report(onAckErr func(error)) {
	if onAckErr != nil {
		for _, err := range gb.failed {
			if rec := guard.Call(func() { onAckErr(err) }); rec != nil {
				panic(&stage.SourceError{Err: &stage.PanicError{Value: rec.Value, Stack: rec.Stack}})
			}
		}
	}
	if gb.panicked != nil {
		panic(&stage.SourceError{Err: gb.panicked})
	}
}

// giveBacks gives back the messages a run left (see close), each on its
// own: a dead letter's publish (through the user's JetStream) that
// panics, or calls runtime.Goexit, at one message keeps none of the others
// from going back.
type giveBacks struct {
	failed   []error           // acknowledgements that could not be sent
	panicked *stage.PanicError // the first panic of a give-back
}

// all gives back every message of left.
func (gb *giveBacks) all(left []*msgAck) {
	i := 0
	defer func() {
		if i < len(left) { // a Goexit in left[i]'s give-back (which nak'ed it): on with the rest
			gb.all(left[i+1:])
		}
	}()
	for ; i < len(left); i++ {
		var err error
		if rec := guard.Call(func() { err = left[i].giveBack() }); rec != nil {
			if gb.panicked == nil {
				gb.panicked = &stage.PanicError{Value: rec.Value, Stack: rec.Stack}
			}
			continue
		}
		if err != nil {
			gb.failed = append(gb.failed, err)
		}
	}
}

// drain stops it and returns the messages it had received and not handed
// out. (The wait is a safety bound: a drained subscription ends its
// stream of messages as soon as the server has answered its unsubscribe.)
func drain(it jetstream.MessagesContext) []jetstream.Msg {
	it.Drain()
	var left []jetstream.Msg
	for {
		m, err := it.Next(jetstream.NextMaxWait(drainWait))
		if err != nil { // closed once drained (or timed out, or the connection is gone)
			return left
		}
		left = append(left, m)
	}
}

// drainWait bounds the wait for a drained subscription's last messages.
const drainWait = 2 * time.Second
