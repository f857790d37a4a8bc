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
	pending []item[Out] // the current item's outputs not yet handed out
	pos     int
	ended   bool // the input ended, or the run stopped

	timeNext bool          // time the next call of f
	lastCall time.Duration // how long the last timed call took
}

func newFused[In, Out any](r *run, cfg config, f func(context.Context, In, func(Out) bool) error, in puller[In]) *fused[In, Out] {
	u := &fused[In, Out]{r: r, cfg: cfg, f: f, in: in}
	u.emit = func(v Out) bool {
		u.pending = append(u.pending, item[Out]{v: v})
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
	if it.err != nil {
		u.pending = append(u.pending, item[Out]{err: it.err})
		return
	}
	var err error
	var start time.Time
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
		return
	}
	if u.r.ctx.Err() != nil {
		u.ended = true // the run is ending; this error is a consequence
		return
	}
	e := &Error{Stage: u.cfg.name, Index: idx, Input: it.v, Err: err}
	if u.cfg.policy == FailFast {
		u.r.fail(e)
		u.ended = true
		return
	}
	u.pending = append(u.pending, item[Out]{err: e})
}

// fuseRun is a fusable stage (an unordered Map, Filter, FlatMap or
// Concurrent without Buffer) in one run. Its consumer's goroutines act as
// its workers and call the function themselves, which saves the hand-off
// between goroutines that dominates the cost of a cheap function. For a
// slow function that saving is nothing, and running it in the consumer
// would keep the consumer from its own work: a handle that sees a slow call
// hands its worker's place to a goroutine of the stage's own, and from then
// on takes that goroutine's outputs from the stage's pipe.
type fuseRun[In, Out any] struct {
	r     *run
	cfg   config
	f     func(context.Context, In, func(Out) bool) error
	count atomic.Int64 // outputs handed out through every handle

	mu  sync.Mutex
	app *applier[In, Out]         // the stage's own goroutines, once it has any
	out atomic.Pointer[pipe[Out]] // their outputs
}

// slowCall is how long a call must take for its handle to hand its place to
// a goroutine: past it, a hand-off costs under a few percent of the call.
const slowCall = 20 * time.Microsecond

// verySlowCall is how long a first call must take to hand over at once: a
// slow function then holds its consumer up only once. It is well above how
// long a goroutine usually waits for a processor, which the timer also sees.
const verySlowCall = 250 * time.Microsecond

// spawn starts a worker goroutine of the stage that pulls through in.
func (fr *fuseRun[In, Out]) spawn(in puller[In]) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fr.app == nil {
		fr.start(0, nil)
	}
	fr.app.out.addWorker()
	fr.r.goroutine(func() { fr.app.work(in) })
	fr.out.Store(fr.app.out) // published once it has its writer
}

// start makes the stage's pipe and starts n worker goroutines, each on a
// handle from handles; called with mu held or before any handle exists.
func (fr *fuseRun[In, Out]) start(n int, handles func() puller[In]) {
	c := fr.cfg
	c.workers = n
	fr.app = &applier[In, Out]{r: fr.r, cfg: c, f: fr.f}
	fr.app.out = newPipe[Out](fr.r, n, n)
	for range n {
		in := handles()
		fr.r.goroutine(func() { fr.app.work(in) })
	}
	if n > 0 {
		fr.out.Store(fr.app.out)
	}
}

// index gives the next output its position in the stage's output.
func (fr *fuseRun[In, Out]) index() int { return int(fr.count.Add(1) - 1) }
