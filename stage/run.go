package stage

import (
	"context"
	"errors"

	"github.com/sluicedev/sluice/internal/guard"
)

// Run is the primitive every sink is written with. It runs s and calls f,
// one call at a time and in the caller's goroutine, for each item that
// reaches the end of s: f(ctx, v, nil) for a value, f(ctx, zero, err) for an
// error forwarded by a stage with the [Forward] policy. ctx is the run's
// context, derived from the ctx passed to Run. Run takes what the last
// stage has ready in one batch and calls f for each of its items; the
// batch counts in the stage's read-ahead (Workers plus Buffer; twice the
// Workers plus Buffer for an Ordered stage) until f has seen all of it,
// and may hold all of it, so an f that waits for the pipeline to take
// further items may wait for ever, whatever the Buffer.
// (An item handed to Run while it waited for one is taken at once, as with
// an unbuffered channel: it does not count, so the pipeline may then hold
// one item more than the read-ahead that f has not seen yet.)
//
// f returns nil to go on, [ErrStop] to end the run early without an error
// (or an error that wraps it: see [IsStop]), or any other error to end the
// run with it, as a [FailFast] item error does: the run's context is
// cancelled with that error as its cause and Run returns it (unless a
// FailFast error had cut the run short already: the first error wins). An item for which f returned nil or ErrStop is
// committed (its acknowledgement, if any, is released); one for which f
// returned an error failed with it, unless the run was ending already when
// f returned (cancelled, or failed elsewhere) and the error says so (it is,
// for errors.Is, context.Canceled, context.DeadlineExceeded or the run's
// cause): then the commit was cut short, and the item's fate is unknown
// (its acknowledgement is not told, as for a stage's call cut short; a
// forwarded error's item is told that error, as when f returns nil). A
// panic in f is not recovered: Run cancels the run, waits for it, and lets
// the panic continue (the sinks that take user callbacks turn their panics
// into errors themselves).
//
// Run returns only when every goroutine of the run has exited: each has
// signalled its end, after which it runs no code but its return (as with
// sync.WaitGroup, runtime.NumGoroutine may still count it for an instant).
// Its result depends only on what f saw and returned, never on timing (f
// saw the end of s when Run, asking for the next item after f returned for
// the last one, found none: a cancellation of ctx while f works on the
// last item comes before the end):
//
//   - nil when f returned ErrStop, whatever else happened meanwhile (a
//     failure of the run after that, such as a panic in an [Ack]'s Done,
//     no longer changes the result);
//   - the error f returned, or the error that had cut the run short before;
//   - the error that cut the run short before f saw the end of s: the first
//     [FailFast] *[Error] (or a [Handle] or [Budget] policy's error), or,
//     when ctx was cancelled, an error for which
//     errors.Is(err, context.Canceled) (or context.DeadlineExceeded) holds
//     — even if a source had failed before, since the items before the
//     failure were not all delivered;
//   - once f saw the end of s: the *[SourceError] if a source failed (every
//     item produced before the failure was delivered), else nil.
//
// Forwarded errors are f's to collect; Run does not return them. Run
// panics, before it starts the run, if ctx or f is nil or s is the zero
// Stream (programmer errors; the message starts with "sluice:").
func Run[T any](ctx context.Context, s Stream[T], f func(ctx context.Context, v T, err error) error) error {
	s.check("stage.Run")
	checkFunc(f == nil, "stage.Run", "function")
	r := newRun(ctx)
	defer r.finish() // also when f panics
	p := s.openFor(r, 1).next()
	if !r.start() {
		r.finish()
		return r.result(ctx) // the check's failure, or the parent's end that came first
	}
	// deliver commits one item: its acknowledgement is released once f
	// returned, with f's error or the forwarded error it carries. The run's
	// outcome is decided before the release, so that a panic in an Ack's
	// Done cannot take the place of what f decided.
	deliver := func(it item[T]) bool {
		failure := it.failure()
		err := f(r.ctx, it.v, failure)
		switch {
		case err == nil:
			it.ack.release(failure)
			return true
		case IsStop(err):
			r.stopped = true
			it.ack.release(failure)
		case (r.ending() || r.parentClosed()) && r.endedBy(err):
			// (parentClosed: a standard parent closes its Done before it
			// cancels the run's context, and sink.Chan waits on both.)
			// The run was ending, and f failed because it did: the commit
			// was cut short (sink.Chan's wait for room, a write that saw
			// the context end), as a stage's call is (see engine.go), and
			// the item's fate is unknown, unless it came as a forwarded
			// error: that failure is its fate. The run has its error already.
			if failure != nil {
				it.ack.release(failure)
			} else {
				it.ack.abandon()
			}
		default:
			r.failAndRelease(err, it.ack)
		}
		return false
	}
	var room *batchRoom[T] // the batch's, from a pool, back to it once the run finished
	var batch []item[T]
	if bp, ok := p.(batchPuller[T]); ok {
		// Take every ready item at once; f sees them one at a time.
		n := 16 // grows to the most ever ready at once
		if l := s.Len(); l >= 0 {
			n = max(min(l, n), 1)
		}
		room = takeBatch[T](n)
		batch = room.items
	batches:
		for {
			var ok bool
			if batch, ok = bp.pullAll(batch[:0]); !ok {
				r.sawEnd()
				break
			}
			for i := range batch {
				if r.ending() || !deliver(batch[i]) {
					break batches
				}
				batch[i] = item[T]{} // drop the reference once delivered
			}
		}
	} else {
		for {
			it, _, ok := p.pull()
			if !ok {
				r.sawEnd()
				break
			}
			if r.ending() || !deliver(it) { // no item starts once the run is cancelled
				break
			}
		}
	}
	r.finish()
	if room != nil {
		room.put(batch)
	}
	return r.result(ctx)
}

// endedBy reports whether err says that the run's end made it: the
// context's error (context.Canceled, context.DeadlineExceeded) or the run's
// cause, as errors.Is finds them. A panic never says so, whatever its
// value (a *PanicError unwraps to a panicked error: panic(ctx.Err()) is a
// failure, as IsStop has it). err's methods are user code: a panic in them
// is a no.
func (r *run) endedBy(err error) (yes bool) {
	guard.Call(func() {
		if pe := (*PanicError)(nil); errors.As(err, &pe) {
			return
		}
		cause := r.cause()
		yes = errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
			cause != nil && errors.Is(err, cause)
	})
	return yes
}
