package stage

import (
	"context"
	"time"
)

// processor is a stage's per-item logic in one run, shared by every
// goroutine that runs the stage: its workers, and the consumer goroutines
// that run it themselves (engine_fuse.go).
type processor[In, Out any] struct {
	r   *run
	cfg config // the stage's configuration for this run (see forRun)
	f   func(context.Context, In, emitter[Out]) error
	// plain: no Retry, Timeout or RateLimit, so that a call is one attempt
	// (see stepper.call).
	plain bool
}

func newProcessor[In, Out any](r *run, cfg config, f func(context.Context, In, emitter[Out]) error) *processor[In, Out] {
	c := cfg.calls
	plain := c == nil || c.retry.attempts <= 1 && c.timeout == 0 && c.rateLimit.limiter == nil
	return &processor[In, Out]{r: r, cfg: cfg, f: f, plain: plain}
}

// outlet takes the outputs of one item at a time, in order, on their way
// to the stage's consumer.
type outlet[Out any] interface {
	// begin starts the outputs of the item with index idx.
	begin(idx int)
	// put takes one output (or forwarded error) of the current item. It
	// reports false when it dropped the output because the run is over;
	// it then abandoned the output's acknowledgement.
	put(it item[Out]) bool
	// end says that the current item has no more outputs; it reports
	// false when the goroutine should stop.
	end() bool
}

// stepper is one goroutine's use of a processor: where its outputs go, and
// the item it is working on.
type stepper[In, Out any] struct {
	p      *processor[In, Out]
	out    outlet[Out]
	emitFn func(Out) bool // emit as a function (Apply's), made at its first use

	ack     *ackNode   // the current item's reference, or nil
	members []*ackNode // Unbatch straight after Batch: one per element
	next    int        // the next member to hand out
	moved   bool       // the item's only output took its reference (emitsOne)
	lost    bool       // an output of the current item was dropped
	// held: the only output of an emitsOne stage's item, which its function
	// emits as it returns; step queues it once the call has returned, so
	// that queueing (and waking the consumer) runs on a shallow stack: a
	// worker goroutine then need not grow its first stack.
	held    item[Out]
	holding bool

	timed    bool          // time the next call (see fuseRun)
	lastCall time.Duration // the last timed call's duration; -1: not timed
}

// emitter takes the outputs of the item being processed: a stepper. The
// stages' functions take it as an interface, which costs no allocation;
// Apply, whose user takes a func, asks for emitFunc.
type emitter[Out any] interface {
	emit(v Out) bool
	emitFunc() func(Out) bool
}

// initStepper makes s a stepper of p whose outputs go to out. (s and out
// usually live in one struct: see queueStepper.)
func (p *processor[In, Out]) initStepper(s *stepper[In, Out], out outlet[Out]) {
	*s = stepper[In, Out]{p: p, out: out}
}

// emit is an output of the current item.
func (s *stepper[In, Out]) emit(v Out) bool {
	var a *ackNode
	switch {
	case s.members != nil:
		if s.next < len(s.members) {
			a = s.members[s.next]
			s.next++
		}
	case s.p.cfg.single && !s.moved:
		// The function has returned and this is its only output: it
		// takes over the item's reference, which saves two atomic adds.
		a, s.moved = s.ack, true
	default:
		a = s.ack.ref()
	}
	if s.p.cfg.single {
		s.held, s.holding = item[Out]{v: v, ack: a}, true
		return true // its function returns now: nothing looks at the result
	}
	if !s.out.put(item[Out]{v: v, ack: a}) {
		s.lost = true
		return false
	}
	return true
}

// emitFunc is emit as a function value, made once per stepper.
func (s *stepper[In, Out]) emitFunc() func(Out) bool {
	if s.emitFn == nil {
		s.emitFn = s.emit
	}
	return s.emitFn
}

// process runs the stage on one input item. It reports false when the
// goroutine should stop: the run is ending.
func (s *stepper[In, Out]) process(it item[In], idx int) bool { return s.step(it, idx, nil) }

// processFailed handles an item that failed before its function could be
// called (KeyBy's key function panicked): the policy gets err.
func (s *stepper[In, Out]) processFailed(it item[In], idx int, err error) bool {
	return s.step(it, idx, err)
}

func (s *stepper[In, Out]) step(it item[In], idx int, err error) bool {
	p := s.p
	s.out.begin(idx)
	s.lastCall = -1
	if it.err != nil {
		// A forwarded error passes through, with its acknowledgement.
		s.out.put(item[Out]{err: it.err, ack: it.ack})
		return s.out.end()
	}
	s.ack, s.lost, s.moved = it.ack, false, false
	if p.cfg.split {
		s.members, s.next = it.ack.split(), 0
	}
	called := err == nil // else the item failed before its function could be called
	if called && p.r.ending() {
		// Taken before the run ended, not yet started (a goroutine of
		// Workers(-1) starting late, a worker that took it as the run
		// ended): no call starts once the run is cancelled, so it is
		// dropped, as an item in flight is, its fate unknown.
		s.lost = true
		s.settle(nil)
		return false
	}
	start := p.cfg.started()
	if called {
		if p.cfg.obs != nil {
			err = s.callWatched(it.v, start)
		} else {
			err = s.call(it.v)
		}
		if s.holding {
			s.holding = false
			if !s.out.put(s.held) {
				s.lost = true
			}
			s.held = item[Out]{}
		}
	}
	if err == nil {
		p.cfg.finished(start, nil)
		if s.ack != nil {
			s.settle(nil)
		}
		return s.out.end()
	}
	if p.r.ending() {
		// The run is ending, and this failure is its consequence: the
		// item's fate is unknown. (Ending, not only cancelled: under a
		// caller's own context type whose Done closed, the run's context
		// ends a moment later, and an attempt limited refused meanwhile
		// returns context.Canceled.)
		p.cfg.finished(start, cutShort(p.r))
		s.lost = true
		s.settle(nil)
		return false
	}
	e := p.cfg.itemError(idx, it.v, err)
	if !called {
		e.Attempts = 0
	}
	p.cfg.finished(start, e)
	fwd, end := p.cfg.failed(p.r, e)
	switch {
	case end == errHandlerCutShort: // the run ended while the handler ran
		s.lost = true
		s.settle(nil)
		return false
	case end != nil: // the policy ends the run at this item
		s.failRun(end)
		return false
	}
	if fwd != nil && !s.out.put(item[Out]{err: fwd, ack: s.ack.ref()}) {
		s.lost = true
	}
	s.settle(nil)
	return s.out.end()
}

// call runs the user's function on v, timing it if asked to. A plain
// stage's call goes straight to its one attempt: a frame less on the way
// to the user's function, and a worker's frames fit in its goroutine's
// first stack with little room (see run.exit).
func (s *stepper[In, Out]) call(v In) (err error) {
	p := s.p
	var start time.Duration
	if s.timed {
		start = sinceStart()
	}
	if p.plain {
		err = p.attempt(p.r.ctx, v, s)
	} else {
		err = p.call(v, s)
	}
	if s.timed {
		s.lastCall = sinceStart() - start
	}
	return err
}

// failRun ends the run with end, the error at which the stage's policy
// ended it at the current item, then tells the item (settle). It tells it
// from a deferred call: failing the run cancels its context, which calls
// the caller's context's methods, and a Goexit there ends this goroutine
// (run_userctx.go), after the run recorded the failure; the item's Ack
// must still learn it. Only the failure path calls it: the worker's
// frames on the way to a call stay small (see run.exit).
func (s *stepper[In, Out]) failRun(end error) {
	defer s.settle(end)
	s.p.r.fail(end)
}

// callWatched is call in a watched stage. A call that runtime.Goexit ended
// (t.Fatal in the function: the goroutine ends, skipping all that follows)
// is still reported Finished, cut short by ErrGoexit, so that the watcher
// does not count it in flight for ever. (A panic never gets here: the call
// recovers it.)
func (s *stepper[In, Out]) callWatched(v In, start time.Time) error {
	returned := false
	defer func() {
		if !returned {
			s.p.cfg.finished(start, &cutShortError{cause: ErrGoexit})
		}
	}()
	err := s.call(v)
	returned = true
	return err
}

// processStart is when the process started (near enough): sinceStart
// measures from it.
var processStart = time.Now()

// sinceStart reads the monotonic clock alone (one clock read, where
// time.Now makes two, wall and monotonic): a call is timed with two of
// them.
func sinceStart() time.Duration { return time.Since(processStart) }

// settle lets go of the stepper's reference to the current item, which it
// is done with: with err, if the item's way ended with it; abandoned, if
// an output was dropped; else released (its outputs hold references of
// their own). Members of a split batch that no element took go the same
// way.
func (s *stepper[In, Out]) settle(err error) {
	for _, m := range s.members[s.next:] {
		switch {
		case err != nil:
			m.release(err)
		case s.lost:
			m.abandon()
		default:
			m.release(nil)
		}
	}
	switch {
	case s.moved: // the output holds the item's reference (and let go of it if dropped)
		s.ack.fail(err)
	case err != nil:
		s.ack.release(err)
	case s.lost:
		s.ack.abandon()
	default:
		s.ack.release(nil)
	}
	s.ack, s.members, s.moved = nil, nil, false
}

// queueOut is the outlet of an unordered stage's worker: the first output
// of an item carries its token into the queue, further ones wait for room.
type queueOut[Out any] struct {
	q   *queue[Out]
	tok bool // the current item's token is not spent yet
}

func (o *queueOut[Out]) begin(int) { o.tok = !o.q.unbounded }

func (o *queueOut[Out]) put(it item[Out]) bool {
	if o.q.r.cancelled() {
		it.ack.abandon()
		return false
	}
	if o.tok {
		o.tok = false
		it.flags |= tok
		o.q.push(it)
		return true
	}
	if !o.q.pushExtra(it) {
		it.ack.abandon()
		return false
	}
	return true
}

func (o *queueOut[Out]) end() bool {
	if o.tok { // no output: the token goes back
		o.tok = false
		o.q.release(1)
	}
	return true // the worker's next acquire or pull sees a cancelled run
}

// orderOut is the outlet of an Ordered stage's worker: an item's outputs
// wait in its slot of the reorder window until the items before it have
// left; once the item is the head of the window, they go straight to the
// queue (it streams), so that an item may emit without bound.
type orderOut[Out any] struct {
	queueOut[Out]
	ord       *reorder[Out]
	eager     bool // the function emits while it runs (Apply): every output goes to the window at once
	idx       int
	buf       []item[Out] // starts in one: an item of one output costs no allocation (see reorder.complete)
	one       [1]item[Out]
	streaming bool
	// hold: the outputs wait for the item's end, never streamed while it
	// runs (a fused stage's consumer handle, which must not wait for room
	// in the queue it consumes: see fuseHandle.hold); they are bounded by
	// what one call emits.
	hold bool
}

func (o *orderOut[Out]) begin(idx int) {
	o.queueOut.begin(idx)
	o.idx, o.streaming = idx, false
}

func (o *orderOut[Out]) put(it item[Out]) bool {
	if o.streaming {
		return o.queueOut.put(it)
	}
	if o.q.r.cancelled() {
		it.ack.abandon()
		return false
	}
	// An Apply's function emits while it runs, and may wait for its outputs
	// to be consumed: each output goes to the window at once, so that an
	// emitter that reaches the item moves it on (see reorder.park).
	if o.eager {
		switch o.ord.park(o.idx, it, o.tok) {
		case parkedOut:
			o.tok = false
			return true
		case cancelledOut:
			return false
		}
		o.streaming = true
		return o.queueOut.put(it)
	}
	// The others (Map, FlatMap, ...) emit once their function returned:
	// they look for the head only at 2, 4, 8, ... buffered outputs, so that
	// one output per item never pays for it.
	if o.buf == nil {
		o.buf = o.one[:0]
	}
	o.buf = append(o.buf, it)
	n := len(o.buf)
	if n < 2 || n&(n-1) != 0 || o.hold || !o.ord.tryStream(o.idx) {
		return true
	}
	o.streaming = true
	ok := true
	for i := range o.buf {
		if ok {
			ok = o.queueOut.put(o.buf[i])
		} else {
			o.buf[i].ack.abandon()
		}
	}
	clear(o.buf)
	o.buf = o.buf[:0]
	return ok
}

func (o *orderOut[Out]) end() bool {
	if o.streaming {
		return o.ord.endStream()
	}
	var emitter bool
	o.buf, emitter = o.ord.complete(o.idx, o.buf, o.tok)
	o.tok = false
	if emitter {
		return o.ord.emit()
	}
	return !o.q.r.cancelled()
}

// handOut is the outlet of a stage run in its consumer's goroutine: the
// outputs wait in items until the consumer takes them, one by one. It
// takes every output while the run is live (they are bounded by what one
// call of a fusable function emits); once the run is cancelled it takes
// none and abandons them, as a queue does, and the consumer drops what it
// still holds (see fuseHandle.ownNext): a cancelled run hands nothing on.
type handOut[Out any] struct {
	r     *run
	items []item[Out]
	pos   int          // the next one to hand out
	one   [1]item[Out] // items' first room: most items have one output
}

func (o *handOut[Out]) begin(int) {
	clear(o.items)
	o.items, o.pos = o.items[:0], 0
}

func (o *handOut[Out]) put(it item[Out]) bool {
	if o.r.cancelled() {
		it.ack.abandon()
		return false
	}
	o.items = append(o.items, it)
	return true
}

func (o *handOut[Out]) end() bool { return true }

// drop abandons the outputs not handed out yet.
func (o *handOut[Out]) drop() {
	for _, it := range o.items[o.pos:] {
		it.ack.abandon()
	}
	o.begin(0)
}

// idle reports whether every output of the last item was handed out.
func (o *handOut[Out]) idle() bool { return o.pos == len(o.items) }

// take hands out the next output.
func (o *handOut[Out]) take() item[Out] {
	it := o.items[o.pos]
	o.items[o.pos] = item[Out]{}
	o.pos++
	return it
}
