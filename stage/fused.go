package stage

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/sluicedev/sluice/internal/guard"
)

// fused runs a stage without goroutines of its own: its consumer's
// goroutines call the stage's function when they pull. An item then costs a
// function call instead of a hand-off between goroutines. Two forms:
//
//   - serial (Workers(1)): one fused puller shared by all of the consumer's
//     goroutines; they take turns under mu, so at most one call runs, and the
//     calls take turns with the consumer's work instead of overlapping it.
//   - per handle (Workers(n), n > 1, unordered): the consumer has exactly n
//     goroutines and each pulls through a fused handle of its own, so at most
//     n calls run, and exactly n when all of them are pulling.
//
// Only Map, Filter, FlatMap and Concurrent are fused (their outputs per item
// are bounded), and never with a Buffer, which asks for a goroutine.
type fused[In, Out any] struct {
	r      *run
	cfg    config
	f      func(context.Context, In, func(Out) bool) error
	in     puller[In]
	serial bool
	mu     sync.Mutex    // serial: held across pull
	count  *atomic.Int64 // per handle: outputs pulled through all handles

	emit    func(Out) bool
	pending []item[Out] // outputs of the current item not yet pulled
	pos     int
	n       int // serial: outputs pulled
	ended   bool
}

func newFused[In, Out any](r *run, cfg config, f func(context.Context, In, func(Out) bool) error, in puller[In], serial bool) *fused[In, Out] {
	u := &fused[In, Out]{r: r, cfg: cfg, f: f, in: in, serial: serial}
	u.emit = func(v Out) bool {
		u.pending = append(u.pending, item[Out]{v: v})
		return !r.cancelled()
	}
	return u
}

func (u *fused[In, Out]) pull() (item[Out], int, bool) {
	if u.serial {
		u.mu.Lock()
		defer u.mu.Unlock()
	}
	for u.pos == len(u.pending) {
		if u.ended || u.r.cancelled() {
			return item[Out]{}, 0, false
		}
		clear(u.pending)
		u.pending, u.pos = u.pending[:0], 0
		u.step()
	}
	it := u.pending[u.pos]
	u.pending[u.pos] = item[Out]{}
	u.pos++
	if u.serial {
		u.n++
		return it, u.n - 1, true
	}
	// The order in which handles finish items; exact when there is one.
	return it, int(u.count.Add(1) - 1), true
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
	if rec := guard.Call(func() { err = u.f(u.r.ctx, it.v, u.emit) }); rec != nil {
		err = panicError(rec)
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
