package stage

import "fmt"

// Stream is a lazy description of a sequence of items of type T: a source
// followed by any number of stages. Building a Stream runs nothing and calls
// no user code; a sink runs it, and each sink call runs it anew.
//
// Within one pipeline a Stream feeds exactly one consumer: the stage built on
// it or the sink that runs it. [Merge] panics when two of its inputs share a
// stream, since that would make two consumers take items from one stream.
// The zero Stream is invalid: the functions that take a stream panic on it.
//
// Several sinks may run one Stream at the same time: each run has its own
// goroutines, queues and stage state. What the runs share is what their
// sources share: source.Slice reads the same slice (safe), source.Chan
// receives from the same channel (each value goes to one run), a
// [Source]'s open is called once per run (its state is per run unless it
// shares some), while source.Func calls the same next function from both
// runs (it must be safe for that) and source.Lines reads the same reader
// (not safe: do not run a Lines stream twice at once).
type Stream[T any] struct {
	_    [0]func() // not comparable: open may hold a function
	n    *node
	open opener[T]

	// fuse, when set, opens the stream for a consumer that pulls from at
	// most fuseConsumers goroutines, each through a handle of its own that
	// may take one of the stage's worker places (see fuseRun). More
	// consumer goroutines than workers would leave some of them without
	// places and hold the consumer's own calls back, so the stream is then
	// opened plainly. It is set for Map, Filter, FlatMap and Concurrent
	// stages of more than one worker and no Buffer (Ordered ones only over
	// a source that never waits, and they give a place to the consumer
	// only for a single item: see fuseRun); a FlatMap and an Ordered stage
	// fuse only into a consumer of one goroutine (see apply).
	fuse          fuser[T]
	fuseConsumers int
}

// opener opens a stream in a run: it builds the run's state of the
// stream's last step (opening its inputs first) and returns the puller
// its consumer pulls from. A stage's build implements it (and fuser) with
// its own methods, so that a stream costs no closure; openFunc adapts a
// function.
type opener[T any] interface{ open(r *run) puller[T] }

// fuser opens a fused stream for a consumer whose goroutines may take its
// worker places (see Stream.fuse); fuseFunc adapts a function.
type fuser[T any] interface{ fuse(r *run) handles[T] }

type (
	openFunc[T any] func(r *run) puller[T]
	fuseFunc[T any] func(r *run) handles[T]
)

func (f openFunc[T]) open(r *run) puller[T]  { return f(r) }
func (f fuseFunc[T]) fuse(r *run) handles[T] { return f(r) }

// openFor opens s for a consumer that pulls from consumers goroutines, and
// returns what gives each of them its handle.
func (s Stream[T]) openFor(r *run, consumers int) handles[T] {
	if s.fuse != nil && consumers <= s.fuseConsumers {
		return s.fuse.fuse(r)
	}
	return handles[T]{shared: s.open.open(r)}
}

// handles gives each goroutine of a consumer its handle on an opened
// stream: the stream's one puller, which they share, or a new handle of a
// fused stage for each (see fuseRun). It is a value, so that opening a
// stream makes no closure for it.
type handles[T any] struct {
	shared puller[T]
	fused  interface{ newHandle() puller[T] } // set for a fused stage
}

// next returns the handle of one more goroutine of the consumer.
func (h handles[T]) next() puller[T] {
	if h.fused != nil {
		return h.fused.newHandle()
	}
	return h.shared
}

// Len reports how many items s carries when that is known from how it was
// built, and -1 otherwise: a source.Slice or [Indexed] source of n items,
// through stages that give one item per item (Map, Concurrent), carries n;
// a Filter, FlatMap, Apply, Batch, Merge or Tee makes it unknown. It is
// what [Info].Total reports for a stage built on s (Total counts the items
// a stage takes in). Forwarded errors count as items. A run that ends early
// carries fewer, and so does one in which a Map or Concurrent under a
// [Handle] or [Budget] policy dropped items: Len is then the most s can
// carry. Sinks use it only to size what they collect. Len calls no user
// code and costs nothing. The zero Stream's Len is -1 (a sink that is
// given it panics when it runs it).
func (s Stream[T]) Len() int {
	if s.n == nil {
		return -1
	}
	return s.n.expected()
}

// node is a stream's identity in the pipeline graph, used to reject a stream
// that is consumed twice.
type node struct {
	kind   string
	inputs []*node
	total  int  // the number of items, if known
	known  bool // the number of items is known: total
	shared bool // read by several streams (Tee's branches)
	// branches: a shared node's number of branches (see checkWholeTees).
	branches int
	// waits: pulling from the stream may wait for outside events without
	// bound (a channel, a reader, a broker). A stage over such a stream
	// never runs in its consumer's goroutines: a consumer blocked inside
	// the source would hold back outputs that the stage's other workers
	// have finished (see fuseRun).
	waits bool
	// batches: the stream is a Batch's output, whose items' acknowledgements
	// are their elements' (see Unbatch).
	batches bool
	// source: the stream is a source made by Source or AckSource (see
	// NeverWaits).
	source bool
	// tries: the stream's puller is a tryPuller (an Interruptible source,
	// or Until over one): a consumer that must not wait may take an item
	// that is ready.
	tries bool
}

// expected is the number of items the stream will carry, or -1.
func (n *node) expected() int {
	if !n.known {
		return -1
	}
	return n.total
}

// keepTotal says that out carries one item per item of in (Map).
func keepTotal[In, Out any](in Stream[In], out Stream[Out]) Stream[Out] {
	out.n.known, out.n.total = in.n.known, in.n.total
	return out
}

// check panics if s is the zero Stream; fn names the caller.
func (s Stream[T]) check(fn string) {
	if s.open == nil {
		panic(fmt.Sprintf("sluice: %s: nil stream", fn))
	}
}

// checkFunc panics if f is nil; fn names the caller.
func checkFunc(isNil bool, fn, what string) {
	if isNil {
		panic(fmt.Sprintf("sluice: %s: nil %s", fn, what))
	}
}

// checkWholeTees panics if the stream of n reads some branches of a Tee
// and not all of them: a drain (Until) there would stop a source that the
// other branches share, or not stop it, depending on which branch a run
// opens first. fn names the caller.
func checkWholeTees(fn string, n *node) {
	seen := map[*node]bool{}
	reached := map[*node]int{} // a Tee's shared node: its branches n reads
	var walk func(n *node)
	walk = func(n *node) {
		if seen[n] {
			return
		}
		seen[n] = true
		for _, in := range n.inputs {
			if in.shared {
				reached[in]++ // n is one of its branches, seen once
			}
			// An Until upstream was checked when it was built: every Tee
			// its input reaches is whole within it, and no other stream can
			// reach that Tee's branches; so a chain of Untils is walked once.
			if in.kind != "until" {
				walk(in)
			}
		}
	}
	walk(n)
	for shared, got := range reached {
		if got < shared.branches {
			panic(fmt.Sprintf("sluice: %s: the stream reads %d of the %d branches of a Tee, which share its source: put %s before the Tee (or over all its branches)", fn, got, shared.branches, fn))
		}
	}
}

// checkDisjoint panics if two of the streams share an upstream node, so that
// a stream would be consumed twice in one run. Tee's shared node is the one
// node that several streams may reach; above it, the graph is walked once.
func checkDisjoint(fn string, ns []*node) {
	owner := map[*node]int{}
	var walk func(n *node, i int)
	walk = func(n *node, i int) {
		if j, seen := owner[n]; seen {
			if j != i && !n.shared {
				panic(fmt.Sprintf("sluice: %s: inputs %d and %d share the %q stream; a stream feeds one consumer, build a separate stream for each use", fn, j, i, n.kind))
			}
			return
		}
		owner[n] = i
		for _, in := range n.inputs {
			walk(in, i)
		}
	}
	for i, n := range ns {
		walk(n, i)
	}
}
