package stage

import (
	"sync/atomic"

	"github.com/sluicedev/sluice/internal/guard"
)

// Indexed returns a stream of n items, at(0), at(1), ..., at(n-1): the
// primitive for sources whose items are known by position (source.Slice is
// written with it). It takes no lock: the workers of the stage after it
// claim positions with one atomic add each, so at is called from several
// goroutines at once, once per position, and must be safe for that (reading a
// slice is). Positions are claimed in order, and only when a stage is ready
// for an item; once the run is cancelled or its input has ended, no call
// of at starts but one already on its way in another goroutine (calls are
// concurrent). at must not wait (it reads what is in hand): cheap stages
// over an Indexed source may run in their consumer's goroutines. A panic
// in at ends the run with a *[SourceError] once the items made have gone
// through: those of later positions whose at was called too (under
// [Ordered] in order, without the lost one). Indexed panics if n < 0 or at
// is nil.
func Indexed[T any](n int, at func(i int) T) Stream[T] {
	if n < 0 {
		panic("sluice: stage.Indexed: negative length")
	}
	checkFunc(at == nil, "stage.Indexed", "function")
	d := &indexed[T]{node: node{kind: "source", known: true, total: n}, n: n, at: at}
	return Stream[T]{n: &d.node, open: d}
}

// indexed is an Indexed stream as built: one allocation.
type indexed[T any] struct {
	node node
	n    int
	at   func(int) T
}

func (d *indexed[T]) open(r *run) puller[T] {
	return &indexPuller[T]{r: r, scope: r.scope, n: d.n, at: d.at}
}

type indexPuller[T any] struct {
	r     *run
	scope *drainScope
	n     int
	at    func(int) T
	next  atomic.Int64
}

// remaining is how many items are left (see sizedPuller).
func (p *indexPuller[T]) remaining() int { return max(p.n-int(p.next.Load()), 0) }

func (p *indexPuller[T]) pull() (item[T], int, bool) {
	if p.r.halted() || p.scope.stopped() {
		return item[T]{}, 0, false
	}
	i := int(p.next.Add(1) - 1)
	if i >= p.n {
		return item[T]{}, 0, false
	}
	var v T
	if rec := guard.Call(func() { v = p.at(i) }); rec != nil {
		p.r.sourceFailed(&SourceError{Err: panicError(rec)})
		// Position i is lost, and a later one may be made already: an
		// Ordered window must not wait for i (see puller).
		return item[T]{flags: gap}, i, false
	}
	if p.r.ending() { // at (user code) may have cancelled the run: no new item starts
		return item[T]{}, 0, false
	}
	return item[T]{v: v}, i, true
}
