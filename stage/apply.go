package stage

import (
	"context"
	"sync"
	"time"

	"github.com/sluicedev/sluice/internal/guard"
)

// Apply is the primitive every stage is written with ([Map], [Filter],
// [FlatMap] and [Concurrent] are a few lines over it). It calls f once per
// input item, under the stage's options; f passes zero or more outputs to
// emit, in order, and returns nil, or an error that the stage's error policy
// handles (an *[Error] with the item's index and input). Outputs emitted
// before an error still go downstream.
//
// emit blocks until downstream takes the output (or the output buffer does)
// and returns false once the run is cancelled; f should then return. With
// [Ordered], an item's outputs wait in memory until the items before it have
// left; from then on (once the item is the oldest in flight) emit sends them
// on directly, so an item may emit without end once its turn has come.
//
// Forwarded errors from upstream pass through without a call of f. Workers,
// ordering, policy, name and buffer come from opts (see [Option]); the
// default name is "apply". Apply panics if in is the zero Stream or f is nil.
func Apply[In, Out any](in Stream[In], f func(ctx context.Context, v In, emit func(Out) bool) error, opts ...Option) Stream[Out] {
	return apply("stage.Apply", "apply", in, f, opts, false)
}

// apply builds a stage; fusable says that f emits a bounded number of
// outputs per item, so that the stage may run in its consumer's goroutines
// (see fuseRun).
func apply[In, Out any](fn, kind string, in Stream[In], f func(context.Context, In, func(Out) bool) error, opts []Option, fusable bool) Stream[Out] {
	in.check(fn)
	checkFunc(f == nil, fn, "function")
	cfg := newConfig(fn, kind, opts)
	checkKey[In](&cfg, fn)
	fusable = fusable && cfg.key == nil
	st := Stream[Out]{
		n: &node{kind: cfg.name, inputs: []*node{in.n}, waits: in.n.waits},
		open: func(r *run) puller[Out] {
			// Upstream first, so that observers meet the stages in order.
			serial := fusable && cfg.workers == 1 && cfg.buffer == 0
			handles := in.openFor(r, cfg.consumers(serial))
			cfg := cfg.forRun(r, in.n)
			f := wrapCalls(&cfg, f)
			if serial {
				// The sequential path: consumers take turns calling f.
				fr := newFuseRun(r, cfg, f, handles)
				return &serialHandle[In, Out]{h: fr.handle()}
			}
			s := &applier[In, Out]{r: r, cfg: cfg, f: f}
			return s.start(handles)
		},
	}
	if fusable && cfg.workers > 1 && cfg.buffer == 0 && !cfg.ordered && !in.n.waits {
		st.fuseWorkers = cfg.workers
		st.fuse = func(r *run) func() puller[Out] {
			handles := in.openFor(r, cfg.workers)
			cfg := cfg.forRun(r, in.n)
			fr := newFuseRun(r, cfg, wrapCalls(&cfg, f), handles)
			return func() puller[Out] { return fr.handle() }
		}
	}
	return st
}

// applier is an Apply stage running in one run.
type applier[In, Out any] struct {
	r   *run
	cfg config
	f   func(context.Context, In, func(Out) bool) error
	out *pipe[Out]
	ord *reorder[Out] // nil unless Ordered

	fuse *fuseRun[In, Out] // set when the stage's consumer may take workers' places

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

// start starts the stage's goroutines, each pulling through a handle of its
// input.
func (s *applier[In, Out]) start(handles func() puller[In]) puller[Out] {
	if s.cfg.key != nil {
		s.gate = s.cfg.key.(keyer[In]).newGate()
	}
	// Tokens bound what the stage takes ahead of its consumer: one per
	// worker (two when Ordered: the reorder window) plus the buffer.
	capacity := -1 // Workers(-1): no bound
	if s.cfg.workers > 0 {
		capacity = s.cfg.workers + s.cfg.buffer
		if s.cfg.ordered {
			capacity += s.cfg.workers
		}
	}
	if s.cfg.workers < 0 {
		s.out = newPipe[Out](s.r, capacity, 1)
	} else {
		s.out = newPipe[Out](s.r, capacity, s.cfg.workers)
	}
	if s.cfg.ordered {
		s.ord = newReorder(capacity, s.out)
	}
	if s.cfg.workers < 0 {
		in := handles()
		s.r.goroutine(func() { s.dispatch(in) })
	} else {
		for range s.cfg.workers {
			in := handles()
			s.r.goroutine(func() { s.work(in) })
		}
	}
	return s.out
}

// work is one of Workers(n) goroutines: take a token, pull, process, repeat.
func (s *applier[In, Out]) work(in puller[In]) {
	defer s.out.closeWriter()
	t := s.newTask()
	for {
		// Calls are cheap and a consumer goroutine wants a worker's place:
		// this goroutine gives it its place (see fuseRun).
		if s.fuse != nil && t.cheap >= 2 && s.fuse.retire(in) {
			return
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
			s.out.release(1)
			return
		}
		if !t.process(it, idx) {
			return
		}
	}
}

// workKeyed is one step of a KeyBy worker that holds a token: pull an item
// and run it, and then the items that waited for its key; or leave it
// waiting, with the token, if its key is busy. It reports false when the
// goroutine should stop.
func (s *applier[In, Out]) workKeyed(t *task[In, Out], in puller[In]) bool {
	s.keyMu.Lock()
	it, idx, ok := in.pull()
	admitted := ok && (it.failure() != nil || s.gate.admit(it, idx))
	s.keyMu.Unlock()
	switch {
	case !ok:
		s.out.release(1)
		return false
	case !admitted:
		return true
	}
	return t.processKeyed(it, idx)
}

// processKeyed processes an admitted item, then every item that waited for
// its key.
func (t *task[In, Out]) processKeyed(it item[In], idx int) bool {
	for {
		if !t.process(it, idx) {
			return false
		}
		if it.failure() != nil {
			return true
		}
		var more bool
		if it, idx, more = t.s.gate.done(it.v); !more {
			return true
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
		if s.gate != nil && it.failure() == nil && !s.gate.admit(it, idx) {
			continue // it waits for the goroutine of its key
		}
		s.out.addWriter()
		s.r.goroutine(func() {
			defer s.out.closeWriter()
			if s.gate != nil {
				s.newTask().processKeyed(it, idx)
				return
			}
			s.newTask().process(it, idx)
		})
	}
}

// task is the per-goroutine state of a worker: its emit function, whether
// it still holds the current item's token, and, when Ordered, the buffer
// that collects the current item's outputs.
type task[In, Out any] struct {
	s    *applier[In, Out]
	emit func(Out) bool
	tok  bool     // the current item's token is not yet spent
	ack  *ackNode // the current item's acknowledgement, or nil

	split  []*ackNode // Unbatch: the batch's members, one per output
	splitN int

	buf       []Out // Ordered: the current item's outputs
	idx       int   // Ordered: the current item's index
	streaming bool  // Ordered: the current item is the head and emits directly

	calls int // calls made, for sampling their duration (fused stages)
	cheap int // timed calls in a row that were cheap (> 0) or slow (< 0)
}

func (s *applier[In, Out]) newTask() *task[In, Out] {
	t := &task[In, Out]{s: s}
	if s.ord != nil {
		t.emit = func(v Out) bool {
			if t.streaming {
				return t.put(item[Out]{v: v, err: t.ack.carry()})
			}
			t.ack.ref() // the output's reference, attached when it leaves
			t.buf = append(t.buf, v)
			// From the second output on, at 2, 4, 8, ... buffered outputs,
			// check whether this item is the head and may stream: one
			// output per item (Map) never pays for the check.
			if n := len(t.buf); n >= 2 && n&(n-1) == 0 && s.ord.tryStream(t.idx) {
				t.streaming = true
				for i := range t.buf {
					t.put(item[Out]{v: t.buf[i], err: withAck(nil, t.ack)})
				}
				clear(t.buf)
				t.buf = t.buf[:0]
			}
			return !s.r.cancelled()
		}
	} else {
		t.emit = func(v Out) bool {
			if t.split != nil {
				return t.put(item[Out]{v: v, err: nextAck(t.ack, t.split, &t.splitN)})
			}
			return t.put(item[Out]{v: v, err: t.ack.carry()})
		}
	}
	return t
}

// put queues one output (or forwarded error) of the current item: the first
// carries the item's token, the others wait for room. It reports false once
// the run is cancelled.
func (t *task[In, Out]) put(it item[Out]) bool {
	if t.tok {
		t.tok = false
		it.flags |= tok
		t.s.out.push(it)
		return !t.s.r.cancelled()
	}
	return t.s.out.pushExtra(it) && !t.s.r.cancelled()
}

// process handles one input item, whose token the task holds; it reports
// false when the goroutine should stop (the run is ending).
func (t *task[In, Out]) process(it item[In], idx int) bool {
	s := t.s
	t.tok, t.idx, t.streaming, t.ack = !s.out.unbounded, idx, false, it.acked()
	t.split, t.splitN = nil, 0
	if s.cfg.split {
		t.split = t.ack.split()
	}
	err := it.failure() // a forwarded error passes through
	if err == nil {
		start := s.cfg.started()
		if err = t.call(it.v); err != nil {
			if s.r.ctx.Err() != nil {
				s.cfg.finished(start, err)
				return false // the run is ending; this error is a consequence
			}
			e := s.cfg.itemError(idx, it.v, err)
			s.cfg.finished(start, e)
			var goOn bool
			if err, goOn = s.cfg.failed(s.r, e); !goOn {
				return false
			}
		} else {
			s.cfg.finished(start, nil)
		}
	}
	// The item is settled: its outputs hold references of their own, and
	// the task lets go of its reference once they are on their way (with
	// no output at all, the item is done: Filter's drop, Handle's).
	if t.streaming { // Ordered, and the outputs went out as they came
		if err != nil && !t.put(item[Out]{err: withAck(err, t.ack.ref())}) {
			return false
		}
		t.settle()
		return s.ord.endStream()
	}
	if s.ord != nil {
		if err != nil {
			t.ack.ref() // the forwarded error's reference
		}
		var ok bool
		t.buf, ok = s.ord.complete(idx, t.buf, err, t.tok, t.ack)
		t.tok = false
		t.settle()
		return ok
	}
	if err != nil && !t.put(item[Out]{err: withAck(err, t.ack.ref())}) {
		return false
	}
	if t.tok { // no output: the token goes back
		t.tok = false
		s.out.release(1)
	}
	t.settle()
	return true
}

// settle lets go of the task's reference to the current item's
// acknowledgement: the item is done, apart from its outputs. Not once the
// run is cancelled: the function may have stopped emitting half-way, and an
// item with outputs missing must not count as done (it stays unsettled, and
// its source redelivers it).
func (t *task[In, Out]) settle() {
	if t.ack != nil && !t.s.r.cancelled() {
		t.ack.settle(nil)
	}
}

// call runs the user's function for one input, turning a panic into an error.
// In a fused stage whose consumer wants workers' places, it times some calls
// (see fuseRun).
func (t *task[In, Out]) call(v In) (err error) {
	timed := t.s.fuse != nil && t.s.fuse.wanted.Load() > 0 && (t.calls < 2 || t.calls%16 == 0)
	t.calls++
	var start time.Time
	if timed {
		start = time.Now()
	}
	if rec := guard.Call(func() { err = t.s.f(t.s.r.ctx, v, t.emit) }); rec != nil {
		err = panicError(rec)
	}
	if timed {
		switch d := time.Since(start); {
		case d < cheapCall:
			t.cheap = max(t.cheap, 0) + 1
		case d > slowCall:
			if t.cheap = min(t.cheap, 0) - 1; t.cheap <= -2 && !t.s.out.slow.Load() {
				t.s.out.slow.Store(true) // two slow calls in a row
			}
		default:
			t.cheap = 0
		}
	}
	return err
}
