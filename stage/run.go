package stage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/sluicedev/sluice/internal/guard"
	"github.com/sourcegraph/conc/panics"
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
// Forwarded errors are f's to collect; Run does not return them.
func Run[T any](ctx context.Context, s Stream[T], f func(ctx context.Context, v T, err error) error) error {
	s.check("stage.Run")
	checkFunc(f == nil, "stage.Run", "function")
	r := newRun(ctx)
	defer r.finish() // also when f panics
	p := s.openFor(r, 1).next()
	r.start()
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
		case r.cancelled() && r.endedBy(err):
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
				r.sawEnd()
				break
			}
			if r.cancelled() || !deliver(it) { // no item starts once the run is cancelled
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

// errFinished is the cause with which a run's context is cancelled once its
// sink is done with it.
var errFinished = errors.New("sluice: run finished")

// run is one execution of a pipeline: its context, its goroutines, and what
// ended it.
//
// Lifecycle: newRun; the sink opens the pipeline (Stream.open, from the
// sink's goroutine: queues are made, observers asked, goroutines
// registered with goroutine but not started, checks registered with
// check); start runs the checks and, if they pass, starts the goroutines;
// the sink consumes; finish cancels, waits for every goroutine and the
// cancellation hooks, then runs the cleanups (sources' stop, observers'
// Closed), and last gives the per-run states back to their pools
// (engine_recycle.go); result says what the sink returns.
type run struct {
	ctx         context.Context
	cancelCtx   context.CancelCauseFunc // only under mu, through cancelLocked or in finish: both wake the sleepers
	done        <-chan struct{}         // ctx.Done(), for cancelled, unless ownOnly
	wg          sync.WaitGroup          // the run's goroutines
	hooks       sync.WaitGroup          // the cancellation hook and Until's
	wakers      []waker                 // woken once the run's context is done (see onCancel); under mu
	wakerSlots  [2]waker                // wakers' first room: a small run makes no slice for them
	parent      context.Context
	parentDone  <-chan struct{}        // parent.Done(), asked once (see parentEnded)
	watchParent watched                // the parent, as the run's context is made from it (run_userctx.go)
	armed       bool                   // a goroutine may sleep in a waker (see armWake); under mu
	woken       bool                   // the wakers were woken; under mu
	armedFast   atomic.Bool            // armed, without mu
	parentHook  ctxHook                // the parent's hook, on the run's context (see armWake); made and stopped under mu
	bug         atomic.Pointer[string] // a library panic in a goroutine, re-raised by finish
	ctxPanic    *panics.Recovered      // a method of a context the run does not own panicked (run_userctx.go); under mu
	goexit      atomic.Int32           // a goroutine of the run ended by runtime.Goexit (goexitLive or goexitLate; see result)

	// draining is set when a source failed: sources take no new items, the
	// items already taken still go through. The sources' context (see
	// sourcesContext) ends with it, so that a source waiting in next
	// (another input of a Merge) is woken too.
	draining atomic.Bool

	// over: the run is cancelled, or being cancelled (see cancelled); it
	// stands for the context when only the run can cancel it (ownOnly).
	over    atomic.Bool
	ownOnly bool

	// Opening, from the sink's goroutine only.
	scope       *drainScope // the drain scope of the sources being opened (see Until)
	opening     *opening    // made on first use (see opened)
	recyclers   []recycler  // states that go back to their pools at finish (engine_recycle.go)
	recycleRoom [2]recycler // recyclers' first room: a small run makes no slice for them
	stages      int         // stages opened so far
	started     bool

	// The sink's outcome, from the sink's goroutine only.
	ended   bool // the sink saw the end of the stream while the run was live
	stopped bool // the sink's f returned ErrStop

	mu           sync.Mutex
	ctxCancelled bool // the run made its one attempt to cancel its context (the parent's end may have got there first: see cancelCtxLocked)
	finished     bool
	// wakeAtFinish: the wakers are finish's to wake (see finishLocked); the
	// sink's goroutine's.
	wakeAtFinish bool
	ownCause     error    // the cause of the run's first own cancellation (see cutShortLocked)
	failure      error    // the first error that cancelled the run
	srcErr       error    // the first source error, which ended the input
	cleanups     []func() // run after every goroutine exited, last first
}

// opening is the part of a run that only some pipelines need: a source
// primitive, an Until, a Tee, a stage with goroutines of its own. It is
// made on first use (see opened), from the sink's goroutine while the
// pipeline is opened, and never replaced: the run's goroutines, which start
// after that, read it without a lock. A run over a slice whose stages run
// in the sink's goroutine makes none, which keeps the run small (its size
// is most of the cost of a short run: see bench/README.md).
type opening struct {
	srcCtx      context.Context // the sources' context (see sourcesContext)
	srcCancel   context.CancelCauseFunc
	untilHooks  []*ctxHook    // Until's hooks on its stop contexts (in their scopes), stopped at finish
	sharedNodes map[*node]any // the run's state of nodes several streams read (Tee)
	checks      []func() error
	pending     []func() // goroutines to start with the run
}

// opened returns the run's opening part, made if the run has none yet;
// only while the pipeline is opened (see opening).
func (r *run) opened() *opening {
	if r.started {
		panic("sluice: internal: the run's opening part asked for after the run started")
	}
	if r.opening == nil {
		r.opening = &opening{}
	}
	return r.opening
}

func newRun(parent context.Context) *run {
	if parent == nil {
		panic("sluice: nil context")
	}
	r := &run{parent: parent, parentDone: parent.Done()}
	r.ownOnly = r.parentDone == nil
	if r.ownOnly {
		r.ctx, r.cancelCtx = context.WithCancelCause(parent) // never watched: nothing to ask
	} else {
		r.watchParent = watched{Context: parent, r: r}
		r.ctx, r.cancelCtx = context.WithCancelCause(&r.watchParent) // see run_userctx.go
		// Only then does cancelled look at the channel; else it is made
		// only if something asks for it (a user's function, a Batch).
		r.done = r.ctx.Done()
	}
	r.wakers = r.wakerSlots[:0]
	return r
}

// halted reports whether the run takes no new items from its sources.
func (r *run) halted() bool {
	return r.draining.Load() || r.cancelled()
}

// cancelled reports whether the run is cancelled: its context is done, or
// is being cancelled by cancelRun or finish. When only the run can cancel
// its context (the parent never ends: context.Background), that is the
// over flag, which cancelRun and finish (then the only cancellations) set
// before they close the context's channel, under mu with the cause (see
// cancelLocked): one atomic load instead of a receive on a channel every
// goroutine of the run looks at. With a parent that can end, the parent
// may close the channel without setting over, so the channel decides. The
// run's decisions (fail, sourceFailed, sawEnd) look here too, never at
// ctx.Err(), so that they agree with what its goroutines saw.
func (r *run) cancelled() bool {
	if r.ownOnly {
		return r.over.Load()
	}
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// fail ends the run with err: the cause of the cancellation, and what the
// sink returns if it is the first and the run was still live.
//
// The failure and the cause are one decision, under mu (see cancelLocked): a
// failure is recorded only if its cancellation is the one that ended the
// context, so that calls in flight see as the cause what the sink returns.
// (A parent's cancellation reaches the context without mu: if it came
// first, the run was cut short (see cutShortLocked), and no failure is
// recorded.)
//
// It is recorded before the context is cancelled: cancelling it calls the
// parent's methods (a user's, if the parent is a context type of the
// user's), which may end this goroutine (runtime.Goexit), and they are
// called only by the cancellation that ends the context, this one. mu is
// unlocked by a defer, and the wake-up is started before (see
// cancelLocked).
func (r *run) fail(err error) { r.failWith(err, false) }

// stageFailed is fail for an item error at which a stage's policy ends the
// run: if the parent ended first and its end is on its way to the run's
// context (see parentEnding), the run was cut short, and the failure is
// not the run's (the item's Ack is still told: see stepper.failRun).
func (r *run) stageFailed(err error) { r.failWith(err, true) }

func (r *run) failWith(err error, stage bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if stage && r.parentEnding() {
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
	r.fail(err)
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

// sourcesContext is the context that the run's sources (outside any Until)
// are given: the run's, ended also when a source fails. It is made when the
// first source is opened, from the sink's goroutine, so that a run without
// a source primitive (a slice) pays nothing for it.
func (r *run) sourcesContext() context.Context {
	o := r.opened()
	if o.srcCtx == nil {
		o.srcCtx, o.srcCancel = context.WithCancelCause(r.ctx)
		if r.draining.Load() { // a source failed while the pipeline was opened
			o.srcCancel(errInputFailed)
		}
	}
	return o.srcCtx
}

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
// not the run's (see stageFailed), yet its worker stops, and it may have
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

// goroutine runs f in the run's scope: at start, or at once once the run
// has started. A panic in f (a library bug, never user code, which is
// always recovered where it is called) cancels the run and is re-raised by
// the sink when it waits (see finish).
func (r *run) goroutine(f func()) {
	if !r.started {
		o := r.opened()
		o.pending = append(o.pending, f)
		return
	}
	r.wg.Add(1)
	go func() {
		var returned bool
		defer r.exit(&returned)
		f()
		returned = true
	}()
}

// exit ends a goroutine of the run: it is deferred first thing in every
// one (after r.wg.Add(1) in the goroutine that starts it), and *returned
// is set once its function returned. Its wg.Done is deferred, so that it
// runs even if exit does not return (a Goexit in the parent's methods,
// which goexited calls). It is exit's own defer, not one more in the
// goroutine's function: a worker's frames fit in a goroutine's starting
// stack (2 KB) with little room, and the bigger bottom frame made every
// worker grow its stack, a copy that cost a 10-item run 30% (see
// bench/README.md). It recovers a library panic (see
// goroutine). A goroutine that neither returned nor panicked was ended by
// runtime.Goexit in user code (t.Fatal in a stage's function): its item is
// lost and its queue may have ended early, so the run fails with ErrGoexit
// rather than look complete. (One that the parent had cancelled already is
// cut short anyway: it returns the parent's error, unless its sink saw its
// stream end, which the dying goroutine may have ended early.)
func (r *run) exit(returned *bool) {
	defer r.wg.Done()
	if p := recover(); p != nil {
		bug := fmt.Sprintf("%v", p)
		r.bug.CompareAndSwap(nil, &bug)
		r.cancelRun(fmt.Errorf("sluice: internal panic: %v", p))
	} else if !*returned {
		r.goexited()
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
	if r.parentEnding() {
		r.goexit.CompareAndSwap(0, goexitLate)
		return
	}
	prev := r.goexit.Swap(goexitLive)
	r.cancelLocked(ErrGoexit)
	if prev != goexitLive && r.cutShortLocked() {
		r.goexit.Store(goexitLate)
	}
}

// The values of run.goexit: a goroutine of the run was ended by Goexit
// while the parent context was live, or only after it was done.
const (
	goexitLive = 1
	goexitLate = 2
)

// check registers f to run once the whole pipeline is opened, before any
// goroutine starts: an error fails the run before it takes an item.
func (r *run) check(f func() error) {
	o := r.opened()
	o.checks = append(o.checks, f)
}

// nextStage numbers the stages of the run in the order they are opened.
func (r *run) nextStage() int {
	r.stages++
	return r.stages
}

// start checks the opened pipeline and starts its goroutines; the sink
// calls it once, after opening.
func (r *run) start() {
	o := r.opening
	if o == nil {
		r.started = true
		return
	}
	for _, f := range o.checks {
		if err := f(); err != nil {
			r.fail(err)
			return
		}
	}
	r.started = true
	for _, f := range o.pending {
		r.goroutine(f)
	}
	o.pending = nil
}

// onFinish registers f to run once every goroutine of the run has exited.
func (r *run) onFinish(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

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
// finishLocked), so that it runs only when the parent ended the run.
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
	select {
	case <-r.done: // the parent's cancellation ended it first (nil done: the parent never ends)
		return
	default:
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
// Run.) (It reads the
// channel the parent gave at the start: no user code.)
func (r *run) parentEnding() bool {
	if r.ctxCancelled {
		return false
	}
	if !r.parentClosed() {
		return false
	}
	select {
	case <-r.done:
		return false // it has reached the run's context: cutShortLocked sees it
	default:
		return true
	}
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

// finishLocked cancels the run's context with errFinished, under mu (after
// a cancelRun that set over, the cause is decided: see cancelLocked), and
// sets wakeAtFinish if the wakers are finish's to wake (else nobody
// sleeps, or a goroutine of cancelRun's wakes them), before it cancels (see
// cancelLocked). No parent hook is made after it.
func (r *run) finishLocked() {
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
	r.finishLocked()
}

// settle is the rest of finish, deferred: cancelling the run's context
// (finishLocked) and stopping Until's hooks call methods of contexts the
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
	// Only the parent can have cancelled the run without a failure.
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

// shared returns what share stored for n in this run, or nil.
func (r *run) shared(n *node) any {
	if r.opening == nil {
		return nil
	}
	return r.opening.sharedNodes[n]
}

// share stores the run's state of a node that several streams read from.
func (r *run) share(n *node, v any) {
	o := r.opened()
	if o.sharedNodes == nil {
		o.sharedNodes = map[*node]any{}
	}
	o.sharedNodes[n] = v
}
