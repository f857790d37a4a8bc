package stage

import "sync"

// Recycling. The state of a fused stage in one run (fuseRun: its queue,
// processor, first consumer handle; an Ordered one's reorder window, with
// its ring, and its first goroutines' steppers) is most of what a small
// run allocates.
// It comes from a pool when the stage opens and goes back, zeroed, when
// the run finishes (see run.finish), so that a service running many small
// runs does not make the garbage collector sweep it up each time. So does
// the sink's batch (see Run, takeBatch), cleared, once the run finished.
//
// Invariant: once finish has waited for every goroutine of the run and its
// hooks, and has run the cleanups, nothing uses a recycled state again:
//   - the run's goroutines, the only ones that pull through a stage's
//     handles besides the sink's loop in Run, have exited, and the sink's
//     loop ended before finish;
//   - user code never holds a reference into it: a user's function sees
//     the run's context (not recycled) and its items, and Apply, whose emit
//     is the one function of the engine handed to user code, never fuses.
//
// A state is zeroed as it goes back, so a pooled state holds nothing of
// the run (no user function, no item); its size grows with the stage's
// types (its queue has room for 8 outputs, its steppers for an item each),
// and the garbage collector empties the pools within two cycles. A run whose finish panics (a bug of
// the library's, see run.bug) gives nothing back: its states are left to
// the garbage collector. In the stage package's own tests states are
// zeroed but never reused (recycleReuse is off), so that a use after
// finish fails the test instead of corrupting another run: a use through
// one of the state's pointers dereferences nil; a use of only its locks or
// counters (a late wake of its queue) races with the zeroing, which the
// race detector reports (the tests run with -race). So a test of this
// package that means to check reuse runs in a child process whose test's
// name holds "Recycled", the only place states are reused (see
// recycle_internal_test.go); the other packages' tests reuse them.

// recycler is a per-run state that goes back to its pool when the run
// finishes.
type recycler interface{ recycle() }

// recycleReuse: recycled states go back to their pool. Only the stage
// package's tests turn it off, before any run.
var recycleReuse = true

// pools holds a *sync.Pool per type of recycled state, keyed by
// poolKey[T]{} (an interface holding a zero-size value: no allocation).
var pools sync.Map

type poolKey[T any] struct{}

// poolOf returns the pool of *T.
func poolOf[T any]() *sync.Pool {
	k := any(poolKey[T]{})
	if p, ok := pools.Load(k); ok {
		return p.(*sync.Pool)
	}
	p, _ := pools.LoadOrStore(k, new(sync.Pool))
	return p.(*sync.Pool)
}

// fromPool returns a zero T from its pool, or a new one, and the pool it
// goes back to (see toPool): a caller that keeps the pool looks it up once.
func fromPool[T any]() (*T, *sync.Pool) {
	p := poolOf[T]()
	if x, ok := p.Get().(*T); ok {
		return x, p
	}
	return new(T), p
}

// toPool zeroes x and gives it back to p, its pool.
func toPool[T any](x *T, p *sync.Pool) {
	var zero T
	*x = zero
	if recycleReuse {
		p.Put(x)
	}
}

// recycleOnFinish registers x to go back to its pool once the run has
// finished (see the invariant above). From the sink's goroutine only, while
// the run opens.
func (r *run) recycleOnFinish(x recycler) {
	if r.recyclers == nil {
		r.recyclers = r.recycleRoom[:0]
	}
	r.recyclers = append(r.recyclers, x)
}

// recycle gives back every state registered with recycleOnFinish; the last
// step of finish.
func (r *run) recycle() {
	for i, x := range r.recyclers {
		x.recycle()
		r.recyclers[i] = nil
	}
	r.recyclers = nil
}

// batchRoom is a sink's batch (see Run), from its pool, and the pool it
// goes back to.
type batchRoom[T any] struct {
	items []item[T]
	home  *sync.Pool
}

// maxPooledBatch is the largest batch kept for another run: a run that
// once had many items ready at once does not pin their room for good.
const maxPooledBatch = 256

// takeBatch returns a batch room whose items are empty, with room for at
// least n.
func takeBatch[T any](n int) *batchRoom[T] {
	b, home := fromPool[batchRoom[T]]()
	b.home = home
	if cap(b.items) < n {
		b.items = make([]item[T], 0, n)
	}
	return b
}

// put gives the room back with items, the batch as the sink left it,
// cleared, once its run finished (the batch was the sink loop's alone, and
// the loop is over). A batch too large to keep goes to the garbage
// collector.
func (b *batchRoom[T]) put(items []item[T]) {
	if cap(items) > maxPooledBatch {
		items = nil
	}
	clear(items[:cap(items)])
	home := b.home
	*b = batchRoom[T]{items: items[:0]}
	if recycleReuse {
		home.Put(b)
	}
}
