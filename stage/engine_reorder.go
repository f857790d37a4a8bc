package stage

import "sync"

// reorder is the window of an Ordered stage. Workers finish items in any
// order and park their outputs in the item's slot; whichever worker finishes
// the item at the head of the window becomes the emitter and moves the head
// and every finished item after it into the queue, in order, in one step. No
// goroutine is dedicated to reordering.
//
// The window needs no bound of its own: every item after the head holds a
// token of the queue until its first output leaves, so at most capacity+1
// items are in it (the head's token may be out with its first output while
// it still runs). A capacity below zero (Workers(-1)) is unbounded. The ring
// starts small (no larger than the input, when its length is known) and
// grows as items need it, up to what the bound lets in: a large Buffer
// costs memory only for the items the window holds. An item of one output
// keeps it in its slot, so that the window allocates nothing per item.
//
// The outputs an Apply parks while it runs (see park) are bounded too: a
// further output (one without the item's token) that would be parked waits
// while the window holds capacity parked outputs, until the head moves on,
// the emitter role is free, or the run is cancelled. The window always
// moves: the head's item is running or done (items start in order, and an
// index its source lost is closed as done: see puller and applier.lost); it
// waits here only while another worker holds the emitter role, which waits
// only for the queue's consumer (see emitReady), and once the role is free
// the head takes it and streams to the queue.
type reorder[T any] struct {
	out      *queue[T]
	capacity int // parked outputs the window holds at most (see park); < 0: no bound

	mu       sync.Mutex
	slots    []slot[T] // ring; len is a power of two; item i lives at i&mask
	mask     int
	next     int       // index of the item to emit next
	hi       int       // one past the highest index parked
	emitting bool      // a worker holds the emitter role
	staged   []item[T] // the emitter's outputs on their way to the queue
	parked   int       // further outputs (without a token) park put in slots, not yet moved on
	waiters  int       // parks waiting for room (canPark)
	canPark  sync.Cond

	home *sync.Pool // a fused stage's window: where it goes back (see recycledReorder)
}

type slot[T any] struct {
	done   bool
	tok    bool      // the item still holds its token
	single bool      // its only output is in one, and items is empty (see complete)
	items  []item[T] // its outputs (and forwarded error), in order
	one    item[T]   // the output of an item that had exactly one, nothing parked
	parked int       // how many of items park put there without a token (counted in reorder.parked)
}

// newReorder makes the window of a stage whose queue is out, over an
// input of at most items items (-1: unknown). If eager (an Apply, which
// parks outputs while it runs), the window registers with the run, whose
// cancellation wakes the parks that wait for room.
func newReorder[T any](capacity int, out *queue[T], eager bool, items int) *reorder[T] {
	o := &reorder[T]{slots: make([]slot[T], ringSize(capacity, items))}
	o.init(capacity, out)
	if eager {
		out.r.onCancel(o)
	}
	return o
}

// recycledReorder is newReorder for a fused stage (never eager): the
// window, with its ring and staging room, comes from a pool and goes back
// with the stage's state when the run finishes (see fuseRun.recycle and
// engine_recycle.go).
func recycledReorder[T any](capacity int, out *queue[T], items int) *reorder[T] {
	o, home := fromPool[reorder[T]]()
	if size := ringSize(capacity, items); len(o.slots) < size {
		o.slots = make([]slot[T], size)
	}
	o.init(capacity, out)
	o.home = home
	return o
}

// ringSize is the ring a window starts with: capacity+1 slots (the head
// may have given its token to its first output), no more than the input
// has items, at most initialSlots, a power of two. complete and park grow
// it when an item needs more (so items is only a hint).
func ringSize(capacity, items int) int {
	most := min(capacity, initialSlots-1) // not capacity+1: MaxInt overflows
	if items >= 0 {
		most = min(most, max(items-1, 0))
	}
	size := 1
	for size < most+1 {
		size *= 2
	}
	return size
}

// init readies a window whose ring (a power of two) is made.
func (o *reorder[T]) init(capacity int, out *queue[T]) {
	o.out, o.capacity, o.mask = out, capacity, len(o.slots)-1
	o.canPark.L = &o.mu
}

// recycle gives a recycled window back to its pool, zeroed but for its
// ring and staging room, emptied (a large ring or room goes to the garbage
// collector instead).
func (o *reorder[T]) recycle() {
	slots, staged, home := o.slots, o.staged, o.home
	if len(slots) > initialSlots {
		slots = nil
	}
	clear(slots)
	if cap(staged) > maxPooledBatch {
		staged = nil
	}
	clear(staged[:cap(staged)])
	*o = reorder[T]{slots: slots, staged: staged[:0]}
	if recycleReuse {
		home.Put(o)
	}
}

// wake wakes the parks that wait for room: the run is cancelled.
func (o *reorder[T]) wake() {
	o.mu.Lock()
	o.canPark.Broadcast()
	o.mu.Unlock()
}

// moved wakes the parks that wait for room, if any, once the head moved
// or parked outputs left; called with mu held.
func (o *reorder[T]) moved() {
	if o.waiters > 0 {
		o.canPark.Broadcast()
	}
}

// initialSlots is the most slots a window starts with (a power of two).
const initialSlots = 64

// complete parks item idx's outputs (maybe none; tok says whether the item
// still holds its token). It returns an empty buffer for the caller's next
// item (the slot's old one, so buffers are reused), and whether the caller
// is now the emitter, which must then call emit. (Not emitReady from here:
// a worker's goroutine is young and its stack small, and one frame less on
// the way to the queue's wake-up keeps it from growing at every run.)
func (o *reorder[T]) complete(idx int, items []item[T], tok bool) (spare []item[T], emitter bool) {
	o.mu.Lock()
	if idx-o.next >= len(o.slots) {
		o.grow(idx - o.next + 1)
	}
	s := &o.slots[idx&o.mask]
	switch {
	case len(s.items) > 0: // outputs parked while it ran (see park)
		s.items = append(s.items, items...)
		spare = items[:0]
	case len(items) <= 1:
		// Most items have one output (or none): it waits in the slot
		// itself, and the caller keeps its buffer, so that a window
		// allocates nothing per item. (A buffer is never handed between
		// caller and slot here: the caller's may be its own room, see
		// orderOut.)
		if len(items) == 1 {
			s.one, s.single = items[0], true
			items[0] = item[T]{}
		}
		spare = items[:0]
	default:
		spare, s.items = s.items[:0], items
	}
	s.tok, s.done = s.tok || tok, true
	o.hi = max(o.hi, idx+1)
	if o.emitting || idx != o.next {
		o.mu.Unlock()
		return spare, false
	}
	o.emitting = true
	o.mu.Unlock()
	return spare, true
}

// emit is the emitter's move after complete: every finished item from the
// head on goes to the queue. It returns false once the run is cancelled.
func (o *reorder[T]) emit() bool {
	o.mu.Lock()
	return o.emitReady()
}

// What park did with an output.
const (
	parkedOut    = iota // the output waits in its item's slot
	streamOut           // the caller took the emitter role: it queues the output itself
	cancelledOut        // the run is cancelled: the output was abandoned
)

// park is an output of item idx, which is still running (an Apply's emit).
// If idx is the head and no one emits, the caller takes the emitter role
// and streams (park returns streamOut and keeps nothing). Otherwise the
// output waits in idx's slot, with the item's token if tok (the caller's
// token is then spent): an emitter that reaches idx while it runs moves
// them to the queue at once, so that an output never waits for its own
// item to return once the items before it have left. A further output
// (!tok) first waits while the window holds capacity parked outputs (see
// reorder), until the head moves on, parked outputs leave or the emitter
// role is free; once the run is cancelled, it is abandoned.
func (o *reorder[T]) park(idx int, it item[T], tok bool) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		if !o.emitting && idx == o.next {
			o.emitting = true
			return streamOut
		}
		if tok || o.capacity < 0 || o.parked < o.capacity {
			break
		}
		o.out.r.armWake() // before the last look at the run (see armWake)
		if o.out.r.cancelled() {
			it.ack.abandon()
			return cancelledOut
		}
		o.waiters++
		o.canPark.Wait()
		o.waiters--
	}
	if idx-o.next >= len(o.slots) {
		o.grow(idx - o.next + 1)
	}
	s := &o.slots[idx&o.mask]
	s.items = append(s.items, it)
	if !tok { // an item's first output is bounded by its token
		s.parked++
		o.parked++
	}
	s.tok = s.tok || tok
	o.hi = max(o.hi, idx+1)
	return parkedOut
}

// tryStream takes the emitter role for item idx if it is the head and no one
// is emitting. The caller then queues idx's outputs as they come and ends
// with endStream.
func (o *reorder[T]) tryStream(idx int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.emitting || idx != o.next {
		return false
	}
	o.emitting = true
	return true
}

// endStream moves the head past a streamed item and emits what is ready.
func (o *reorder[T]) endStream() bool {
	o.mu.Lock()
	o.next++
	o.moved()
	return o.emitReady()
}

// emitReady, called by the emitter with mu held, moves every finished item
// from the head on into the queue, then gives up the role and unlocks.
func (o *reorder[T]) emitReady() bool {
	for {
		release := 0     // tokens of items with no output at all
		running := false // staged holds outputs of the head, still running
		for {
			s := &o.slots[o.next&o.mask]
			if !s.done {
				break
			}
			if s.single { // its one output (see complete): items is empty
				it := s.one
				it.flags |= tokIf(s.tok)
				o.staged = append(o.staged, it)
				s.one, s.single = item[T]{}, false
			} else if len(s.items) == 0 && s.tok {
				release++
			}
			for i, it := range s.items {
				it.flags |= tokIf(s.tok && i == 0)
				o.staged = append(o.staged, it)
			}
			clear(s.items) // drop references the buffer would otherwise keep alive
			s.items, s.tok, s.done = s.items[:0], false, false
			o.parked -= s.parked
			s.parked = 0
			o.next++
			o.moved()
		}
		// The head is still running, and has parked outputs (see park):
		// they go now. Its later ones are parked for this loop, or streamed
		// by its worker once the role is free.
		if s := &o.slots[o.next&o.mask]; len(s.items) > 0 {
			running = true
			for i, it := range s.items {
				it.flags |= tokIf(s.tok && i == 0)
				o.staged = append(o.staged, it)
			}
			clear(s.items)
			s.items, s.tok = s.items[:0], false
			o.parked -= s.parked
			s.parked = 0
			o.moved()
		}
		if len(o.staged) == 0 && release == 0 {
			break
		}
		// Other workers may park meanwhile; the role keeps the order. A
		// running head's outputs wait for room in the queue first: the head
		// parks more while the role is held, and this loop, if it never
		// waited, would move them on as fast as it parks them.
		o.mu.Unlock()
		if running {
			o.out.waitRoom()
		}
		o.out.pushBatch(o.staged, release)
		clear(o.staged)
		o.staged = o.staged[:0]
		o.mu.Lock()
	}
	o.emitting = false
	o.moved() // a head waiting for the role (see park)
	o.mu.Unlock()
	return !o.out.r.cancelled()
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
