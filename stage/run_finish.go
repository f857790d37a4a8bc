package stage

// Finishing a run: cancel what still runs, wait for it, clean up.

import (
	"errors"

	"github.com/sluicedev/sluice/internal/guard"
)

// errFinished is the cause with which a run's context is cancelled once its
// sink is done with it.
var errFinished = errors.New("sluice: run finished")

// cancelForFinish takes mu and cancels the run's context with errFinished (after
// a cancelRun that set over, the cause is decided: see cancelLocked), and
// sets wakeAtFinish if the wakers are finish's to wake (else nobody
// sleeps, or a goroutine of cancelRun's wakes them), before it cancels (see
// cancelLocked). No parent hook is made after it.
func (r *run) cancelForFinish() {
	r.mu.Lock()
	defer r.mu.Unlock() // cancelling may call the parent's methods (see fail)
	r.over.Store(true)
	r.parentHook.stopLocked()
	r.wakeAtFinish = r.armed && !r.woken
	r.woken = true
	r.cancelCtxLocked(errFinished)
}

// finish cancels what is still running, waits for every goroutine and the
// cancellation hooks, runs the cleanups, and gives the run's states back
// to their pools (engine_recycle.go); last it raises again a library panic
// of a goroutine, or a panic of the parent's methods (see
// cancelCtxLocked), once nothing of the run is left. It is idempotent.
func (r *run) finish() {
	if r.finished {
		return
	}
	r.finished = true
	defer r.settle()
	r.cancelForFinish()
}

// settle is the rest of finish, deferred: cancelling the run's context
// (cancelForFinish) and stopping Until's hooks call methods of contexts the
// run does not own, and a Goexit in one of them (a fake context calling
// t.FailNow) ends the sink's goroutine, as any function of it does (see
// ErrGoexit); the run's goroutines must still be woken and waited for, and
// its cleanups run. A Goexit while a hook is stopped runs settle again,
// from its deferred call, for the hooks left (each is taken off before it
// is stopped); the cleanups have their own (see cleanUp), and run once.
func (r *run) settle() {
	cleaning := false
	defer func() {
		if !cleaning {
			r.settle()
		}
	}()
	if r.wakeAtFinish {
		r.wakeAtFinish = false
		r.wake()
	}
	r.wg.Wait()
	for o := r.opening; o != nil && len(o.untilHooks) > 0; {
		h := o.untilHooks[0]
		o.untilHooks = o.untilHooks[1:]
		r.unhook(h)
	}
	r.hooks.Wait()
	cleaning = true
	r.mu.Lock()
	userPanic := r.ctxPanic
	r.mu.Unlock()
	r.cleanUp()
	if bug := r.bug.Load(); bug != nil {
		panic("sluice: internal panic: " + *bug)
	}
	if userPanic != nil {
		panic(userPanic.Value)
	}
}

// cleanUp runs the cleanups, last first, then recycles the run's states.
// A cleanup that runtime.Goexit ends (a source's stop or an observer's
// Closed calling t.Fatal) ends the sink's goroutine, as any function of it
// does (see ErrGoexit); the other cleanups still run, from the deferred
// call, so that every source is stopped and every watcher closed.
func (r *run) cleanUp() {
	completed := false
	defer func() {
		if !completed {
			r.cleanUp() // a Goexit: the cleanup that ended was taken off already
		}
	}()
	for len(r.cleanups) > 0 {
		last := len(r.cleanups) - 1
		f := r.cleanups[last]
		r.cleanups = r.cleanups[:last]
		if rec := guard.Call(f); rec != nil && r.srcErr == nil {
			if se, ok := rec.Value.(*SourceError); ok && se != nil {
				r.srcErr = se // a failure the source found after its last item (see Source)
			} else {
				r.srcErr = &SourceError{Err: panicError(rec)}
			}
		}
	}
	r.recycle()
	completed = true
}
