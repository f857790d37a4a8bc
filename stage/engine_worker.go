package stage

import (
	"math"
	"sync"
	"sync/atomic"
)

// applier is a stage run by goroutines of its own in one run: Workers(n)
// workers, or with Workers(-1) a dispatcher that starts one goroutine per
// item. Each goroutine processes items through a stepper whose outlet is
// the stage's queue (or, when Ordered, its reorder window).
type applier[In, Out any] struct {
	r   *run
	p   *processor[In, Out]
	out *queue[Out]
	ord *reorder[Out] // nil unless Ordered

	fuse *fuseRun[In, Out] // set when the stage's consumer may take workers' places

	goroutines int // workers to start (see config.goroutines)

	// Workers past the first eagerWorkers start one at a time, each when a
	// worker has just taken an item (see more): a large Workers over a
	// short input of unknown length starts few goroutines. lazy counts the
	// places not started yet; while it is above 0, one writer of the
	// queue stands for them, and whoever takes lazy to 0 closes it.
	lazy    atomic.Int64
	handles handles[In] // the input's handles, for workers started later
	shared  puller[In]  // KeyBy: the one handle every worker pulls through

	gate  gate[In]   // KeyBy: busy keys and waiting items
	keyMu sync.Mutex // KeyBy: a pull and its admission are one step
}

// consumers is how many goroutines of the stage pull from its input.
func (c *config) consumers(serial bool) int {
	if serial || c.key != nil { // KeyBy: pulls are serialised by keyMu
		return 1
	}
	return max(c.workers, 1) // Workers(-1): the dispatcher
}

// goroutines is how many workers a stage of Workers(n) starts over an input
// known to hold at most items items (-1: unknown): n, or items (at least
// one) when fewer, since no more than items calls can ever run at once.
// So a large Workers over a small input costs neither goroutines nor
// memory. (Workers(-1) starts its dispatcher, which counts as one.)
func (c *config) goroutines(items int) int {
	n := max(c.workers, 1)
	if items >= 0 && items < n {
		n = max(items, 1)
	}
	return n
}

// capacity is the number of tokens of the stage's queue: one per worker
// (two when Ordered: the reorder window) plus the buffer; -1 (no bound)
// with Workers(-1). The sum saturates at math.MaxInt (Workers and Buffer
// take any int), rather than overflowing to a negative capacity.
func (c *config) capacity() int {
	if c.workers < 0 {
		return -1
	}
	n := addSat(c.workers, c.buffer)
	if c.ordered {
		n = addSat(n, c.workers)
	}
	return n
}

// addSat is a+b for a, b >= 0, or math.MaxInt if that overflows.
func addSat(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

// newApplier makes the stage's state for a run in which it starts
// goroutines workers (see config.goroutines).
func newApplier[In, Out any](p *processor[In, Out], goroutines int) *applier[In, Out] {
	c := &p.cfg
	s := &applier[In, Out]{r: p.r, p: p, goroutines: goroutines}
	// One writer per goroutine started with the run (Workers(-1): the
	// dispatcher, which adds one per item), and one that stands for the
	// places that start later, if any.
	writers := goroutines
	if lazy := goroutines - eagerWorkers; lazy > 0 {
		s.lazy.Store(int64(lazy))
		writers = eagerWorkers + 1
	}
	s.out = newQueue[Out](p.r, c.capacity(), writers)
	if c.ordered {
		s.ord = newReorder(c.capacity(), s.out, c.eager, -1)
	}
	if c.key != nil {
		s.gate = c.key.(keyer[In]).newGate()
	}
	return s
}

// start registers the stage's goroutines (s.goroutines of them), each
// pulling through a handle of its input; they start with the run.
func (s *applier[In, Out]) start(handles handles[In]) puller[Out] {
	if s.p.cfg.workers < 0 {
		in := handles.next()
		s.r.goroutine(func() { s.dispatch(in) })
		return s.out
	}
	eager := min(s.goroutines, eagerWorkers)
	steppers := s.steppers(eager)
	s.handles = handles
	if s.gate != nil {
		// KeyBy: every pull is made under keyMu, so the workers share one
		// handle, the one the stage opened its input for (see
		// config.consumers). A handle each would be more handles than the
		// input was opened for: a fused input gives its places to the
		// handles it counted, and a handle it did not count sees its end
		// while items remain, and its worker stops.
		s.shared = handles.next()
	}
	for i := range eager {
		in, t := s.handle(), steppers.at(i)
		s.r.goroutine(func() { s.work(in, t) })
	}
	return s.out
}

// eagerWorkers is how many of a stage's workers start with the run; the
// others start as items come (see applier.more).
const eagerWorkers = 64

// handle returns the input handle of a new worker.
func (s *applier[In, Out]) handle() puller[In] {
	if s.shared != nil {
		return s.shared
	}
	return s.handles.next()
}

// more starts one more worker, if a place is left to start: the calling
// worker (or, in a fused stage, a consumer's handle holding a place) has
// just taken an item, so the input may have more. The caller is a live
// goroutine of the run, so the run cannot have finished.
func (s *applier[In, Out]) more() {
	for {
		n := s.lazy.Load()
		if n <= 0 {
			return
		}
		if s.lazy.CompareAndSwap(n, n-1) {
			in, t := s.handle(), s.stepper()
			if s.fuse != nil {
				s.fuse.spawn(in, t) // with its token: a fused queue has one per goroutine
			} else {
				s.out.addWriter()
				s.r.wg.Add(1)
				go func() {
					var returned bool
					defer s.r.exit(&returned)
					s.work(in, t)
					returned = true
				}()
			}
			if n == 1 {
				s.out.closeWriter() // the last place started: its stand-in goes
			}
			return
		}
	}
}

// noMore gives up the places not started: a worker is leaving (its input
// ended, or the run is over), so no more will be needed.
func (s *applier[In, Out]) noMore() {
	if s.lazy.Load() > 0 && s.lazy.Swap(0) > 0 {
		s.out.closeWriter()
	}
}

// queueStepper is a stepper whose outlet is the stage's queue, and
// orderStepper one whose outlet is its reorder window: each is one
// allocation for a goroutine's stepper and its outlet.
type (
	queueStepper[In, Out any] struct {
		stepper[In, Out]
		out queueOut[Out]
	}
	orderStepper[In, Out any] struct {
		stepper[In, Out]
		out orderOut[Out]
	}
)

// stepperSlab is the steppers of goroutines of the stage that start
// together, made in one allocation.
type stepperSlab[In, Out any] struct {
	queue []queueStepper[In, Out]
	order []orderStepper[In, Out]
}

// steppers returns n new steppers for goroutines of the stage.
func (s *applier[In, Out]) steppers(n int) stepperSlab[In, Out] {
	if s.ord != nil {
		return s.orderSteppers(make([]orderStepper[In, Out], n))
	}
	return s.queueSteppers(make([]queueStepper[In, Out], n))
}

// orderSteppers makes ts, zero steppers, steppers whose outlet is the
// stage's reorder window.
func (s *applier[In, Out]) orderSteppers(ts []orderStepper[In, Out]) stepperSlab[In, Out] {
	for i := range ts {
		t := &ts[i]
		t.out = orderOut[Out]{queueOut: queueOut[Out]{q: s.out}, ord: s.ord, eager: s.p.cfg.eager}
		s.p.initStepper(&t.stepper, &t.out)
	}
	return stepperSlab[In, Out]{order: ts}
}

// queueSteppers makes ts, zero steppers, steppers whose outlet is the
// stage's queue.
func (s *applier[In, Out]) queueSteppers(ts []queueStepper[In, Out]) stepperSlab[In, Out] {
	for i := range ts {
		t := &ts[i]
		t.out = queueOut[Out]{q: s.out}
		s.p.initStepper(&t.stepper, &t.out)
	}
	return stepperSlab[In, Out]{queue: ts}
}

// at is the i-th stepper of the slab.
func (b stepperSlab[In, Out]) at(i int) *stepper[In, Out] {
	if b.order != nil {
		return &b.order[i].stepper
	}
	return &b.queue[i].stepper
}

// stepper returns a new goroutine's stepper.
func (s *applier[In, Out]) stepper() *stepper[In, Out] { return s.steppers(1).at(0) }

// work is one of Workers(n) goroutines: take a token, pull through in,
// process with t, repeat. When it stops for good (its input ended, the run
// is over), the places not started are not needed; when it gives its place
// to a consumer's goroutine, they may still be.
func (s *applier[In, Out]) work(in puller[In], t *stepper[In, Out]) {
	defer s.out.closeWriter()
	if !s.loop(in, t) {
		s.noMore()
	}
}

// loop is work's loop; it reports whether the goroutine gave its place to
// a consumer's goroutine.
func (s *applier[In, Out]) loop(in puller[In], t *stepper[In, Out]) (retired bool) {
	calls, cheap := 0, 0 // calls sampled; timed calls in a row that were cheap (> 0) or slow (< 0)
	for {
		// Calls are cheap and a consumer goroutine wants a worker's place:
		// this goroutine gives it its place (see fuseRun).
		if s.fuse != nil && cheap >= 2 && s.fuse.retire(in) {
			return true
		}
		if !s.out.acquire() {
			return
		}
		if s.gate != nil {
			if !s.workKeyed(t, in) {
				return
			}
			continue
		}
		it, idx, ok := in.pull()
		if !ok {
			s.lost(it, idx)
			return
		}
		s.more()
		t.timed = s.fuse != nil && s.ord == nil && s.fuse.wanted.Load() > 0 && (calls < 2 || calls%16 == 0) // an ordered stage's places are not given away (see fuseRun)
		calls++
		if !t.process(it, idx) {
			return
		}
		switch d := t.lastCall; {
		case d < 0: // not timed
		case d < cheapCall:
			cheap = max(cheap, 0) + 1
		case d > slowCall:
			if cheap = min(cheap, 0) - 1; cheap <= -2 && !s.out.slow.Load() {
				s.out.slow.Store(true) // two slow calls in a row
			}
		default:
			cheap = 0
		}
	}
}

// lost gives back the token of a pull that found no item. An index the
// puller numbered and lost (a gap: see puller) is closed in an Ordered
// stage's window, as an item with no output, so that the items after it
// still leave; its token goes back when the window passes it.
func (s *applier[In, Out]) lost(it item[In], idx int) {
	if it.is(gap) && s.ord != nil {
		if _, emitter := s.ord.complete(idx, nil, true); emitter {
			s.ord.emit()
		}
		return
	}
	s.out.release(1)
}

// workKeyed is one step of a KeyBy worker that holds a token: pull an item
// and run it, and then the items that waited for its key; or leave it
// waiting, with the token, if its key is busy. It reports false when the
// goroutine should stop.
func (s *applier[In, Out]) workKeyed(t *stepper[In, Out], in puller[In]) bool {
	it, idx, ok, admitted, err := s.pullKeyed(in)
	if !ok {
		s.out.release(1)
		return false
	}
	s.more()
	switch {
	case err != nil: // the key function panicked: the item failed
		return t.processFailed(it, idx, err)
	case !admitted:
		return true
	}
	return s.processKeyed(t, it, idx)
}

// pullKeyed pulls an item and admits it to its key under keyMu (so that
// items reach the gate in input order). Nothing under the lock should panic
// (user code runs guarded), but a goroutine that died holding keyMu would
// hang every other worker of the stage: the unlock is deferred.
func (s *applier[In, Out]) pullKeyed(in puller[In]) (it item[In], idx int, ok, admitted bool, err error) {
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	it, idx, ok = in.pull()
	admitted = true
	if ok && it.err == nil {
		admitted, err = s.gate.admit(it, idx)
	}
	return it, idx, ok, admitted, err
}

// processKeyed processes an admitted item, then every item that waited for
// its key.
func (s *applier[In, Out]) processKeyed(t *stepper[In, Out], it item[In], idx int) bool {
	for {
		if !t.process(it, idx) {
			return false
		}
		if it.err != nil {
			return true // a forwarded error has no key
		}
		var more bool
		if it, idx, more = s.gate.done(idx); !more {
			return true
		}
		if s.r.cancelled() {
			// A cancelled run starts no new item: the ones that waited for
			// this key are abandoned, as items not yet pulled are.
			return false
		}
	}
}

// dispatch serves Workers(-1): one goroutine per item.
func (s *applier[In, Out]) dispatch(in puller[In]) {
	defer s.out.closeWriter()
	for {
		it, idx, ok := in.pull()
		if !ok {
			return
		}
		var err error
		if s.gate != nil && it.err == nil {
			var admitted bool
			if admitted, err = s.gate.admit(it, idx); !admitted && err == nil {
				continue // it waits for the goroutine of its key
			}
		}
		s.out.addWriter()
		s.r.goroutine(func() {
			defer s.out.closeWriter()
			t := s.stepper()
			switch {
			case err != nil:
				t.processFailed(it, idx, err)
			case s.gate != nil:
				s.processKeyed(t, it, idx)
			default:
				t.process(it, idx)
			}
		})
	}
}
