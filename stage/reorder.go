package stage

import "sync"

// reorder is the window of an Ordered stage. Workers finish items in any
// order and park their outputs in the item's slot; whichever worker finishes
// the item at the head of the window becomes the emitter and sends the head
// and every finished item after it, in order. No goroutine is dedicated to
// reordering, so an item costs one channel hand-off, as in an unordered stage.
//
// The window is bounded: a worker reserves a place before it pulls an item,
// and waits while window items are taken and not yet emitted. A window of 0
// is unbounded (Workers(-1)); the ring then grows as needed.
type reorder[T any] struct {
	out  chan<- item[T]
	done <-chan struct{}

	mu       sync.Mutex
	slots    []slot[T] // ring; len is a power of two; item i lives at i&mask
	mask     int
	next     int // index of the item to emit next
	hi       int // one past the highest index parked
	inflight int // places reserved and not yet emitted
	window   int
	emitting bool
	waiters  int
	space    chan struct{} // capacity 1: wakes one worker waiting for a place
	seq      int           // position of the next output
}

type slot[T any] struct {
	done bool
	vals []T
	err  error
}

func newReorder[T any](window int, out chan<- item[T], done <-chan struct{}) *reorder[T] {
	size := 1
	for size < max(window, 1) {
		size *= 2
	}
	return &reorder[T]{
		out: out, done: done, window: window,
		slots: make([]slot[T], size), mask: size - 1,
		space: make(chan struct{}, 1),
	}
}

// reserve waits for a place in the window; false means the run was cancelled.
func (o *reorder[T]) reserve() bool {
	o.mu.Lock()
	for o.inflight >= o.window {
		o.waiters++
		o.mu.Unlock()
		select {
		case <-o.space:
		case <-o.done:
			o.mu.Lock()
			o.waiters--
			o.mu.Unlock()
			return false
		}
		o.mu.Lock()
		o.waiters--
	}
	o.inflight++
	o.wake()
	o.mu.Unlock()
	return true
}

// unreserve gives back a place that found no item to pull.
func (o *reorder[T]) unreserve() {
	o.mu.Lock()
	o.inflight--
	o.wake()
	o.mu.Unlock()
}

// wake lets one waiting worker retry when there is room; called with mu held.
// Each woken worker wakes the next one while room is left, so no wake-up is
// lost even though space holds one token.
func (o *reorder[T]) wake() {
	if o.waiters > 0 && o.inflight < o.window {
		select {
		case o.space <- struct{}{}:
		default:
		}
	}
}

// complete parks item idx's outputs vals and error err (either may be empty),
// and emits what is in order. It returns an empty buffer for the caller's
// next item (the slot's old one, so buffers are reused) and false if the run
// was cancelled while emitting. streaming says the caller already holds the
// emitter role for idx, the head (see tryStream).
func (o *reorder[T]) complete(idx int, vals []T, err error, streaming bool) ([]T, bool) {
	if streaming {
		ok := o.sendAll(vals, err)
		clear(vals)
		o.mu.Lock()
		o.advance()
		return o.emitReady(vals[:0], ok)
	}
	o.mu.Lock()
	if o.window == 0 && idx-o.next >= len(o.slots) {
		o.grow(idx - o.next + 1)
	}
	s := &o.slots[idx&o.mask]
	spare := s.vals[:0]
	s.vals, s.err, s.done = vals, err, true
	o.hi = max(o.hi, idx+1)
	if o.emitting || idx != o.next {
		o.mu.Unlock()
		return spare, true
	}
	o.emitting = true
	return o.emitReady(spare, true)
}

// emitReady, called with mu held by the emitter, sends every finished item
// from the head on, then gives up the emitter role and unlocks.
func (o *reorder[T]) emitReady(spare []T, ok bool) ([]T, bool) {
	for ok {
		s := &o.slots[o.next&o.mask]
		if !s.done {
			break
		}
		vals, err := s.vals, s.err
		o.mu.Unlock()
		// The head slot is the emitter's alone until next moves past it.
		ok = o.sendAll(vals, err)
		clear(vals) // drop references the buffer would otherwise keep alive
		o.mu.Lock()
		s = &o.slots[o.next&o.mask] // the ring may have grown meanwhile
		s.vals, s.err, s.done = vals[:0], nil, false
		o.advance()
	}
	o.emitting = false
	o.mu.Unlock()
	return spare, ok
}

// advance moves the head past an emitted item; called with mu held.
func (o *reorder[T]) advance() {
	o.next++
	o.inflight--
	o.wake()
}

// tryStream takes the emitter role for item idx if it is the head and no one
// is emitting; the caller then sends idx's outputs with sendNext as they come
// and ends with complete(..., streaming = true).
func (o *reorder[T]) tryStream(idx int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.emitting || idx != o.next {
		return false
	}
	o.emitting = true
	return true
}

// sendAll sends vals and then err (if any), in order; the caller holds the
// emitter role. It reports false once the run is cancelled.
func (o *reorder[T]) sendAll(vals []T, err error) bool {
	for i := range vals {
		if !o.sendNext(vals[i]) {
			return false
		}
	}
	if err != nil {
		return o.sendItem(item[T]{err: err})
	}
	return true
}

// sendNext sends one output; the caller holds the emitter role, which
// guards seq.
func (o *reorder[T]) sendNext(v T) bool { return o.sendItem(item[T]{v: v}) }

func (o *reorder[T]) sendItem(it item[T]) bool {
	it.seq = o.seq
	o.seq++
	return send(o.out, it, o.done)
}

// grow makes the ring hold at least n items from next on; called with mu held.
func (o *reorder[T]) grow(n int) {
	size := len(o.slots)
	for size < n {
		size *= 2
	}
	slots := make([]slot[T], size)
	for i := o.next; i < o.hi; i++ {
		slots[i&(size-1)] = o.slots[i&o.mask]
	}
	o.slots, o.mask = slots, size-1
}
