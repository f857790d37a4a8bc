package stage

import (
	"runtime"
	"sync"
)

// fuseHandle is how one goroutine of a consumer pulls from a fused stage
// (see fuseRun): from the stage's pipe, and, once it holds a worker's place,
// through its own worker when nothing is queued.
type fuseHandle[In, Out any] struct {
	fr        *fuseRun[In, Out]
	own       *fused[In, Out] // the place's worker; nil while the handle wants one
	inline    bool            // holds a place: calls the function itself
	calls     int             // calls through own, for sampling their duration
	slowCalls int             // timed calls in a row that were slow
}

// claim takes a place if the handle wants one and one is free.
func (h *fuseHandle[In, Out]) claim() {
	if h.own != nil {
		return
	}
	if in, ok := h.fr.claim(); ok {
		h.own = newFused(h.fr.r, h.fr.cfg, h.fr.f, in)
		h.inline = true
	}
}

// ownTurn reports whether the handle should call the function now: it holds
// a place and nothing is queued, or its current item has outputs left.
func (h *fuseHandle[In, Out]) ownTurn() bool {
	return h.inline && (!h.own.idle() || h.fr.out.ready.Load() == 0)
}

// ownNext takes the next output of the handle's own worker. It times the
// first two calls and one in 16 after; after two slow ones in a row, it gives
// the place to a new goroutine once the current item's outputs are out.
func (h *fuseHandle[In, Out]) ownNext() (item[Out], bool) {
	if h.own.idle() {
		h.own.timeNext = h.calls < 2 || h.calls%16 == 0
		h.own.lastCall = 0
		h.calls++
	}
	it, ok := h.own.next()
	if d := h.own.lastCall; d > 0 {
		if d > slowCall {
			h.slowCalls++
		} else {
			h.slowCalls = 0
		}
	}
	switch {
	case !ok: // the input ended, or the run stopped
		h.inline = false
	case h.slowCalls >= 2 && h.own.idle() && !h.own.ended:
		h.inline = false
		h.fr.spawn(h.own.in)
	}
	return it, ok
}

// ended reports whether the stage has nothing more for this handle: its pipe
// has ended and it has no place to claim.
func (h *fuseHandle[In, Out]) ended() bool {
	return h.own != nil || h.fr.batons.Load() == 0
}

func (h *fuseHandle[In, Out]) pull() (item[Out], int, bool) {
	for {
		h.claim()
		if h.ownTurn() {
			if it, ok := h.ownNext(); ok {
				return it, h.fr.index(), true
			}
		}
		it, _, ok := h.fr.out.pull()
		switch {
		case !ok:
			if h.ended() {
				return it, 0, false
			}
		case !it.is(baton): // a baton only woke us: claim looks at the count
			return it, h.fr.index(), true
		}
	}
}

// pullAll serves the sink: what is queued, or else an output of its own.
func (h *fuseHandle[In, Out]) pullAll(dst []item[Out]) ([]item[Out], bool) {
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
			if it, ok := h.ownNext(); ok {
				return append(dst, it), true
			}
		}
		n := len(dst)
		var ok bool
		dst, _, ok = h.fr.out.pullBatch(dst)
		switch {
		case !ok:
			if h.ended() {
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
