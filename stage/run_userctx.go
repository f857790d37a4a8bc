package stage

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/sluicedev/sluice/internal/guard"
	"github.com/sourcegraph/conc/panics"
)

// The contexts a run does not own: the caller's ctx (the run's parent) and
// Until's stop contexts. Their methods are user code when they are context
// types of the user's. Every call the run makes of them while a goroutine
// of the run may run, directly or through the context package (a child's
// removal, context.AfterFunc and its stop), is guarded (cancelCtxLocked,
// hook, unhook, parentErrLocked, parentCauseLocked):
//
//   - a panic in them is kept (the first one; see keepCtxPanicLocked), the
//     run is cancelled if it was not ending already, and finish raises the
//     panic again in the sink's goroutine once every goroutine of the run
//     exited and the cleanups ran (the package doc's Leaks section);
//   - a hook on one of them (context.AfterFunc, see hook) is counted in
//     run.hooks from before its registration, and released once: by the
//     hook when it runs, by unhook when it was stopped, or at once when
//     registering it panicked.
//
// The calls from the sink's goroutine while none can run are not guarded:
// newRun's (before the run exists), the stop's Done as an Until is opened
// (before start: the sink's deferred finish cleans up as the panic goes
// on), and result's (after finish).

// errCtxPanicked is the cause with which a run is cancelled when a method
// of a context it does not own panicked; the sink raises that panic.
var errCtxPanicked = errors.New("sluice: a method of a caller's context panicked")

// ctxHook is a function hooked on a context the run does not own.
type ctxHook struct {
	r    *run
	f    func(*run)  // what the hook does
	stop func() bool // context.AfterFunc's
	off  atomic.Bool // released: run, stopped, or never made
}

// release takes the hook out of run.hooks, once.
func (h *ctxHook) release() {
	if h.off.CompareAndSwap(false, true) {
		h.r.hooks.Done()
	}
}

// fire is the function context.AfterFunc runs, in a goroutine of its own.
func (h *ctxHook) fire() {
	if !h.off.CompareAndSwap(false, true) {
		return // stopped, as far as finish knows
	}
	defer h.r.hooks.Done()
	h.f(h.r)
}

// hook registers f to run, in a goroutine of its own, once ctx is done;
// finish stops it or waits for it (see unhook). If ctx's methods panic as
// it is registered, the hook is not made and the panic is returned, for
// the caller to keep (keepCtxPanicLocked) under mu. (h is the run's or
// the caller's, and f a plain function, so that the parent's hook costs
// one allocation, its registration's.)
func (r *run) hook(h *ctxHook, ctx context.Context, f func(*run)) *panics.Recovered {
	h.r, h.f = r, f
	r.hooks.Add(1)
	rec := guard.Call(func() { h.stop = context.AfterFunc(ctx, h.fire) })
	if rec != nil {
		h.release()
	}
	return rec
}

// unhook stops h at finish; a hook that ran, or runs now, is waited for
// with run.hooks. Stopping calls the watched context's Done and Value: if
// they panic, the hook was stopped already (the panic comes after), and
// the panic is kept.
func (r *run) unhook(h *ctxHook) {
	if h.stop == nil {
		return // never made
	}
	stopped := false
	if rec := guard.Call(func() { stopped = h.stop() }); rec != nil {
		r.mu.Lock()
		r.keepCtxPanicLocked(rec)
		r.mu.Unlock()
		stopped = true
	}
	if stopped {
		h.release()
	}
}

// keepCtxPanicLocked keeps rec, a panic of a method of a context the run
// does not own, if it is the first; under mu. finish raises it.
func (r *run) keepCtxPanicLocked(rec *panics.Recovered) {
	if r.ctxPanic == nil {
		r.ctxPanic = rec
	}
}

// ctxPanicked keeps rec and cancels the run (the sink raises the panic).
func (r *run) ctxPanicked(rec *panics.Recovered) {
	r.wakeAll(func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.keepCtxPanicLocked(rec)
		return r.cancelLocked(errCtxPanicked)
	}())
}

// parentErrLocked is the parent's Err, under mu. If it panics, the panic is
// kept, and the parent counts as live: the run's own end decides (the sink
// raises the panic anyway).
func (r *run) parentErrLocked() (err error) {
	if rec := guard.Call(func() { err = r.parent.Err() }); rec != nil {
		r.keepCtxPanicLocked(rec)
		return nil
	}
	return err
}

// parentCauseLocked is context.Cause of the parent (its Value), under mu,
// or nil if that panicked (the panic is kept).
func (r *run) parentCauseLocked() (cause error) {
	if rec := guard.Call(func() { cause = context.Cause(r.parent) }); rec != nil {
		r.keepCtxPanicLocked(rec)
		return nil
	}
	return cause
}
