package stage

import (
	"errors"
	"fmt"
)

// Tee returns n streams that each see every item of in, in the order of in:
// the values themselves (a pointer or a slice is shared between branches,
// not copied) and every forwarded error (so each branch reports it).
//
// The branches run together in one run: build a stage on each, bring them
// back together with [Merge] (after mapping them to one type if needed), and
// run the merged stream with one sink call:
//
//	b := stage.Tee(rows, 2)
//	saved := stage.Map(b[0], save)  // Stream[Result]
//	logged := stage.Map(b[1], log)  // Stream[Result]
//	err := sink.ForEach(ctx, stage.Merge(saved, logged), report)
//
// A run that does not consume every branch fails before any goroutine of it
// that calls a function of the pipeline starts (see [Observer]'s Stage for
// the run's watchers of contexts) and before any item is taken, with an error that wraps
// [ErrUnconsumedBranch] and names the missing branch (a branch nobody reads
// would stop the others). One goroutine moves the items on; each branch holds at most
// one item its consumer has not taken, so the slowest branch sets the pace
// and nothing is buffered without bound. Tee panics if in is the zero
// Stream or n < 1.
func Tee[T any](in Stream[T], n int) []Stream[T] {
	in.check("stage.Tee")
	if n < 1 {
		panic(fmt.Sprintf("sluice: stage.Tee: n = %d, want 1 or more", n))
	}
	shared := &node{kind: "tee", inputs: []*node{in.n}, shared: true, branches: n, waits: in.n.waits}
	open := func(r *run) *teeRun[T] {
		t, ok := r.shared(shared).(*teeRun[T])
		if ok {
			return t
		}
		t = &teeRun[T]{opened: make([]bool, n)}
		for range n {
			t.outs = append(t.outs, newQueue[T](r, 1, 1))
		}
		in := in.openFor(r, 1).next()
		r.share(shared, t)
		r.check(func() error {
			for i, ok := range t.opened {
				if !ok {
					return fmt.Errorf("%w: branch %d of %d; run all branches with one sink (see Merge)", ErrUnconsumedBranch, i, n)
				}
			}
			return nil
		})
		r.goroutine(func() { t.move(in) })
		return t
	}
	branches := make([]Stream[T], n)
	for i := range branches {
		branches[i] = Stream[T]{
			n: &node{kind: fmt.Sprintf("tee[%d]", i), inputs: []*node{shared}, waits: in.n.waits},
			open: openFunc[T](func(r *run) puller[T] {
				t := open(r)
				t.opened[i] = true
				return t.outs[i]
			}),
		}
	}
	return branches
}

// teeRun is a Tee in one run.
type teeRun[T any] struct {
	outs   []*queue[T]
	opened []bool // branches opened in this run (set while opening)
}

// move copies each input item to every branch, waiting for room in each.
func (t *teeRun[T]) move(in puller[T]) {
	defer func() {
		for _, out := range t.outs {
			out.closeWriter()
		}
	}()
	for {
		it, _, ok := in.pull()
		if !ok {
			return
		}
		it.flags = tok
		if it.ack != nil { // each branch's copy holds a reference
			it.ack.refs.Add(int32(len(t.outs) - 1))
		}
		for _, out := range t.outs {
			if !out.acquire() {
				return
			}
			out.push(it)
		}
	}
}

// ErrUnconsumedBranch is wrapped by the error of a run that left a branch of
// a [Tee] unconsumed.
var ErrUnconsumedBranch = errors.New("sluice: stage.Tee: a branch is not consumed in this run")
