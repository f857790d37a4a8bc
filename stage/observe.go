package stage

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sourcegraph/conc/panics"

	"github.com/sluicedev/sluice/internal/guard"
)

// Observer watches the stages of the runs it is attached to (see
// [Observe]): metrics, progress bars, logs. [Stats] and [Logger] are
// built in; adapters for Prometheus and OpenTelemetry live in their own
// modules.
type Observer interface {
	// Stage is called once per stage per run, when the run is opened, and
	// returns what watches that stage in that run (nil: not watched). It
	// is called from the sink's goroutine for every stage of the pipeline
	// that calls a function (Map, Filter, FlatMap, Concurrent, Apply,
	// Unbatch; not Batch, Tee, Merge or Until), upstream first, before any
	// goroutine of the run that calls a function of the pipeline starts
	// and before any item is taken. (Only the run's watchers of contexts
	// may run already: the one that watches a caller's context of a type
	// the context package cannot see into, see Cancellation in the package
	// doc, and an Until's hook on a stop context that is done. A source's
	// open may wait on its context, and they are what ends it.)
	Stage(info Info) Watcher
}

// Watcher watches one stage in one run. Its methods are called from
// the stage's workers, several at once, on the hot path: they must be safe
// for concurrent use and cheap (an atomic add, not a lock and a log line).
//
// An observer is user code: a panic in Stage or in a Watcher's method
// fails the run, and the process goes on. The sink returns an error
// wrapping a *[PanicError] (unless the run had failed already, or the
// caller's ctx had ended it: see Cancellation in the package doc; a panic in
// Closed, which comes once the run is over, is returned only where the sink
// would otherwise have returned nil: not when the run failed, a source
// failed, the caller's context ended it, or it stopped early by ErrStop,
// First or a break). After a panic, the watcher is told nothing more in
// that run but its Closed.
type Watcher interface {
	// Received: the stage took an item and is about to call its function
	// on it (or, when its [KeyBy] key function panicked, to hand it to the
	// policy without a call: Finished then gets its *[Error], of Attempts
	// 0). Forwarded errors, which pass through without a call, are not
	// reported.
	Received()
	// Finished: the call (all its attempts under [Retry]) ended after
	// latency, measured from Received to the end of the last attempt: the
	// waits for [RateLimit] tokens, the backoff between attempts and a
	// FlatMap's or Apply's waits for room for its outputs count (it is how
	// long the item held a worker). err is nil on success; the *[Error] that the stage's
	// [ErrorPolicy] is about to handle (of that type, not wrapped): the
	// item failed; or, when the call returned an error once the run was
	// ending (a failure elsewhere, the caller's cancellation, an early
	// stop), an error for which errors.Is(err, context.Canceled) holds and
	// that neither is nor wraps an *Error, whatever error the function
	// returned: the call neither succeeded nor failed. Its message names
	// the run's cause (context.Cause of the run's context). A call that
	// returned nil is a success, even once the run was ending (as under
	// [Timeout]). A call that runtime.Goexit ended (see [ErrGoexit]) is
	// reported as cut short too, naming ErrGoexit, from the ending
	// goroutine: before the run has recorded the Goexit as its failure.
	Finished(latency time.Duration, err error)
	// Closed: the run is over and every goroutine of it has exited; the
	// stage reports nothing more. Called once, from the sink's goroutine.
	Closed()
}

// Info describes a stage to an [Observer].
type Info struct {
	Name    string // the stage's name (see [Name])
	Kind    string // "map", "filter", "flatmap", "concurrent", "apply", "unbatch", ...
	Workers int    // the Workers bound; -1: no limit
	// Total is the number of items the stage expects, when its source knows
	// its length (source.Slice, Indexed) and the stages between keep one
	// output per input (Map, Concurrent, Until): a progress bar's 100%. It
	// is -1 when unknown (after a Filter, FlatMap, Apply, Batch, Merge or
	// Tee). Forwarded errors count; items dropped by a [Handle] policy
	// upstream make the real count smaller.
	Total int
}

type observerKey struct{}

// Observe returns a copy of ctx that attaches o to every run started with it
// (or with a context derived from it): give it to the sink. Observers
// attached by several calls all see every stage, each on its own (one
// attached twice sees it twice): one that panics (see [Watcher]) is told
// nothing more, the others are told everything. Observe panics if ctx or o
// is nil.
//
// Cost: nothing per item when no observer is attached; with one, two reads
// of the clock and the observer's two calls per item, each behind a panic
// guard, and no allocation.
func Observe(ctx context.Context, o Observer) context.Context {
	checkFunc(ctx == nil, "stage.Observe", "context")
	checkFunc(o == nil, "stage.Observe", "observer")
	prev, _ := ctx.Value(observerKey{}).(observers)
	// A new slice: contexts derived from ctx before keep their observers.
	return context.WithValue(ctx, observerKey{}, append(prev[:len(prev):len(prev)], o))
}

// observers is the observers attached to a context, in the order attached.
type observers []Observer

// watchers is a stage's watchers when several observers watch it, each
// guarded on its own (see guardedWatcher).
type watchers []*guardedWatcher

func (s watchers) Received() {
	for _, o := range s {
		o.Received()
	}
}

func (s watchers) Finished(d time.Duration, err error) {
	for _, o := range s {
		o.Finished(d, err)
	}
}

func (s watchers) Closed() {
	for _, o := range s {
		o.Closed()
	}
}

// observe returns the watcher of a stage in run r, or nil, and arranges
// for its Closed calls. Each observer is user code, guarded on its own: a
// panic in one fails the run and silences that one only (see
// guardedWatcher).
func (r *run) observe(c *config, total int) Watcher {
	os, _ := r.ctx.Value(observerKey{}).(observers)
	if len(os) == 0 {
		return nil
	}
	info := Info{Name: c.stageName(), Kind: c.kind, Workers: c.workers, Total: total}
	if len(os) == 1 { // no slice of watchers
		if g := r.watch(os[0], info); g != nil {
			return g
		}
		return nil
	}
	var all watchers
	for _, o := range os {
		if g := r.watch(o, info); g != nil {
			all = append(all, g)
		}
	}
	switch len(all) {
	case 0:
		return nil
	case 1:
		return all[0]
	}
	return all
}

// watch asks o for its watcher of the stage info describes: nil if o
// watches it not, or if Stage panicked (the run then fails).
func (r *run) watch(o Observer, info Info) *guardedWatcher {
	var so Watcher
	if rec := guard.Call(func() { so = o.Stage(info) }); rec != nil {
		r.fail(observerPanic(info.Name, rec))
		return nil
	}
	if so == nil {
		return nil
	}
	g := &guardedWatcher{w: so, r: r, name: info.Name}
	r.onFinish(g.Closed)
	return g
}

// observerPanic is the error of a run whose observer panicked.
func observerPanic(name string, rec *panics.Recovered) error {
	return fmt.Errorf("sluice: the observer of stage %q panicked: %w", name, panicError(rec))
}

// guardedWatcher calls one observer's watcher of a stage so that its
// panics end the run, not the process: the first fails the run with an
// error wrapping a *PanicError, and from then on that watcher is told
// nothing more but its Closed (see the Watcher doc); the stage's other
// watchers, guarded each on its own, go on.
type guardedWatcher struct {
	w      Watcher
	r      *run
	name   string
	broken atomic.Bool
}

func (g *guardedWatcher) Received() {
	if !g.broken.Load() {
		if rec := guard.Call(g.w.Received); rec != nil {
			g.panicked(rec)
		}
	}
}

func (g *guardedWatcher) Finished(d time.Duration, err error) {
	if !g.broken.Load() {
		if rec := guard.Call(func() { g.w.Finished(d, err) }); rec != nil {
			g.panicked(rec)
		}
	}
}

// Closed is called once every goroutine of the run has exited (see
// run.finish).
func (g *guardedWatcher) Closed() {
	if rec := guard.Call(g.w.Closed); rec != nil {
		g.r.lateFail(observerPanic(g.name, rec))
	}
}

func (g *guardedWatcher) panicked(rec *panics.Recovered) {
	if g.broken.CompareAndSwap(false, true) {
		g.r.fail(observerPanic(g.name, rec))
	}
}

// cutShortError is what a watcher's Finished gets for a call that ended
// because the run did: context.Canceled, naming the run's cause, and never
// an *Error, so that a call cut short by another stage's failure is not
// counted as a failure of this one (see Watcher).
type cutShortError struct{ cause error }

func cutShort(r *run) error {
	cause := r.cause()
	if cause == nil { // never, once the run is over (see run.cause); a defence
		cause = context.Canceled
	}
	return &cutShortError{cause: cause}
}

func (e *cutShortError) Error() string {
	return "sluice: the call was cut short by the end of the run: " + e.cause.Error()
}

func (e *cutShortError) Is(target error) bool { return target == context.Canceled }

// started reports a received item and returns its start time (zero when
// not observed).
func (c *config) started() time.Time {
	if c.obs == nil {
		return time.Time{} // inlined: no observer costs a comparison
	}
	return c.received()
}

func (c *config) received() time.Time {
	c.obs.Received()
	return time.Now()
}

// finished reports the end of a call that started at start.
func (c *config) finished(start time.Time, err error) {
	if c.obs != nil {
		c.report(start, err)
	}
}

func (c *config) report(start time.Time, err error) { c.obs.Finished(time.Since(start), err) }
