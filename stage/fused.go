package stage

import (
	"context"
	"sync"

	"github.com/sluicedev/sluice/internal/guard"
)

// fused runs a Workers(1) stage without a goroutine of its own: its consumer
// calls the function itself, under the stage's lock, when it pulls. An item
// then costs a function call instead of a hand-off between goroutines, and
// the stage's calls take turns with its consumer's work instead of
// overlapping with it. Map, Filter, FlatMap and Concurrent with one worker
// and no Buffer run this way; Apply never does, since its function may emit
// without end.
type fused[In, Out any] struct {
	r   *run
	cfg config
	f   func(context.Context, In, func(Out) bool) error
	in  puller[In]

	mu      sync.Mutex
	emit    func(Out) bool
	pending []item[Out] // the current item's outputs not yet pulled
	pos     int
	n       int // outputs pulled: the index of the next one
	ended   bool
}

func newFused[In, Out any](r *run, cfg config, f func(context.Context, In, func(Out) bool) error, in puller[In]) *fused[In, Out] {
	u := &fused[In, Out]{r: r, cfg: cfg, f: f, in: in}
	u.emit = func(v Out) bool {
		u.pending = append(u.pending, item[Out]{v: v})
		return !r.cancelled()
	}
	return u
}

func (u *fused[In, Out]) pull() (item[Out], int, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
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
	u.n++
	return it, u.n - 1, true
}

// step pulls one input item and runs the function on it; called with mu held.
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
