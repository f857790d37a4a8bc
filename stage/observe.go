package stage

import (
	"context"
	"time"
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
	// goroutine of the run starts and before any item is taken.
	Stage(info Info) Watcher
}

// Watcher watches one stage in one run. Its methods are called from
// the stage's workers, several at once, on the hot path: they must be safe
// for concurrent use and cheap (an atomic add, not a lock and a log line).
type Watcher interface {
	// Received: the stage took an item and is about to call its function
	// on it. Forwarded errors, which pass through without a call, are not
	// reported.
	Received()
	// Finished: the call (all its attempts under [Retry]) ended after
	// latency. err is nil on success, or the *[Error] that the stage's
	// [ErrorPolicy] is about to handle, or the cause of the run's
	// cancellation when the call ended because the run did.
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
// attached by several calls all see every stage. Observe panics if o is nil.
//
// Cost: nothing per item when no observer is attached; with one, two reads
// of the clock and the observer's two calls per item, and no allocation.
func Observe(ctx context.Context, o Observer) context.Context {
	checkFunc(o == nil, "stage.Observe", "observer")
	if prev, ok := ctx.Value(observerKey{}).(Observer); ok {
		o = observers{prev, o}
	}
	return context.WithValue(ctx, observerKey{}, o)
}

// observers is several observers as one.
type observers []Observer

func (os observers) Stage(info Info) Watcher {
	var all watchers
	for _, o := range os {
		if so := o.Stage(info); so != nil {
			all = append(all, so)
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

type watchers []Watcher

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
// for its Closed call.
func (r *run) observe(c *config, total int) Watcher {
	o, ok := r.ctx.Value(observerKey{}).(Observer)
	if !ok {
		return nil
	}
	so := o.Stage(Info{Name: c.stageName(), Kind: c.kind, Workers: c.workers, Total: total})
	if so != nil {
		r.onFinish(so.Closed)
	}
	return so
}

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
