package stage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sluicedev/sluice/internal/guard"
	"github.com/sourcegraph/conc"
)

// Run is the primitive every sink is written with. It runs s and calls f,
// one call at a time and in the caller's goroutine, for each item that
// reaches the end of s: f(ctx, v, nil) for a value, f(ctx, zero, err) for an
// error forwarded by a stage with the [Forward] policy. ctx is the run's
// context, derived from the ctx passed to Run.
//
// f returns nil to go on, [ErrStop] to end the run early without an error,
// or any other error to end the run with it, as a [FailFast] item error does:
// the run's context is cancelled with that error as its cause and Run
// returns it. A panic in f is not recovered: Run cancels the run, waits for
// it, and lets the panic continue (the sinks that take user callbacks turn
// their panics into errors themselves).
//
// Run returns only when every goroutine of the run has exited. It returns
// the error that ended the run: the first [FailFast] *[Error], a
// *[SourceError], the error returned by f, or, when ctx was cancelled, an
// error for which errors.Is(err, context.Canceled) (or
// context.DeadlineExceeded) holds. It returns nil when s was exhausted or f
// returned ErrStop. Forwarded errors are f's to collect; Run does not return
// them.
func Run[T any](ctx context.Context, s Stream[T], f func(ctx context.Context, v T, err error) error) error {
	s.check("stage.Run")
	checkFunc(f == nil, "stage.Run", "function")
	r := newRun(ctx)
	defer r.finish() // also when f panics
	p := s.openFor(r, 1)()
	r.start()
	ended := false
	// An item is committed once f returned for it: its acknowledgement is
	// settled with f's error, or the forwarded error it carries.
	deliver := func(it item[T]) bool {
		failure := it.failure()
		if err := f(r.ctx, it.v, failure); err != nil {
			if errors.Is(err, ErrStop) {
				it.acked().settle(failure)
				ended = true
			} else {
				it.acked().settle(err)
				r.fail(err)
			}
			return false
		}
		it.acked().settle(failure)
		return true
	}
	if bp, ok := p.(batchPuller[T]); ok {
		// Take every ready item at once; f sees them one at a time.
		var batch []item[T]
	batches:
		for {
			var ok bool
			if batch, ok = bp.pullAll(batch[:0]); !ok {
				ended = r.ctx.Err() == nil
				break
			}
			for i := range batch {
				if r.cancelled() || !deliver(batch[i]) {
					break batches
				}
				batch[i] = item[T]{} // drop the reference once delivered
			}
		}
	} else {
		for {
			it, _, ok := p.pull()
			if !ok {
				// A stream ends early only when the run was cancelled, so
				// a live context here means it was exhausted.
				ended = r.ctx.Err() == nil
				break
			}
			if !deliver(it) {
				break
			}
		}
	}
	r.finish()
	return r.result(ctx, ended)
}

// errFinished is the cause with which a run's context is cancelled once its
// sink is done with it.
var errFinished = errors.New("sluice: run finished")

// run is one execution of a pipeline: its context, its goroutines, and the
// error that ended it.
type run struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   <-chan struct{}
	wg     conc.WaitGroup
	hooks  sync.WaitGroup // onCancel functions

	// draining is set when a source failed: sources take no new items, the
	// items already taken still go through.
	draining atomic.Bool

	// scope is the drain scope of the sources being opened (see Until);
	// nil outside every Until. Only the sink's goroutine touches it, while
	// it opens the pipeline.
	scope *drainScope
	// unhooks deregister Until's functions at finish; each reports
	// whether its function had not run yet.
	unhooks []func() bool
	// sharedNodes holds the run's state of nodes read by several streams
	// (Tee), opened calls to make once the pipeline is opened.
	sharedNodes map[*node]any
	opened      []func() error

	mu       sync.Mutex
	err      error    // the first error that ended the run
	cleanups []func() // run after every goroutine exited, last first
	finished bool
}

func newRun(parent context.Context) *run {
	if parent == nil {
		panic("sluice: nil context")
	}
	ctx, cancel := context.WithCancelCause(parent)
	return &run{ctx: ctx, cancel: cancel, done: ctx.Done()}
}

// halted reports whether the run takes no new items from its sources.
func (r *run) halted() bool {
	return r.draining.Load() || r.cancelled()
}

// cancelled reports whether the run's context is done.
func (r *run) cancelled() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// record keeps err as the error that ended the run if it is the first one and
// the run is still live; an error after cancellation is a consequence of it.
func (r *run) record(err error) {
	r.mu.Lock()
	if r.err == nil && r.ctx.Err() == nil {
		r.err = err
	}
	r.mu.Unlock()
}

// fail ends the run with err: recorded, and the cause of the cancellation.
func (r *run) fail(err error) {
	r.record(err)
	r.cancel(err)
}

// sourceFailed ends the run's input with err: sources stop, the rest drains.
func (r *run) sourceFailed(err error) {
	r.record(err)
	r.draining.Store(true)
}

// goroutine starts f in the run's scope. A panic in f (a library bug, never
// user code, which is always wrapped) cancels the run and is re-raised by the
// sink when it waits.
func (r *run) goroutine(f func()) {
	r.wg.Go(func() {
		defer func() {
			if p := recover(); p != nil {
				r.cancel(fmt.Errorf("sluice: internal panic: %v", p))
				panic(p)
			}
		}()
		f()
	})
}

// onFinish registers f to run once every goroutine of the run has exited.
func (r *run) onFinish(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

// onCancel runs f (in its own goroutine) when the run's context is done,
// which happens at the latest when the run finishes; finish waits for it.
func (r *run) onCancel(f func()) {
	r.hooks.Add(1)
	context.AfterFunc(r.ctx, func() {
		defer r.hooks.Done()
		f()
	})
}

// finish cancels what is still running, waits for every goroutine, then runs
// the cleanups. It is idempotent.
func (r *run) finish() {
	if r.finished {
		return
	}
	r.finished = true
	r.cancel(errFinished)
	r.wg.Wait()
	for _, unhook := range r.unhooks {
		if unhook() {
			r.hooks.Done()
		}
	}
	r.hooks.Wait()
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		if rec := guard.Call(r.cleanups[i]); rec != nil && r.err == nil {
			r.err = &SourceError{Err: panicError(rec)}
		}
	}
}

// result is the error a sink reports for a finished run; ended says whether
// the sink saw the stream end (or stopped it) while the run was live.
func (r *run) result(parent context.Context, ended bool) error {
	if r.err != nil {
		return r.err
	}
	if ended {
		return nil
	}
	// Only the parent can have cancelled the run without recording an error.
	err, cause := parent.Err(), context.Cause(parent)
	if err == nil {
		return nil
	}
	if cause != nil && !errors.Is(cause, err) {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return cause
}
