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
// was cancelled while emitting.
func (o *reorder[T]) complete(idx int, vals []T, err error) ([]T, bool) {
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
	for {
		s := &o.slots[o.next&o.mask]
		if !s.done {
			break
		}
		vals, err, seq := s.vals, s.err, o.seq
		o.mu.Unlock()
		// The head slot is the emitter's alone until next moves past it.
		for i := range vals {
			if !o.send(item[T]{v: vals[i], seq: seq}) {
				return spare, false
			}
			seq++
		}
		if err != nil {
			if !o.send(item[T]{err: err, seq: seq}) {
				return spare, false
			}
			seq++
		}
		clear(vals) // drop references the buffer would otherwise keep alive
		o.mu.Lock()
		s = &o.slots[o.next&o.mask] // the ring may have grown meanwhile
		s.vals, s.err, s.done = vals[:0], nil, false
		o.seq = seq
		o.next++
		o.inflight--
		o.wake()
	}
	o.emitting = false
	o.mu.Unlock()
	return spare, true
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

func (o *reorder[T]) send(it item[T]) bool { return send(o.out, it, o.done) }
