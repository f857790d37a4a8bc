package stage

import (
	"fmt"
	"runtime"
)

// Option configures a stage; make one with [Workers], [Ordered], [OnError],
// [Name] or [Buffer]. Options are checked when they are made and when the
// stage is built: an invalid one panics there, never during a run. The
// zero Option is not an option: building a stage with one panics.
type Option struct {
	// apply sets the option; n is its number, for the options that have
	// one, so that making them makes no closure.
	apply func(c *config, n int)
	n     int
}

// config is a stage's configuration. It is part of every stage as built,
// and its size is part of the cost of a short run: what few stages set
// (Retry, Timeout, RateLimit) is behind a pointer.
type config struct {
	name    string // set by Name; else "kind#position" (see stageName)
	kind    string
	workers int // >= 1, or -1 for unlimited
	policy  ErrorPolicy
	buffer  int
	pos     int32 // per run: the stage's position, 1 for the first opened
	ordered bool
	split   bool // Unbatch straight after Batch: outputs take the members' acknowledgements
	eager   bool // Apply: the function emits while it runs
	single  bool // at most one output, emitted once the user's function returned

	// Calls of user code (see calls.go).
	calls *callOptions // nil: none set
	key   any          // a keyer[In], set by KeyBy

	// Per run, set by forRun.
	handler *handler
	obs     Watcher
}

// DefaultWorkers is the worker count of a stage built without [Workers] (or
// with Workers(0)): min(runtime.NumCPU()+4, 32), as in the Python original.
func DefaultWorkers() int { return min(runtime.NumCPU()+4, 32) }

// Workers sets how many calls of the stage's function may run at once.
// n >= 1: at most n, and with enough input and a consumer that keeps up
// exactly n (see below for a consumer that runs calls itself). 0:
// [DefaultWorkers].
// -1: no limit, one goroutine per item (memory then grows with the number of
// items in flight). Workers panics if n < -1.
//
// The n workers are goroutines, but not always the stage's own. For an
// unordered Map, Filter, FlatMap or Concurrent stage without a [Buffer],
// over a source that never waits (a slice, [NeverWaits]) or one marked
// [Interruptible] (source.Chan), the goroutines of its consumer (the sink's,
// or the next stage's workers; for a FlatMap, only a consumer that pulls
// from one goroutine at a time, such as a sink, a stage of one worker or a
// [KeyBy] stage, whose workers pull in turns, since an item's many outputs
// would all go to the one that called) may take workers' places: once calls
// prove cheap (a few microseconds), a worker goroutine gives its place to a
// consumer goroutine, which from then on calls the function itself whenever
// nothing is ready for it, instead of waiting. A hand-off between goroutines
// costs far more than a cheap function, so this is where sluice's speed
// comes from. Such a stage (or one of one worker, or an [Ordered] one over
// a source that never waits, for a consumer that pulls from one goroutine
// at a time) whose input is known to hold a single item (its [Stream.Len]
// is 1) calls the function in its consumer's goroutine from the start,
// whatever the call costs, and starts no goroutine of its own. (An Ordered
// stage of more workers over any other input,
// Workers(-1), and a stage under [RateLimit] or [SharedRateLimit], whose
// wait for a token would hold its consumer, keep their calls in goroutines
// of their own.) Once calls turn
// slow (two timed calls in a row over about 20 µs; calls are timed now and
// then), a place that a consumer goroutine took goes back to a goroutine of
// the stage's own. With one worker this is the sequential path: the stage's
// calls then take turns with its consumer's work instead of overlapping it.
//
// Any stage whose input is known to hold k items (Stream.Len is k) runs
// at most k goroutines at a time to call its function, whatever n is
// (Workers(-1) adds its dispatcher): a large n over a small input costs
// neither goroutines nor memory. Over an input of unknown length (and
// over one of more than 64 items), a stage starts at most 64 workers at
// once (with the run, or at its consumer's first pull) and each further
// one when a worker has just taken an item, so a large n starts about as
// many goroutines as the input has items, up to n.
//
// While a consumer goroutine is inside a call, it takes no output: the
// stage's other workers stop once the outputs they finished fill the
// stage's read-ahead. (And over an [Interruptible] source, one that holds
// a place and found no item ready waits for an output with it: after the
// source was empty, fewer than n calls may run until outputs come.) So a function that waits for the consumer to take
// another output of the same stage (in the sink's callback, or the next
// stage's function), or for other calls of the same stage (a barrier of n
// calls: fewer than n may then be running), may wait for ever. Add
// Buffer(1) to keep every worker a goroutine of the stage's own: the
// stage's function may then wait for its consumer or for its peers (an
// Ordered Apply's for a later peer only while the outputs waiting for
// their turn stay within its window: see Apply).
func Workers(n int) Option {
	if n < -1 {
		panic(fmt.Sprintf("sluice: stage.Workers: n = %d, want -1 (unlimited), 0 (default) or more", n))
	}
	if n == 0 {
		n = DefaultWorkers()
	}
	return Option{apply: setWorkers, n: n}
}

// Ordered makes the stage emit its outputs in the order of its input.
// Finished items wait in a reorder window behind a slow one: the stage takes
// at most 2×workers+buffer items from upstream that its consumer has not yet
// taken, and then stops pulling; an [Apply]'s outputs that wait for their
// item's turn are bounded the same way (see Apply). With Workers(-1) the
// window is unbounded.
// Without Ordered, outputs leave in completion order (with one worker that
// is input order too). Under [FailFast] a failure ends the run when its
// call fails, not at its turn: the outputs of earlier items still waiting
// for their turn, or still being made, are not delivered ([Forward] keeps
// the failure in its place).
//
// Sizing the window: while one slow item is the oldest in flight, the
// stage goes on only until the window is full. To keep the throughput of an
// unordered stage when some calls are much slower than most, give the
// window room for what the other workers finish meanwhile:
// [Buffer](workers × slowest / typical latency). For 32 workers calling a
// backend of 1–20 ms with a 1% tail of 200 ms, Buffer(32 × 200 / 10) =
// Buffer(640) keeps Ordered at the unordered throughput (without it, a
// third of it; see bench/README.md). The buffer costs memory only for the
// items it holds (its room grows, within a run, to the most it has held).
func Ordered() Option { return Option{apply: func(c *config, _ int) { c.ordered = true }} }

// OnError sets the stage's error policy: [FailFast] (the default, and the
// zero ErrorPolicy), [Forward], or one made by [Handle] or [Budget].
func OnError(p ErrorPolicy) Option {
	return Option{apply: func(c *config, _ int) { c.policy = p }}
}

// Name sets the stage's name: its *[Error] values and observers ([Info])
// carry it. A stage left unnamed is called by its kind and its position in
// the run, "map#1", "filter#2", ...: the stages that call a function (Map,
// Filter, FlatMap, Concurrent, Apply, Unbatch) are numbered from 1, named
// or not, in the order a run opens them, upstream first, so unnamed stages
// never share a name within a pipeline, and the same pipeline gets the same
// names in every run. Names you give are yours to keep distinct. Name
// panics if name is empty.
func Name(name string) Option {
	if name == "" {
		panic("sluice: stage.Name: empty name")
	}
	return Option{apply: func(c *config, _ int) { c.name = name }}
}

// Buffer lets the stage run n more items ahead of its consumer (default 0):
// finished outputs wait for a slow consumer while the workers go on. It adds
// n to the read-ahead bound, and a stage with a Buffer always runs all of
// its workers as goroutines of its own (see [Workers]). Over a source that
// may wait, with cheap calls, a Buffer of about the worker count also costs
// less per item: the consumer takes what is ready at each wake-up, at most
// the read-ahead's outputs, so a larger read-ahead wakes it less often
// (bench/README.md has the figures). Buffer panics if n < 0.
func Buffer(n int) Option {
	if n < 0 {
		panic(fmt.Sprintf("sluice: stage.Buffer: n = %d, want 0 or more", n))
	}
	return Option{apply: setBuffer, n: n}
}

func setWorkers(c *config, n int) { c.workers = n }
func setBuffer(c *config, n int)  { c.buffer = n }

// set makes c the configuration that opts give the stage built by fn
// (e.g. "stage.Map"), whose kind is its default name. It works in place
// (c is the stage's own), so that building a stage makes no copy of it on
// the heap.
func (c *config) set(fn, kind string, opts []Option) {
	*c = config{kind: kind, workers: DefaultWorkers()}
	for _, o := range opts {
		if o.apply == nil {
			panic("sluice: " + fn + ": zero Option")
		}
		o.apply(c, o.n)
	}
}
