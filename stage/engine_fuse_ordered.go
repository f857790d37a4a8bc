package stage

import "runtime"

// A consumer's handle on a fused Ordered stage (see fuseRun): while it
// holds a place and nothing is queued, it processes items through that
// place into the reorder window (ownStep), as long as a token is free; it
// takes every output from the queue, whose order is the input's and whose
// index is the output's position. It waits on the queue only when it
// holds no live place or no token is free, a wait that ends (see fuseRun).

// ownStep processes one input item through the handle's place, into the
// reorder window: its outputs reach the queue once the items before it
// have left. It reports false when it could not: the place is spent (its
// input ended, or the run is over) or no token is free. It times calls as
// ownNext does, and after two slow ones in a row gives the place to a new
// goroutine. (The call's steps repeat ownNext's rather than share a
// method: a call more on ownNext's path cost 10-20% of a 1,000-item Map
// run.)
func (h *fuseHandle[In, Out]) ownStep() bool {
	if h.ended || h.fr.p.r.cancelled() {
		h.inline = false
		h.fr.app.noMore()
		return false
	}
	if !h.fr.out.tryAcquire() {
		return false
	}
	in, idx, ok := h.in.pull()
	if !ok {
		h.fr.app.lost(in, idx) // the token back, or a lost index closed in the window
		h.ended, h.inline = true, false
		h.fr.app.noMore() // as a goroutine of the stage does when its input ends
		return false
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
	if h.slowCalls >= 2 && !h.ended {
		h.inline = false
		h.fr.spawn(h.in, h.fr.app.stepper())
	}
	return true
}

// pullOrdered is pull for an ordered stage.
func (h *fuseHandle[In, Out]) pullOrdered() (item[Out], int, bool) {
	for {
		h.claim()
		if h.inline && h.fr.out.ready.Load() == 0 && h.ownStep() {
			continue
		}
		it, idx, ok := h.fr.out.pull()
		switch {
		case !ok:
			if h.done() {
				return it, 0, false
			}
		case !it.is(baton): // a baton only woke us: claim looks at the count
			return it, idx, true
		}
	}
}

// pullAllOrdered is pullAll for an ordered stage.
func (h *fuseHandle[In, Out]) pullAllOrdered(dst []item[Out]) ([]item[Out], bool) {
	for {
		h.claim()
		if h.inline && h.fr.out.ready.Load() == 0 {
			// The sink has consumed its previous batch: its tokens go
			// back before the handle looks for one.
			if h.fr.out.releaseHeld() {
				runtime.Gosched() // as in pullAll
			}
			if h.ownStep() {
				continue
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
