package stage

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// fuseRun is a fusable stage (an unordered Map, Filter, FlatMap or
// Concurrent without Buffer, over a source that never waits or is
// Interruptible; an Ordered one over a source that never waits, see
// below; or any of them with one worker) in one run. Its workers
// start as goroutines of its own (at the first pull, and only as many as
// its input has items for; a single item's place goes to the handle that
// pulls: see startIdle), the first eagerWorkers at once and the others one
// at a time as items are taken (see applier.more: a goroutine of the stage
// or a handle holding a place starts one after each pull). When their
// calls prove cheap (two timed calls in a row under cheapCall), a goroutine
// gives its place to one of the consumer's goroutines that wants one
// (each of the consumer's handles wants one, once): it leaves its input
// handle in spares, counts a baton, queues a baton item to wake a waiting
// handle, and exits. The handle that
// claims the baton processes items itself from then on, through that input
// handle and a stepper whose outlet is its own hands, which saves the
// hand-off between goroutines that dominates the cost of a cheap function.
// If the calls turn slow (two timed calls in a row over slowCall), the
// handle gives its place back to a new goroutine: the consumer has its own
// work, and a hand-off then costs nothing next to the call. (A handle
// inside a call takes no output meanwhile: the Workers doc says what that
// costs, and that Buffer(1) opts out.)
//
// At any moment each of the stage's n places is held by one goroutine, one
// handle, or one unclaimed baton, or is not started yet (idle, or left to
// applier.more), so at most n calls run. A handle only calls the function
// when it pulls, so the bound on what the stage runs ahead of its consumer
// holds too. The queue ends when its goroutines have ended (and the places
// not started were given up: applier.noMore); a handle that still wants a
// place claims any baton left before it reports the end, so that no input
// handle (and what it holds) is left behind.
//
// An Ordered stage fuses too (over a source that never waits, for a
// consumer that pulls from one goroutine at a time), for one case: a single
// item's place goes to the handle that pulls (startIdle), so that a 1-item
// run starts no goroutine. Its other places stay with goroutines of its
// own (retire gives none away): a handle holding one gained nothing
// measurable (its outputs still cross the window and the queue, to the
// same goroutine), and a consumer inside a call would hold back every
// output behind it while a function or callback that waits for the stage's
// other workers waited for ever. Every output, a handle's included, goes
// through the reorder window (app.ord) into the queue, and the consumer
// takes them from the queue, in order, with the queue's index. Its tokens
// are fixed (the window's bound, 2×workers) and stay with the places: a
// handle holding a place takes one for each item it pulls, without waiting
// (ownStep), so the bound holds as for goroutines; a handle that finds
// none free waits on the queue. That wait ends: every token is with an
// item in the queue (then it is not empty), or with an item in flight or
// parked in the window, and the item at the window's head is then running
// on a goroutine of the stage, since a handle finishes the item it pulled
// before it waits.
type fuseRun[In, Out any] struct {
	p      *processor[In, Out] // &proc
	proc   processor[In, Out]
	app    applier[In, Out] // the state of the stage's goroutines
	out    *queue[Out]      // queue, the stage's output
	queue  queue[Out]
	count  atomic.Int64 // outputs handed out through every handle
	wanted atomic.Int64 // handles that still want a place
	handed atomic.Int64 // handles given out (see handle)
	batons atomic.Int64 // places given up and not yet claimed

	// tries: the input may wait (an Interruptible source). A handle then
	// only takes items that are ready (tryPuller), and at least one place
	// stays with a goroutine of the stage, which waits in the source: a
	// consumer never sits in the source while outputs wait for it.
	tries bool
	// goroutines: places held by goroutines of the stage, as started and
	// retired (see retire); one that exits at the end of its input or of
	// the run still counts, when the floor it keeps no longer matters.
	goroutines atomic.Int64

	handles handles[In] // a new input handle for a place
	items   int         // at most this many input items (Stream.Len), or -1
	started atomic.Bool // the places no handle took were started

	first fuseHandle[In, Out] // the first handle: most consumers have one goroutine

	mu     sync.Mutex
	idle   int           // places held by nobody yet (see newFuseRun)
	spares []puller[In]  // input handles of retired goroutines
	spare  [1]puller[In] // spares' first room: one handle wants a place

	// stepRoom: the steppers of the goroutines that start with the stage
	// (at its open, or at the first pull, by whichever goroutine of the
	// consumer makes it), when they fit: a small run makes no allocation
	// for them (see steppers).
	stepRoom [4]queueStepper[In, Out]
	// orderRoom: an Ordered stage's, the same from a pool of their own (in
	// stepRoom, their size would grow every fused stage's state); taken
	// when its goroutines start, back with fr (see recycle).
	orderRoom *orderStepRoom[In, Out]

	home *sync.Pool // where fr goes back when the run finishes (see recycle)
}

// steppers returns n steppers for goroutines that start together: from
// stepRoom the first time, if they fit, else new ones. Only from the
// goroutine that opens the stage or starts its places (startIdle).
func (fr *fuseRun[In, Out]) steppers(n int) stepperSlab[In, Out] {
	if fr.app.ord == nil && n <= len(fr.stepRoom) && fr.stepRoom[0].p == nil {
		return fr.app.queueSteppers(fr.stepRoom[:n])
	}
	if fr.app.ord != nil && fr.orderRoom == nil && n <= len(orderStepRoom[In, Out]{}.steps) {
		room, home := fromPool[orderStepRoom[In, Out]]()
		room.home, fr.orderRoom = home, room
		return fr.app.orderSteppers(room.steps[:n])
	}
	return fr.app.steppers(n)
}

// orderStepRoom is the steppers of an Ordered fused stage's first
// goroutines, recycled with the stage (see fuseRun.recycle).
type orderStepRoom[In, Out any] struct {
	steps [4]orderStepper[In, Out]
	home  *sync.Pool
}

const (
	// cheapCall: calls under it make a goroutine give its place to the
	// consumer.
	cheapCall = 5 * time.Microsecond
	// slowCall: calls over it make a handle give its place back to a
	// goroutine; past it, a hand-off costs under a few percent of a call.
	slowCall = 20 * time.Microsecond
)

// newFuseRun starts a fused stage over an input that never waits. Its
// places start at the first pull, and only as many as the input has items
// for: a run of one item starts no goroutine, not Workers(n) (see
// startIdle).
//
// items is what the stream's build says the input holds (Stream.Len), or
// -1: an upper bound, since a run may end early. ordered: the stage keeps
// its input's order (see fuseRun).
func newFuseRun[In, Out any](p *processor[In, Out], handles handles[In], items int, ordered bool) *fuseRun[In, Out] {
	// One writer stands for the places not started yet, so that a handle
	// that pulls while another starts them waits instead of seeing the end;
	// goroutines add their tokens as they start (an ordered stage's are
	// fixed, the window's).
	capacity := 0
	if ordered {
		capacity = p.cfg.capacity()
	}
	fr := allocFuseRun(p, handles, capacity, 1)
	if ordered {
		fr.app.ord = recycledReorder(capacity, fr.out, items)
	}
	fr.idle, fr.items = p.cfg.workers, items
	return fr
}

// allocFuseRun makes a fused stage's state in one allocation (or none:
// it comes from a pool and goes back when the run finishes, see
// engine_recycle.go): a copy of p, the queue (with capacity tokens and
// writers), the applier of its goroutines, room for one spare handle and
// for the steppers of up to four goroutines.
func allocFuseRun[In, Out any](p *processor[In, Out], handles handles[In], capacity, writers int) *fuseRun[In, Out] {
	fr, home := fromPool[fuseRun[In, Out]]()
	p.r.recycleOnFinish(fr)
	fr.proc, fr.handles, fr.home = *p, handles, home
	fr.p = &fr.proc
	fr.spares = fr.spare[:0]
	fr.out = &fr.queue
	fr.out.init(fr.p.r, capacity, writers)
	fr.app = applier[In, Out]{r: fr.p.r, p: fr.p, out: fr.out, fuse: fr, handles: handles}
	return fr
}

// recycle gives fr back to its pool (see engine_recycle.go).
// An Ordered stage's window and steppers go back with it: they are
// used by nothing else (see engine_recycle.go's invariant).
func (fr *fuseRun[In, Out]) recycle() {
	if fr.app.ord != nil {
		fr.app.ord.recycle()
	}
	if room := fr.orderRoom; room != nil {
		toPool(room, room.home)
	}
	toPool(fr, fr.home)
}

// newFuseRunWaiting starts a fused stage over a source that may wait
// (tries): every place starts as a goroutine of the stage (the first
// eagerWorkers with the run, the others as items come), and goes to a
// consumer's handle only when calls prove cheap, one place staying with a
// goroutine that waits in the source (see fuseRun).
func newFuseRunWaiting[In, Out any](p *processor[In, Out], handles handles[In]) *fuseRun[In, Out] {
	n := p.cfg.workers
	eager := min(n, eagerWorkers)
	// One writer and one token per goroutine started with the run, and one
	// writer for the places that start later, if any (see applier.more).
	writers := eager
	if n > eager {
		writers++
	}
	fr := allocFuseRun(p, handles, eager, writers)
	fr.tries = true
	handles.shared.(tryPuller[In]).willTry() // before its first pull: the goroutines start below
	fr.app.lazy.Store(int64(n - eager))
	fr.goroutines.Store(int64(eager))
	fr.started.Store(true)
	steppers := fr.steppers(eager)
	for i := range eager {
		in, t := handles.next(), steppers.at(i)
		fr.p.r.goroutine(func() { fr.app.work(in, t) })
	}
	return fr
}

// handle returns a new handle for one goroutine of the consumer; it wants
// a place (see retire).
func (fr *fuseRun[In, Out]) handle() *fuseHandle[In, Out] {
	// A stream fuses only for a consumer of at most its workers' count of
	// goroutines (see Stream.openFor), and each of them takes one handle: a
	// handle beyond the places would see the stage end while items remain.
	// That is a bug of the consumer's (it took more handles than it opened
	// the stream for), which must not pass quietly.
	n := fr.handed.Add(1)
	if n > int64(max(fr.p.cfg.workers, 1)) {
		panic(fmt.Sprintf("sluice: a fused stage of %d places gave out a handle more: its consumer took more handles than it opened it for", fr.p.cfg.workers))
	}
	fr.wanted.Add(1)
	if n == 1 {
		fr.first.fr = fr
		return &fr.first
	}
	return &fuseHandle[In, Out]{fr: fr}
}

// newHandle is handle, for the handles of the opened stream (see handles).
func (fr *fuseRun[In, Out]) newHandle() puller[Out] { return fr.handle() }

// takeIdle takes a place nobody holds, with a new input handle for it.
func (fr *fuseRun[In, Out]) takeIdle() (puller[In], bool) {
	fr.mu.Lock()
	if fr.idle == 0 {
		fr.mu.Unlock()
		return nil, false
	}
	fr.idle--
	fr.mu.Unlock()
	return fr.handles.next(), true
}

// sizedPuller is a puller that knows how many items it has left.
type sizedPuller interface{ remaining() int }

// startIdle starts the stage's places, once, at the first pull: as many as
// there are items left (all, when the input's size is unknown), the first
// eagerWorkers as goroutines at once and the others as items come (see
// applier.more); when one item is left, its place goes to h, the handle
// that pulls, so that the stage starts no goroutine at all. (Only then:
// a function may wait for the consumer to take another item's output,
// which a consumer inside a call cannot do. A sized input is a source's own
// puller, which every place shares: taking a handle of it to look costs
// nothing.)
func (fr *fuseRun[In, Out]) startIdle(h *fuseHandle[In, Out]) {
	if fr.started.Load() || !fr.started.CompareAndSwap(false, true) {
		return
	}
	defer fr.out.closeWriter() // every place is started or left to more: the writer that stood for them ends
	if fr.p.r.cancelled() {
		return // the run failed its checks, or is over: nothing starts
	}
	in, ok := fr.takeIdle()
	if !ok {
		return
	}
	// The items left when the first place starts (the goroutines then take
	// some): the stream's build says at most fr.items, a source's puller
	// says how many it has left; -1: unknown.
	items := fr.items
	if s, sized := in.(sizedPuller); sized && (items < 0 || s.remaining() < items) {
		items = s.remaining()
	}
	if items == 0 {
		fr.mu.Lock()
		fr.idle++ // no item for it: the place stays free
		fr.mu.Unlock()
		return
	}
	// A single item: the handle calls the function itself, which can wait
	// for nothing else of the run's.
	if items == 1 && h.in == nil && fr.want() {
		h.hold(in)
		h.only = true
		return
	}
	// This place and every one still idle, up to the items left.
	fr.mu.Lock()
	n := fr.idle + 1
	if items >= 0 {
		n = min(n, items)
	}
	fr.idle -= n - 1
	fr.mu.Unlock()
	eager := min(n, eagerWorkers)
	if lazy := n - eager; lazy > 0 {
		// Before any goroutine starts, since one that leaves gives up what
		// is left (applier.noMore): a writer stands for these places.
		fr.out.addWriter()
		fr.app.lazy.Store(int64(lazy))
	}
	steppers := fr.steppers(eager)
	fr.spawn(in, steppers.at(0))
	for i := 1; i < eager; i++ {
		fr.spawn(fr.handles.next(), steppers.at(i))
	}
}

// retire gives the calling goroutine's place, with its input handle in, to
// a handle that wants one, if any; it reports whether the goroutine should
// exit.
func (fr *fuseRun[In, Out]) retire(in puller[In]) bool {
	if fr.app.ord != nil {
		return false // an ordered stage's places stay with its goroutines (see fuseRun)
	}
	floor := int64(0)
	if fr.tries {
		floor = 1 // one goroutine keeps waiting in the source
	}
	for {
		g := fr.goroutines.Load()
		if g <= floor {
			return false
		}
		if fr.goroutines.CompareAndSwap(g, g-1) {
			break
		}
	}
	if !fr.want() {
		fr.goroutines.Add(1)
		return false
	}
	fr.mu.Lock()
	fr.spares = append(fr.spares, in)
	fr.mu.Unlock()
	fr.batons.Add(1)
	fr.out.retireWorker(fr.app.ord != nil)
	return true
}

// want takes one handle's want of a place, if any.
func (fr *fuseRun[In, Out]) want() bool {
	for {
		w := fr.wanted.Load()
		if w <= 0 {
			return false
		}
		if fr.wanted.CompareAndSwap(w, w-1) {
			return true
		}
	}
}

// claim takes a baton and the input handle that comes with it, if any.
func (fr *fuseRun[In, Out]) claim() (puller[In], bool) {
	for {
		b := fr.batons.Load()
		if b <= 0 {
			return nil, false
		}
		if fr.batons.CompareAndSwap(b, b-1) {
			break
		}
	}
	fr.mu.Lock()
	defer fr.mu.Unlock()
	in := fr.spares[len(fr.spares)-1]
	fr.spares = fr.spares[:len(fr.spares)-1]
	return in, true
}

// spawn gives a place to a new goroutine pulling through in and
// processing with t.
func (fr *fuseRun[In, Out]) spawn(in puller[In], t *stepper[In, Out]) {
	// Its writer first: a goroutine that retires, having counted this one
	// (see retire), must not end the queue. (An ordered stage's tokens are
	// fixed: see fuseRun.)
	if fr.app.ord != nil {
		fr.out.addWriter()
	} else {
		fr.out.addWorker()
	}
	fr.goroutines.Add(1)
	r := fr.p.r
	r.wg.Add(1) // the run has started: startIdle or ownNext saw it live
	go func() {
		var returned bool
		defer r.exit(&returned)
		fr.app.work(in, t)
		returned = true
	}()
}

// index gives the next output its position in the stage's output.
func (fr *fuseRun[In, Out]) index() int { return int(fr.count.Add(1) - 1) }

// fuseHandle is how one goroutine of a consumer pulls from a fused stage:
// from the stage's queue, and, once it holds a worker's place, through its
// own stepper when nothing is queued.
type fuseHandle[In, Out any] struct {
	fr        *fuseRun[In, Out]
	in        puller[In]       // the place's input handle; nil while the handle wants one
	try       tryPuller[In]    // in, when the input may wait: take only what is ready
	own       stepper[In, Out] // processes items into hands (ordered: into ordOut), once the handle first holds a place
	hands     handOut[Out]
	ordOut    orderOut[Out] // an ordered stage's: the outlet of own, into the reorder window
	inline    bool          // holds a place: calls the function itself
	ended     bool          // the place's input ended, or the run stopped
	calls     int           // items processed through own, for sampling their cost
	slowCalls int           // timed calls in a row that were slow
	only      bool          // the place is the stage's only one (its input's single item): its call is not timed, since no goroutine could take it over
}

// claim takes a place if the handle wants one and one is free.
func (h *fuseHandle[In, Out]) claim() {
	if h.in != nil {
		return
	}
	if in, ok := h.fr.claim(); ok {
		h.hold(in)
	}
}

// hold makes the handle hold a place, pulling through in.
func (h *fuseHandle[In, Out]) hold(in puller[In]) {
	h.in, h.inline = in, true
	if h.fr.tries {
		h.try = in.(tryPuller[In])
	}
	if h.own.p == nil {
		if ord := h.fr.app.ord; ord != nil {
			// Its outputs never stream to the queue while it runs: the
			// handle is the queue's consumer, which must not wait for
			// room (see orderOut.hold).
			h.ordOut = orderOut[Out]{queueOut: queueOut[Out]{q: h.fr.out}, ord: ord, hold: true}
			h.fr.p.initStepper(&h.own, &h.ordOut)
			return
		}
		h.hands.r, h.hands.items = h.fr.p.r, h.hands.one[:0]
		h.fr.p.initStepper(&h.own, &h.hands)
	}
}

// ownTurn reports whether the handle should call the function now: it holds
// a place and nothing is queued, or its current item has outputs left.
func (h *fuseHandle[In, Out]) ownTurn() bool {
	return h.inline && (!h.hands.idle() || h.fr.out.ready.Load() == 0)
}

// ownNext takes the next output of the handle's own place, processing
// input items until one has an output. It times the first two calls and
// one in 16 after; after two slow ones in a row, it gives the place to a
// new goroutine once the current item's outputs are out. Over a source
// that may wait, it takes only items that are ready: ready is false when
// there was none (the handle keeps its place and waits on the queue).
func (h *fuseHandle[In, Out]) ownNext() (it item[Out], ok, ready bool) {
	r := h.fr.p.r
	for {
		if !h.hands.idle() {
			if !r.cancelled() {
				break // an output to hand out
			}
			// A cancelled run hands out nothing more, as its queues do:
			// the outputs still in hands are abandoned. (Looked at before
			// every take: user code, a watcher's Finished, may have
			// cancelled the run since the output was put.)
			h.hands.drop()
		}
		if h.ended || r.cancelled() {
			h.inline = false
			h.fr.app.noMore()
			return item[Out]{}, false, true
		}
		var in item[In]
		var idx int
		if h.try != nil {
			in, idx, ok, ready = h.try.tryPull()
			if !ready {
				return item[Out]{}, false, false
			}
		} else {
			in, idx, ok = h.in.pull()
		}
		if !ok {
			h.ended, h.inline = true, false
			h.fr.app.noMore() // as a goroutine of the stage does when its input ends
			return item[Out]{}, false, true
		}
		if h.fr.app.lazy.Load() > 0 {
			h.fr.app.more() // as a goroutine of the stage does when it took an item
		}
		h.own.timed = !h.only && (h.calls < 2 || h.calls%16 == 0)
		h.calls++
		if !h.own.process(in, idx) {
			h.ended = true
		}
		if d := h.own.lastCall; d >= 0 {
			if d > slowCall {
				h.slowCalls++
			} else {
				h.slowCalls = 0
			}
		}
	}
	it = h.hands.take()
	if h.slowCalls >= 2 && h.hands.idle() && !h.ended {
		h.inline = false
		h.fr.spawn(h.in, h.fr.app.stepper())
	}
	return it, true, true
}

// done reports whether the stage has nothing more for this handle, whose
// queue has ended: it has no place to claim, or the place it holds is spent
// (its input ended) or the run is over. A handle whose place is live is not
// done: it saw an output queued, so it pulled from the queue rather than
// through its place, and another handle took that output first; the queue
// has ended since every place is with a handle, but its place's input may
// still hold items (ownNext takes them next time round, or ends the place).
func (h *fuseHandle[In, Out]) done() bool {
	if h.in != nil {
		return !h.inline || h.fr.p.r.cancelled()
	}
	return h.fr.batons.Load() == 0
}

func (h *fuseHandle[In, Out]) pull() (item[Out], int, bool) {
	h.fr.startIdle(h)
	if h.fr.app.ord != nil {
		return h.pullOrdered()
	}
	for {
		h.claim()
		if h.ownTurn() {
			if it, ok, _ := h.ownNext(); ok {
				return it, h.fr.index(), true
			}
		}
		it, _, ok := h.fr.out.pull()
		switch {
		case !ok:
			if h.done() {
				return it, 0, false
			}
		case !it.is(baton): // a baton only woke us: claim looks at the count
			return it, h.fr.index(), true
		}
	}
}

// pullAll serves the sink: what is queued, or else an output of its own.
func (h *fuseHandle[In, Out]) pullAll(dst []item[Out]) ([]item[Out], bool) {
	h.fr.startIdle(h)
	if h.fr.app.ord != nil {
		return h.pullAllOrdered(dst)
	}
	for {
		h.claim()
		if h.ownTurn() {
			// The sink has consumed its previous batch: its tokens go back.
			if h.fr.out.releaseHeld() {
				// A producer woke up on this processor, where it would wait
				// behind the call we are about to make; let it go first, so
				// that the scheduler moves one of us to the other processor.
				runtime.Gosched()
			}
			if it, ok, _ := h.ownNext(); ok {
				return append(dst, it), true
			}
		}
		n := len(dst)
		var ok bool
		dst, _, ok = h.fr.out.pullBatch(dst)
		switch {
		case !ok:
			if h.done() {
				return dst, false
			}
		case len(dst) > n:
			return dst, true
		}
	}
}

// serialHandle is a Workers(1) fusable stage shared by every goroutine of
// its consumer: they take turns under mu (the sequential path), which also
// keeps the outputs in order and their indexes exact.
type serialHandle[In, Out any] struct {
	mu sync.Mutex
	h  *fuseHandle[In, Out]
}

func (s *serialHandle[In, Out]) pull() (item[Out], int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.h.pull()
}
