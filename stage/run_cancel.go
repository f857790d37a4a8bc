package stage

// Cancelling a run: its context, the parent's end, and waking the
// goroutines that sleep in the run's queues.

import (
	"context"

	"github.com/sluicedev/sluice/internal/guard"
)

// waker is woken once the run's context is done: a queue, whose waiters
// then see the run cancelled.
type waker interface{ wake() }

// onCancel wakes w once the run's context is done, if anybody waits in it
// by then (see armWake); finish waits for it. It is called while the
// pipeline is opened.
func (r *run) onCancel(w waker) {
	r.mu.Lock()
	r.wakers = append(r.wakers, w)
	r.mu.Unlock()
}

// armWake says that a goroutine may sleep in a waker from now on; it calls
// it with the waker's lock held, before it looks at the run's context one
// last time and sleeps. From then on, whatever cancels the run wakes the
// wakers (see cancelRun, finish), once: either the canceller sees armed, or
// the sleeper sees the run cancelled (both look under mu). A parent context
// that can be cancelled gets its hook here, so a run in which nobody ever
// sleeps (a run of one item in the sink's goroutine) makes none. The hook
// watches the run's own context, which the parent cancels, so that making
// it calls no method of the parent's (user code) under the waker's lock;
// the run stops it before it cancels its context itself (cancelLocked,
// cancelForFinish), so that it runs only when the parent ended the run.
func (r *run) armWake() {
	if r.armedFast.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.armed {
		return
	}
	r.armed = true
	r.armedFast.Store(true)
	// Once woken (the run cancelled, or finishing: finish has looked for
	// the hook already), a sleeper sees the run cancelled and does not
	// sleep; a hook made now would outlive the run.
	if !r.ownOnly && !r.woken {
		r.parentHook.f = parentEnded
		r.hook(&r.parentHook, r.ctx) // the run's context: no user code, no panic
	}
}

// parentEnded is the parent's hook: the parent cancelled the run's context
// (with its own cause); the run sees it cancelled and wakes its sleepers.
func parentEnded(h *ctxHook) { h.r.cancelRun(context.Cause(h.r.ctx)) }

// cancelRun cancels the run's context with cause (see cancelLocked).
func (r *run) cancelRun(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock() // cancelling may call the parent's methods (see fail)
	r.cancelLocked(cause)
}

// cancelLocked sets over and cancels the context with cause, under mu. If a
// goroutine may sleep in a waker and none was woken yet, a goroutine of its
// own wakes them all (see wakeAll; the caller may hold locks that the
// wakers' are taken after); finish waits for it. Over and the cause are
// set together under mu, so that whoever sees over set and then takes mu
// (finish, with its own cause) finds the cause decided: a sink that saw the
// run over cannot finish it with errFinished before the failure that ended
// it is the cause. Cancelling the context calls no user code but the
// parent's methods, as the context package removes the run's context from
// it (cancelCtxLocked; its children are the library's, or a user's
// context.WithCancel, cancelled in place; an AfterFunc runs in its own
// goroutine); everything the run owes is done before that call, since a
// Goexit there ends the caller's goroutine (run_userctx.go).
func (r *run) cancelLocked(cause error) {
	r.over.Store(true) // before the channel closes: whoever sees it closed sees this
	r.parentHook.stopLocked()
	if r.armed && !r.woken {
		r.woken = true
		r.wakeAll()
	}
	r.cancelCtxLocked(cause)
}

// cancelCtxLocked cancels the run's context with cause, under mu, the
// first time the run cancels it itself, and keeps that cause (ownCause),
// which tells later whether the parent's cancellation had ended the
// context first (see cutShortLocked); if the context is done already, the
// parent's cancellation ended it (the run's own hook on it passes on the
// parent's cause), and the run has no cause of its own. The cancellation that ends the
// context calls the parent's Done and Value (context's removeChild); if
// the parent is a context type of the user's and they panic (the context
// is cancelled by then), the panic is kept, and finish raises it again in
// the sink's goroutine once the run is cleaned up; if they end the
// goroutine (runtime.Goexit), this cancellation ended the context.
func (r *run) cancelCtxLocked(cause error) {
	if r.ctxCancelled {
		return
	}
	r.ctxCancelled = true
	if !r.ownOnly && r.ctx.Err() != nil { // the parent's cancellation ended it first (see cancelled)
		return
	}
	if r.ownCause == nil {
		r.ownCause = cause
	}
	if rec := guard.Call(func() { r.cancelCtx(cause) }); rec != nil {
		r.keepCtxPanicLocked(rec)
	}
}

// parentEnding reports, under mu, whether the parent has ended and its
// cancellation has not reached the run's context yet, which the run has not
// cancelled either: the parent's end is on its way (the context package
// passes it on, or the run's watcher of a context type with a Done channel
// of its own, see watched, which a goroutine of its own runs), and it came
// first. A stage's failure or a Goexit then cancels nothing and records
// nothing live: the run ends with the parent's cause, as it would have a
// moment later, and calls in flight and the sink see the same end. (The
// sink's own callback's error is the run's whatever came before it: see
// Run.) (It reads the channel the parent gave at the start and the run's
// own context: no user code.)
func (r *run) parentEnding() bool {
	if r.ctxCancelled {
		return false
	}
	if !r.parentClosed() {
		return false
	}
	return r.ctx.Err() == nil // non-nil: it has reached the run's context, and cutShortLocked sees it
}

// cutShortLocked reports, under mu, whether the parent's cancellation
// ended the run's context before the run's own did: the parent alone
// cancels it without mu, so a cause that is not the one the run first
// cancelled it with is the parent's. It asks the parent nothing, and costs
// nothing until a failure or a Goexit asks.
func (r *run) cutShortLocked() bool {
	c := context.Cause(r.ctx)
	return c != nil && (r.ownCause == nil || !sameError(c, r.ownCause))
}

// wakeAll wakes the wakers in a goroutine of its own, counted in hooks;
// under mu (see cancelLocked), which that goroutine takes once the caller
// let go of it.
func (r *run) wakeAll() {
	r.hooks.Add(1)
	go func() {
		defer r.hooks.Done()
		r.wake()
	}()
}

// wake wakes every waker.
func (r *run) wake() {
	r.mu.Lock()
	wakers := r.wakers
	r.mu.Unlock()
	for _, w := range wakers {
		w.wake()
	}
}
