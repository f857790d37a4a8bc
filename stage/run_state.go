package stage

// The run: its state, how it is opened and started, and its goroutines.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sourcegraph/conc/panics"
)

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
	cancelCtx   context.CancelCauseFunc // only under mu, through cancelLocked or in finish: both wake the sleepers
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
	// parentWatched: the context package cannot see into the parent (a
	// context type of the user's), so a goroutine of the run watches it
	// (watched.AfterFunc, called while newRun makes the run's context) and
	// its end reaches the run's context a moment after its Done channel
	// closed (see ending).
	parentWatched bool
	// The run's context: cancelled reads its Err for every item under a
	// parent that can end. It sits with the other fields read for every
	// item (draining, over, ownOnly), not at the struct's start, where a
	// 1,000-item run under a request's context took 138 us against 110
	// here (medians of four interleaved rounds of BenchmarkSmallRun;
	// under Background 95-97 in both). Why is not established: nothing at
	// the start is written per item (wg changes a few times per run), and
	// a run's start moves between two offsets in its cache line from one
	// allocation to the next. Measure before moving it.
	ctx context.Context

	// Opening, from the sink's goroutine only.
	scope       *drainScope // the drain scope of the sources being opened (see Until)
	opening     *opening    // made on first use (see opened)
	recyclers   []recycler  // states that go back to their pools at finish (engine_recycle.go)
	recycleRoom [2]recycler // recyclers' first room: a small run makes no slice for them
	stages      int         // stages opened so far
	started     bool

	// The sink's outcome, from the sink's goroutine only.
	ended   bool // the sink saw the end of the stream while the run was live and its parent had not ended (see sawEnd)
	stopped bool // the sink's f returned ErrStop

	mu           sync.Mutex
	ctxCancelled bool // the run made its one attempt to cancel its context (the parent's end may have got there first: see cancelCtxLocked)
	finished     bool
	// wakeAtFinish: the wakers are finish's to wake (see cancelForFinish); the
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
		panic("sluice: stage.Run: nil context")
	}
	r := &run{parent: parent, parentDone: parent.Done()}
	r.ownOnly = r.parentDone == nil
	if r.ownOnly {
		r.ctx, r.cancelCtx = context.WithCancelCause(parent) // never watched: nothing to ask
	} else {
		r.watchParent = watched{Context: parent, r: r}
		r.ctx, r.cancelCtx = context.WithCancelCause(&r.watchParent) // see run_userctx.go
	}
	r.wakers = r.wakerSlots[:0]
	return r
}

// halted reports whether the run takes no new items from its sources.
func (r *run) halted() bool {
	return r.draining.Load() || r.ending()
}

// ending reports whether the run is cancelled (see cancelled) or its
// parent's end is on its way to it: a parent the run watches from a
// goroutine of its own (parentWatched) has closed its Done channel. Sources
// take no new item and the sink delivers nothing more once it is true, as
// they do once a standard parent is cancelled, which cancels the run's
// context at once; the run's decisions treat such an end as the parent's
// (sawEnd, parentEnding). It reads the channel the parent gave at the
// start: no user code.
func (r *run) ending() bool {
	return r.cancelled() || r.parentWatched && r.parentClosed()
}

// cancelled reports whether the run is cancelled: its context is done, or
// is being cancelled by cancelRun or finish. When only the run can cancel
// its context (the parent never ends: context.Background), that is the
// over flag, which cancelRun and finish (then the only cancellations) set
// before they close the context's channel, under mu with the cause (see
// cancelLocked): one atomic load instead of a receive on a channel every
// goroutine of the run looks at. With a parent that can end, the parent
// may cancel the context without setting over, so the context decides:
// its Err, which by Context's contract is non-nil once Done is closed and
// nil before. Err is an atomic load
// of the run's own context (never user code), cheaper than a non-blocking
// receive, and this is asked about six times per item; nor does the run
// make its context's channel for it. The
// run's decisions (fail, sourceFailed, sawEnd) look here too, never at the
// context themselves, so that they agree with what its goroutines saw.
func (r *run) cancelled() bool {
	if r.ownOnly {
		return r.over.Load()
	}
	return r.ctx.Err() != nil
}

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
// calls it once, after opening. It reports false if a check failed: then no
// goroutine started, no item will ever come, and the sink must not wait for
// one, since the run may not be cancelled (a failure that comes after the
// parent's end, on its way, is dropped: see fail; and the run's watcher of
// the parent may be waiting in the parent's Err for the run's end).
func (r *run) start() bool {
	o := r.opening
	if o == nil {
		r.started = true
		return true
	}
	for _, f := range o.checks {
		if err := f(); err != nil {
			r.fail(err)
			return false
		}
	}
	r.started = true
	for _, f := range o.pending {
		r.goroutine(f)
	}
	o.pending = nil
	return true
}

// onFinish registers f to run once every goroutine of the run has exited.
func (r *run) onFinish(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
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
