package stage

import (
	"context"
	"github.com/sluicedev/sluice/internal/guard"
	"sync/atomic"
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
	return apply("stage.Apply", "apply", in, f, opts)
}

func apply[In, Out any](fn, kind string, in Stream[In], f func(context.Context, In, func(Out) bool) error, opts []Option) Stream[Out] {
	in.check(fn)
	checkFunc(f == nil, fn, "function")
	cfg := newConfig(fn, kind, opts)
	return Stream[Out]{
		n: &node{kind: cfg.name, inputs: []*node{in.n}},
		open: func(r *run) puller[Out] {
			s := &applier[In, Out]{r: r, cfg: cfg, f: f, in: in.open(r)}
			return s.start()
		},
	}
}

// applier is an Apply stage running in one run.
type applier[In, Out any] struct {
	r   *run
	cfg config
	f   func(context.Context, In, func(Out) bool) error
	in  puller[In]
	out chan item[Out]
	ord *reorder[Out] // nil unless Ordered

	live atomic.Int64 // goroutines that may still send; the last one closes out
}

func (s *applier[In, Out]) start() puller[Out] {
	// The buffer is the user's Buffer option: zero unless they asked.
	s.out = make(chan item[Out], s.cfg.buffer)
	if s.cfg.ordered {
		s.ord = newReorder(s.cfg.window(), s.out, s.r.done)
	}
	// Output is sequenced (its order is meaningful and stamped in item.seq)
	// when one goroutine at a time emits in input order.
	seqd := s.cfg.ordered || s.cfg.workers == 1
	switch {
	case s.cfg.workers < 0:
		s.live.Store(1)
		s.r.goroutine(s.dispatch)
	default:
		s.live.Store(int64(s.cfg.workers))
		for range s.cfg.workers {
			s.r.goroutine(s.work)
		}
	}
	return &chanPuller[Out]{ch: s.out, done: s.r.done, seqd: seqd}
}

// exit is deferred by every goroutine of the stage. The last one closes out
// and drains the input, releasing upstream goroutines blocked on a send.
func (s *applier[In, Out]) exit() {
	if s.live.Add(-1) == 0 {
		close(s.out)
		s.in.drain()
	}
}

// work is one of Workers(n) goroutines: pull, process, repeat.
func (s *applier[In, Out]) work() {
	defer s.exit()
	t := s.newTask()
	for {
		if s.ord != nil && !s.ord.reserve() {
			return
		}
		it, idx, ok := s.in.pull()
		if !ok {
			if s.ord != nil {
				s.ord.unreserve()
			}
			return
		}
		if !t.process(it, idx) {
			return
		}
	}
}

// dispatch serves Workers(-1): one goroutine per item.
func (s *applier[In, Out]) dispatch() {
	defer s.exit()
	for {
		it, idx, ok := s.in.pull()
		if !ok {
			return
		}
		s.live.Add(1)
		s.r.goroutine(func() {
			defer s.exit()
			s.newTask().process(it, idx)
		})
	}
}

// task is the per-goroutine state of a worker: its emit function and, when
// Ordered, the buffer that collects the current item's outputs.
type task[In, Out any] struct {
	s    *applier[In, Out]
	emit func(Out) bool
	buf  []Out
	seq  int // next output position, for a single unordered worker

	idx       int  // Ordered: the current item's index
	streaming bool // Ordered: the current item is the head and emits directly
}

func (s *applier[In, Out]) newTask() *task[In, Out] {
	t := &task[In, Out]{s: s}
	if s.ord != nil {
		t.emit = func(v Out) bool {
			if t.streaming {
				return s.ord.sendNext(v)
			}
			t.buf = append(t.buf, v)
			// From the second output on, at 2, 4, 8, ... buffered outputs,
			// check whether this item is the head and may stream: one
			// output per item (Map) never pays for the check.
			if n := len(t.buf); n >= 2 && n&(n-1) == 0 && s.ord.tryStream(t.idx) {
				t.streaming = true
				for i := range t.buf {
					s.ord.sendNext(t.buf[i])
				}
				clear(t.buf)
				t.buf = t.buf[:0]
			}
			return !s.r.cancelled()
		}
	} else {
		t.emit = func(v Out) bool { return t.send(item[Out]{v: v}) }
	}
	return t
}

// send passes one output downstream, stamping its position when the stage
// has a single worker; it reports false once the run is cancelled.
func (t *task[In, Out]) send(it item[Out]) bool {
	if t.s.cfg.workers == 1 {
		it.seq = t.seq
		t.seq++
	}
	return send(t.s.out, it, t.s.r.done)
}

// process handles one input item; it reports false when the goroutine should
// stop (the run is ending).
func (t *task[In, Out]) process(it item[In], idx int) bool {
	s := t.s
	err := it.err // a forwarded error passes through
	t.idx, t.streaming = idx, false
	if err == nil {
		if err = t.call(it.v); err != nil {
			if s.r.ctx.Err() != nil {
				return false // the run is ending; this error is a consequence
			}
			e := &Error{Stage: s.cfg.name, Index: idx, Input: it.v, Err: err}
			if s.cfg.policy == FailFast {
				s.r.fail(e)
				return false
			}
			err = e
		}
	}
	if s.ord != nil {
		var ok bool
		t.buf, ok = s.ord.complete(idx, t.buf, err, t.streaming)
		return ok
	}
	if err != nil {
		return t.send(item[Out]{err: err})
	}
	return true
}

// call runs the user's function for one input, turning a panic into an error.
func (t *task[In, Out]) call(v In) (err error) {
	if rec := guard.Call(func() { err = t.s.f(t.s.r.ctx, v, t.emit) }); rec != nil {
		err = panicError(rec)
	}
	return err
}
