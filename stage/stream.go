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
type Stream[T any] struct {
	n    *node
	open func(r *run) puller[T]

	// fuse, when set, opens the stream for a consumer that pulls from at
	// most fuseWorkers goroutines, each through a handle of its own that may
	// take one of the stage's worker places (see fuseRun). More consumer
	// goroutines than workers would leave some of them without places and
	// hold the consumer's own calls back, so the stream is then opened
	// plainly. It is set for unordered Map, Filter, FlatMap and Concurrent
	// stages of more than one worker and no Buffer.
	fuse        func(r *run) func() puller[T]
	fuseWorkers int
}

// openFor opens s for a consumer that pulls from consumers goroutines, and
// returns the function that gives each of them its handle.
func (s Stream[T]) openFor(r *run, consumers int) func() puller[T] {
	if s.fuse != nil && consumers <= s.fuseWorkers {
		return s.fuse(r)
	}
	p := s.open(r)
	return func() puller[T] { return p }
}

// node is a stream's identity in the pipeline graph, used to reject a stream
// that is consumed twice.
type node struct {
	kind   string
	inputs []*node
	shared bool // read by several streams (Tee's branches)
	known  bool // the number of items is known: total
	total  int
	// waits: pulling from the stream may wait for outside events without
	// bound (a channel, a reader, a broker). A stage over such a stream
	// never runs in its consumer's goroutines: a consumer blocked inside
	// the source would hold back outputs that the stage's other workers
	// have finished (see fuseRun).
	waits bool
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

// item is what travels between stages: a value, or a forwarded error in its
// place, and its flags. It has three fields on purpose: an item is copied at
// every step of its way, and each word counts (a fifth field once made the
// whole pipeline twice as slow; a fourth, for acknowledgements, cost 20%).
// So an acknowledgement rides in err: a value's err is its *ackNode, and a
// forwarded error with one is an *ackedError. Read err through failure and
// acked, never directly.
type item[T any] struct {
	v     T
	err   error
	flags flags
}

// failure is the forwarded error the item carries in its value's place, or
// nil for a value.
func (it item[T]) failure() error {
	if it.err == nil {
		return nil // the common case, inlined
	}
	return failureOf(it.err)
}

func failureOf(err error) error {
	switch e := err.(type) {
	case *ackNode:
		return nil
	case *ackedError:
		return e.err
	}
	return err
}

// acked is the item's acknowledgement, or nil.
func (it item[T]) acked() *ackNode {
	if it.err == nil {
		return nil
	}
	return ackOf(it.err)
}

func ackOf(err error) *ackNode {
	switch e := err.(type) {
	case *ackNode:
		return e
	case *ackedError:
		return e.ack
	}
	return nil
}

// withAck is the err field of an item that carries the forwarded error err
// (nil for a value) and the acknowledgement a (nil for none).
func withAck(err error, a *ackNode) error {
	switch {
	case a == nil:
		return err
	case err == nil:
		return a
	}
	return &ackedError{err: err, ack: a}
}

// ackedError is a forwarded error and its acknowledgement, in an item.
type ackedError struct {
	err error
	ack *ackNode
}

func (e *ackedError) Error() string { return e.err.Error() }

type flags uint8

const (
	// tok: the item carries its producer's backpressure token (see pipe).
	tok flags = 1 << iota
	// baton: no item, a worker's place handed to the consumer (see fuseRun).
	baton
	// owed: handed to a consumer that was waiting for it; its token went
	// back at once (see pipe.push).
	owed
)

func (it item[T]) is(f flags) bool { return it.flags&f != 0 }

func tokIf(b bool) flags {
	if b {
		return tok
	}
	return 0
}

// puller is a stream opened in one run. pull returns the next item and its
// 0-based index in the stream, or ok == false when the stream has ended:
// exhausted, stopped by a source error, or cancelled. pull is safe for
// concurrent use; it takes an item only when called, in the stream's order,
// and returns ok == false once the run is cancelled.
type puller[T any] interface {
	pull() (it item[T], idx int, ok bool)
}

// batchPuller is a puller from which the sink can take every ready item at
// once (see pipe.pullAll).
type batchPuller[T any] interface {
	puller[T]
	pullAll(dst []item[T]) ([]item[T], bool)
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
