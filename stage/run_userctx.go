package stage

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sluicedev/sluice/internal/guard"
	"github.com/sourcegraph/conc/panics"
)

// The contexts a run does not own: the caller's ctx (the run's parent) and
// Until's stop contexts. Their methods are user code when they are context
// types of the user's. The run calls them as little as it can, and never
// while it holds a lock of its queues: it watches the parent through its
// own context (armWake hooks the run's context, not the parent), so the
// calls left are these.
//
//   - Guarded, since a goroutine of the run may run meanwhile: the parent's
//     Value and Done as the run's context leaves it (cancelCtxLocked; whether
//     the parent ended first is read from the run's own context, never asked
//     of the parent), its Deadline when a
//     Timeout stage makes a call's context (deadlineContext), a stop
//     context's methods as its hook is made and stopped (hook, unhook),
//     and the Err and Value of either once it is done, when the context
//     package cannot see into it (watched, below). A
//     panic there is kept (the first one; see keepCtxPanicLocked), the run
//     is cancelled if it was not ending already, and finish raises the
//     panic again in the sink's goroutine once every goroutine of the run
//     exited and the cleanups ran (the package doc's Leaks section).
//   - Not guarded, in the sink's goroutine while no goroutine of the run
//     can run: newRun's (before the run exists), a stop's Done and its
//     hook as an Until is opened (before start: a panic goes on through the
//     sink's deferred finish), and result's (after finish).
//
// A Goexit in one of those methods (a fake context calling t.FailNow off
// the test's goroutine) cannot be caught: it ends the goroutine that
// called, and runs only its deferred calls. So each call comes after what
// the run owes at that point is done, or deferred: the wake-up of the
// sleepers is decided and started before the run's context is cancelled
// (cancelLocked, cancelForFinish); a failure, or a Goexit, is recorded before
// it cancels the context (fail, goexited); an item's Ack is told of the
// failure that ends the run at it by a deferred call (stepper.failRun,
// Run's deliver); a goroutine's wg.Done is deferred (exit); a hook's
// release is deferred (hook, unhook); finish's waits and cleanups run from
// a deferred call (settle). The goroutine it ends fails the run with
// ErrGoexit, as any Goexit in user code does (exit), unless the run had
// failed or been cut short first; on the sink's goroutine it ends the
// sink, and the run's goroutines still exit (ErrGoexit's doc). A Goexit in
// the run's own watcher of a context (watched) ends the run as that
// context's end would have: the parent's cuts the run short, as its
// cancellation does (see ctxGoexited).
//
// A hook (context.AfterFunc, see hook) is counted in run.hooks from before
// its registration and released once: by the hook when it runs, by unhook
// or stopLocked when it was stopped, or at once when registering it did not
// return (a panic, or a Goexit in a stop context's methods).
//
// The context package watches a context type that neither embeds a
// standard context nor has an AfterFunc method from a goroutine of its own
// (propagateCancel), which calls its Err and Value once it is done, without
// a guard, and may outlive the sink. So the run never gives it such a
// context: it hands it a watched (the context with an AfterFunc method of
// the run's), which the context package uses instead; a standard context
// inside is still found through Value and watched as before, with no
// goroutine.
//
// Not the run's to guard: a call of the context's methods by a function of
// the pipeline (its own ctx.Value, or a client reading ctx.Deadline) is
// that function's, and its panic that function's panic.

// watched is a context the run does not own, as the run hands it to the
// context package (to make its context from the parent, or to hook a stop
// context): the same context, with an AfterFunc method that watches it
// from a goroutine of the run's (counted in run.hooks until it returns),
// which calls f guarded and ends when it is stopped. It lives in the run
// or the drainScope, so that it costs no allocation of its own.
type watched struct {
	context.Context
	r *run
}

// AfterFunc is the context package's hook on a context type it cannot see
// into (see watched): f runs once the context is done, unless stop was
// called first. The context package calls it, and stop, with locks of its
// own held: neither blocks.
func (w *watched) AfterFunc(f func()) (stop func() bool) {
	r := w.r
	if w == &r.watchParent {
		r.parentWatched = true // in newRun, from the sink's goroutine (see ending)
	}
	done := w.Context.Done()
	var state atomic.Int32 // 0: waiting; 1: f runs; 2: stopped
	stopped := make(chan struct{})
	r.hooks.Add(1)
	go func() {
		defer r.hooks.Done()
		select {
		case <-done:
			if state.CompareAndSwap(0, 1) {
				returned := false
				defer func() {
					if !returned { // a Goexit in the context's methods: f passed nothing on
						r.ctxGoexited(w == &r.watchParent)
					}
				}()
				if rec := guard.Call(f); rec != nil { // f asks the context's Err and Value
					r.ctxPanicked(rec)
				}
				returned = true
			}
		case <-stopped:
		}
	}()
	return func() bool {
		if state.CompareAndSwap(0, 2) {
			close(stopped)
			return true
		}
		return false
	}
}

// errParentUnread stands for the run's own cause when the parent ended and
// its end could not be read (see ctxGoexited): the run's context is then
// cancelled with context.Canceled, the parent's cancellation, not this.
var errParentUnread = errors.New("sluice: the caller's context ended and could not be read")

// errCtxPanicked is the cause with which a run is cancelled when a method
// of a context it does not own panicked; the sink raises that panic.
var errCtxPanicked = errors.New("sluice: a method of a caller's context panicked")

// ctxHook is a function hooked on a context: the run's own (the parent's
// hook, see armWake) or a stop context (Until's, in its drainScope).
type ctxHook struct {
	r      *run
	f      func(*ctxHook)          // what the hook does: a plain function, so that a hook costs one allocation, its registration's
	cancel context.CancelCauseFunc // Until's: its scope's
	stop   func() bool             // context.AfterFunc's
	off    atomic.Bool             // released: run, stopped, or never made
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
	h.f(h)
}

// hook registers h.f to run, in a goroutine of its own, once ctx is done;
// finish stops it or waits for it (see unhook). If ctx's methods panic as
// it is registered, the hook is not made and the panic is returned, for
// the caller to keep (keepCtxPanicLocked) under mu; if they end the
// goroutine (runtime.Goexit), the hook is not counted either.
func (r *run) hook(h *ctxHook, ctx context.Context) (rec *panics.Recovered) {
	h.r = r
	r.hooks.Add(1)
	returned := false
	defer func() {
		if !returned || rec != nil {
			h.release()
		}
	}()
	rec = guard.Call(func() { h.stop = context.AfterFunc(ctx, h.fire) })
	returned = true
	return rec
}

// unhook stops h at finish; a hook that ran, or runs now, is waited for
// with run.hooks. Stopping calls the watched context's Done and Value: if
// they panic, or end the goroutine (runtime.Goexit), the hook was stopped
// already (the context package calls them after), so it is released (by a
// defer, which a Goexit runs too), and the panic is kept.
func (r *run) unhook(h *ctxHook) {
	if h.stop == nil {
		return // never made
	}
	stopped := true // unless stop returns false: the hook ran, and releases itself
	defer func() {
		if stopped {
			h.release()
		}
	}()
	if rec := guard.Call(func() { stopped = h.stop() }); rec != nil {
		r.mu.Lock()
		r.keepCtxPanicLocked(rec)
		r.mu.Unlock()
	}
}

// stopLocked stops h, a hook on the run's own context, under mu: stopping
// calls no user code (the run's context is the library's).
func (h *ctxHook) stopLocked() {
	if h.stop != nil && h.stop() {
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
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keepCtxPanicLocked(rec)
	r.cancelLocked(errCtxPanicked)
}

// deadlineContext is context.WithTimeout(ctx, d) for a call of a Timeout
// stage: making it asks ctx's Deadline, which a context of the library's
// asks its parent, the caller's context. If that panics, the panic is kept
// and the run cancelled, and ok is false: the call is cut short.
func (r *run) deadlineContext(ctx context.Context, d time.Duration) (tctx context.Context, cancel context.CancelFunc, ok bool) {
	if rec := guard.Call(func() { tctx, cancel = context.WithTimeout(ctx, d) }); rec != nil {
		r.ctxPanicked(rec)
		return nil, nil, false
	}
	return tctx, cancel, true
}

// ctxGoexited ends the run when a Goexit in a method of a context the run
// does not own ended the run's watcher of it (see watched) before it passed
// the context's end on. The watcher runs only once the context is done: if
// it is the parent, the run ends as the parent's cancellation ends it (cut
// short: calls in flight see context.Canceled, since the parent's own error
// and cause could not be read, and the sink returns context.Canceled too,
// see result); a stop context's end fails the run with ErrGoexit, as a
// Goexit in a goroutine of the run does (its drain could not begin), unless
// the parent had cut the run short first (see goexited). It asks the
// context nothing: its methods are what ended the watcher.
func (r *run) ctxGoexited(parent bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if parent {
		if !r.ctxCancelled { // else the run had ended itself first
			r.ownCause = errParentUnread // cut short (see cutShortLocked), before the cancellation asks the parent again
		}
		r.cancelLocked(context.Canceled)
		return
	}
	r.goexitedLocked()
}
