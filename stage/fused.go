package stage

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicedev/sluice/internal/guard"
)

// fused is the engine of a worker that runs in its consumer's goroutine: it
// pulls an input item, calls the stage's function on it, and hands the
// outputs out one by one. It is not safe for concurrent use: each consumer
// goroutine has its own (see fuseHandle), or takes turns under a lock (see
// serialHandle).
type fused[In, Out any] struct {
	r       *run
	cfg     config
	f       func(context.Context, In, func(Out) bool) error
	in      puller[In]
	emit    func(Out) bool
	ack     *ackNode   // the current item's acknowledgement, or nil
	split   []*ackNode // Unbatch: the batch's members, one per output
	splitN  int
	pending []item[Out] // the current item's outputs not yet handed out
	pos     int
	ended   bool // the input ended, or the run stopped

	timeNext bool          // time the next call of f
	lastCall time.Duration // how long the last timed call took
}

func newFused[In, Out any](r *run, cfg config, f func(context.Context, In, func(Out) bool) error, in puller[In]) *fused[In, Out] {
	u := &fused[In, Out]{r: r, cfg: cfg, f: f, in: in}
	u.emit = func(v Out) bool {
		u.pending = append(u.pending, item[Out]{v: v, err: nextAck(u.ack, u.split, &u.splitN)})
		return !r.cancelled()
	}
	return u
}

// idle reports whether every output of the last item has been handed out.
func (u *fused[In, Out]) idle() bool { return u.pos == len(u.pending) }

// next hands out the next output, calling the function as needed.
func (u *fused[In, Out]) next() (item[Out], bool) {
	for u.idle() {
		if u.ended || u.r.cancelled() {
			return item[Out]{}, false
		}
		clear(u.pending)
		u.pending, u.pos = u.pending[:0], 0
		u.step()
	}
	it := u.pending[u.pos]
	u.pending[u.pos] = item[Out]{}
	u.pos++
	return it, true
}

// step pulls one input item and runs the function on it.
func (u *fused[In, Out]) step() {
	it, idx, ok := u.in.pull()
	if !ok {
		u.ended = true
		return
	}
	if it.failure() != nil { // passes through with its acknowledgement
		u.pending = append(u.pending, item[Out]{err: it.err})
		return
	}
	u.ack = it.acked()
	u.split, u.splitN = nil, 0
	if u.cfg.split {
		u.split = u.ack.split()
	}
	var err error
	var start time.Time
	obsStart := u.cfg.started()
	if u.timeNext {
		start = time.Now()
	}
	if rec := guard.Call(func() { err = u.f(u.r.ctx, it.v, u.emit) }); rec != nil {
		err = panicError(rec)
	}
	if u.timeNext {
		u.lastCall, u.timeNext = time.Since(start), false
	}
	if err == nil {
		u.cfg.finished(obsStart, nil)
		u.settle()
		return
	}
	if u.r.ctx.Err() != nil {
		u.cfg.finished(obsStart, err)
		u.ended = true // the run is ending; this error is a consequence
		return
	}
	e := u.cfg.itemError(idx, it.v, err)
	u.cfg.finished(obsStart, e)
	fwd, goOn := u.cfg.failed(u.r, e)
	switch {
	case !goOn:
		u.ended = true
		return // the run is failing: the item is left unsettled
	case fwd != nil:
		u.pending = append(u.pending, item[Out]{err: withAck(fwd, u.ack.ref())})
	}
	u.settle()
}

// settle is task.settle for the fused engine.
func (u *fused[In, Out]) settle() {
	if u.ack != nil && !u.r.cancelled() {
		u.ack.settle(nil)
	}
}

// fuseRun is a fusable stage (an unordered Map, Filter, FlatMap or
// Concurrent without Buffer) in one run. It starts as any stage does, with
// its workers as goroutines of its own. When their calls prove cheap (two
// timed calls in a row under cheapCall), a goroutine gives its place to one
// of the consumer's goroutines that wants one (each of the consumer's handles
// wants one, once): it leaves its input handle in spares, counts a baton,
// queues a baton item to wake a waiting handle, and exits. The handle that
// claims the baton calls the function itself from then on, through that
// input handle, which saves the hand-off between goroutines that dominates
// the cost of a cheap function. If the calls turn slow (two timed calls in a
// row over slowCall), the handle gives its place back to a new goroutine:
// the consumer has its own work, and a hand-off then costs nothing next to
// the call.
//
// At any moment each of the stage's n places is held by one goroutine, one
// handle, or one unclaimed baton, so at most n calls run. A handle only calls
// the function when it pulls, so the bound on what the stage runs ahead of
// its consumer holds too. The pipe ends when its goroutines have ended; a
// handle that still wants a place claims any baton left before it reports
// the end, so that no input handle (and what it holds) is left behind.
type fuseRun[In, Out any] struct {
	r      *run
	cfg    config
	f      func(context.Context, In, func(Out) bool) error
	app    *applier[In, Out]
	out    *pipe[Out]
	count  atomic.Int64 // outputs handed out through every handle
	wanted atomic.Int64 // handles that still want a place
	batons atomic.Int64 // places given up and not yet claimed

	mu     sync.Mutex
	spares []puller[In] // input handles of retired goroutines
}

const (
	// cheapCall: calls under it make a goroutine give its place to the
	// consumer.
	cheapCall = 5 * time.Microsecond
	// slowCall: calls over it make a handle give its place back to a
	// goroutine; past it, a hand-off costs under a few percent of a call.
	slowCall = 20 * time.Microsecond
)

func newFuseRun[In, Out any](r *run, cfg config, f func(context.Context, In, func(Out) bool) error, handles func() puller[In]) *fuseRun[In, Out] {
	fr := &fuseRun[In, Out]{r: r, cfg: cfg, f: f}
	fr.out = newPipe[Out](r, cfg.workers, cfg.workers)
	fr.app = &applier[In, Out]{r: r, cfg: cfg, f: f, out: fr.out, fuse: fr}
	for range cfg.workers {
		in := handles()
		r.goroutine(func() { fr.app.work(in) })
	}
	return fr
}

// handle returns a new handle for one goroutine of the consumer.
func (fr *fuseRun[In, Out]) handle() *fuseHandle[In, Out] {
	fr.wanted.Add(1)
	return &fuseHandle[In, Out]{fr: fr}
}

// retire gives the calling goroutine's place, with its input handle in, to
// a handle that wants one, if any; it reports whether the goroutine should
// exit.
func (fr *fuseRun[In, Out]) retire(in puller[In]) bool {
	for {
		w := fr.wanted.Load()
		if w <= 0 {
			return false
		}
		if fr.wanted.CompareAndSwap(w, w-1) {
			break
		}
	}
	fr.mu.Lock()
	fr.spares = append(fr.spares, in)
	fr.mu.Unlock()
	fr.batons.Add(1)
	fr.out.retireWorker()
	return true
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

// spawn gives a handle's place back to a new goroutine pulling through in.
func (fr *fuseRun[In, Out]) spawn(in puller[In]) {
	fr.out.addWorker()
	fr.r.goroutine(func() { fr.app.work(in) })
}

// index gives the next output its position in the stage's output.
func (fr *fuseRun[In, Out]) index() int { return int(fr.count.Add(1) - 1) }
