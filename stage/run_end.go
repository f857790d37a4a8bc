package stage

// How a run ends: its failures, a Goexit in user code, and what the sink
// returns (result).

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/sluicedev/sluice/internal/guard"
)

// fail ends the run with err: the cause of the cancellation, and what the
// sink returns if it is the first and the run was still live. Every failure
// of the run goes through it but the sink's callback's (sinkFailed): a
// stage's policy, an observer's panic (while the pipeline is opened or
// later), a check of the opened pipeline, a panic in an Ack's Done.
//
// The failure and the cause are one decision, under mu (see cancelLocked): a
// failure is recorded only if its cancellation is the one that ended the
// context, so that calls in flight see as the cause what the sink returns.
// (A parent's cancellation reaches the context without mu: if it came
// first, the run was cut short (see cutShortLocked), and no failure is
// recorded.) So too when the parent ended first and its end is still on
// its way to the run's context (see parentEnding: a parent of the caller's
// own type, which the run hears from its watcher a moment later): the
// failure is not the run's, and the run ends with the parent's cause, as
// under a standard parent, whose end reaches the context at once. (A
// stage's failing item's Ack is still told: see stepper.failRun.) It asks
// the parent nothing: its Err may wait for the run's end.
//
// It is recorded before the context is cancelled: cancelling it calls the
// parent's methods (a user's, if the parent is a context type of the
// user's), which may end this goroutine (runtime.Goexit), and they are
// called only by the cancellation that ends the context, this one. mu is
// unlocked by a defer, and the wake-up is started before (see
// cancelLocked).
func (r *run) fail(err error) { r.failWith(err, false) }

// sinkFailed is fail for the error of the sink's callback, which is the
// run's whatever came before it but a cancellation (see Run): a parent's
// end still on its way does not take its place. (Dropped, it would let the
// sink return at once, and finish cancel the run's context with its own
// cause before the parent's end reached it: calls in flight would see
// "run finished" while the sink returned the parent's error, as
// TestReview43CallbackEnders saw in 2 of 4,800 runs under a standard parent,
// which closes its Done before it cancels its children. A stage's failure
// leaves the sink waiting for the end instead.)
func (r *run) sinkFailed(err error) { r.failWith(err, true) }

func (r *run) failWith(err error, sink bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !sink && r.parentEnding() {
		return
	}
	live := r.failure == nil && !r.cancelled()
	if live {
		r.failure = err
	}
	r.cancelLocked(err)
	if live && r.cutShortLocked() {
		r.failure = nil
	}
}

// failAndRelease fails the run with err, the error of the sink's callback
// for an item, then tells the item's acknowledgement. It tells it from a
// deferred call: failing the run cancels its context, which calls the
// caller's context's methods, and a Goexit there ends the sink's goroutine
// (run_userctx.go) after the run recorded the failure; the Ack must still
// learn it.
func (r *run) failAndRelease(err error, a *ackNode) {
	defer a.release(err)
	r.sinkFailed(err)
}

// cause is the run's cause (context.Cause of its context). Over can be
// seen an instant before the context is cancelled, but both are set under
// mu (see cancelLocked): a caller that saw the run over and finds no cause
// looks again under mu, and finds the cause.
func (r *run) cause() error {
	if c := context.Cause(r.ctx); c != nil || !r.over.Load() {
		return c
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return context.Cause(r.ctx)
}

// sameError reports whether a and b are the very same error value: the
// same dynamic type and the same data word. It answers "is the context's
// cause the error I cancelled it with" (context stores the interface value
// it was given), also for values that == cannot compare (an uncomparable
// type, or a comparable one holding one), for which == panics.
func sameError(a, b error) bool {
	return *(*[2]unsafe.Pointer)(unsafe.Pointer(&a)) == *(*[2]unsafe.Pointer)(unsafe.Pointer(&b))
}

// sourceFailed ends the run's input with err: sources stop (one waiting in
// next is woken through the sources' context), the rest drains.
func (r *run) sourceFailed(err error) {
	r.mu.Lock()
	if r.srcErr == nil && !r.cancelled() {
		r.srcErr = err
	}
	r.mu.Unlock()
	r.draining.Store(true)
	if o := r.opening; o != nil && o.srcCancel != nil {
		o.srcCancel(errInputFailed)
	}
}

// errInputFailed is the cause with which the sources' context ends when a
// source failed.
var errInputFailed = errors.New("sluice: a source of the run failed")

// lateFail records err, a failure once the run's goroutines have exited
// (an observer's Closed panicked): the sink returns it unless the run
// failed otherwise.
func (r *run) lateFail(err error) {
	r.mu.Lock()
	if r.srcErr == nil {
		r.srcErr = err
	}
	r.mu.Unlock()
}

// sawEnd records that the sink's stream ended; it ended the run's way only
// if the run was still live and its parent had not ended. A stream ends
// early only when the run was cancelled, or when the parent's end, still
// on its way to the run's context, cut it short: a stage's failure is then
// not the run's (see fail), yet its worker stops, and it may have
// been the last to write the sink's queue; the parent's error is the result.
func (r *run) sawEnd() { r.ended = !r.cancelled() && !r.parentClosed() }

// parentClosed reports whether the parent's Done channel is closed (its end
// may not have reached the run's context yet: see parentEnding).
func (r *run) parentClosed() bool {
	select {
	case <-r.parentDone: // nil for a parent that never ends: never ready
		return true
	default:
		return false
	}
}

// goexited cancels the run with ErrGoexit and records whether the parent's
// cancellation came first (the run was cut short: see cutShortLocked) or
// not, under mu as fail decides a failure, so that the cause calls in
// flight see and what the sink returns agree. A Goexit after the run's own
// end (a failure, finish) is a live one: a stream end the sink saw proves
// nothing then. It records a live one before it cancels the context, which
// calls the parent's methods only if this cancellation is the one that
// ends it, and they may end this goroutine again (see fail).
func (r *run) goexited() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.goexitedLocked()
}

// goexitedLocked is goexited's work, under mu.
func (r *run) goexitedLocked() {
	if r.parentEnding() || r.finishedAfterParent() {
		r.goexit.CompareAndSwap(0, goexitLate)
		return
	}
	prev := r.goexit.Swap(goexitLive)
	r.cancelLocked(ErrGoexit)
	if prev != goexitLive && r.cutShortLocked() {
		r.goexit.Store(goexitLate)
	}
}

// finishedAfterParent reports, under mu, whether finish has cancelled the
// run's context after the sink saw its stream end while the parent's end
// was on its way (sawEnd: not ended). A goroutine that Goexits closes its
// queue (deferred) before exit records the Goexit, so the sink may see
// that end, and finish cancel the run, first: the Goexit still came after
// the parent's end, and is a late one, as under parentEnding. (ended is
// the sink's; read here only once finish, which the sink calls after
// sawEnd, has taken mu: the errFinished cause says so.)
func (r *run) finishedAfterParent() bool {
	return r.ownCause == errFinished && !r.ended && r.parentClosed()
}

// The values of run.goexit: a goroutine of the run was ended by Goexit
// while the parent context was live, or only after it was done.
const (
	goexitLive = 1
	goexitLate = 2
)

// result is the error the sink reports for a finished run (see Run).
func (r *run) result(parent context.Context) error {
	switch {
	case r.stopped:
		return nil
	case r.failure != nil:
		return r.failure
	case r.goexit.Load() == goexitLive || r.goexit.Load() == goexitLate && r.ended:
		// Set before the goroutine's wg.Done: finish saw it. Its queue may
		// have ended early, so a stream end the sink saw proves nothing.
		return ErrGoexit
	case r.ended:
		return r.srcErr
	case r.ownCause == errParentUnread:
		// The parent ended, and a Goexit in its methods kept its end from
		// being read (see ctxGoexited): what calls in flight saw.
		return context.Canceled
	}
	// Only the parent can have ended the run without a failure (it
	// cancelled the run's context, or its end was on its way: see sawEnd).
	err, cause := parent.Err(), context.Cause(parent)
	if err == nil {
		return r.srcErr // a stop function panicked after the run was cut short
	}
	same := false // the cause is the context's error itself (or wraps it)
	if cause != nil {
		// The cause is the user's error: its Is and Unwrap are user code.
		guard.Call(func() { same = errors.Is(cause, err) })
	}
	if cause != nil && !same {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return cause
}
