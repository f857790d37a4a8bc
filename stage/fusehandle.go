package stage

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// fuseHandle is how one goroutine of a consumer pulls from a fused stage
// (see fuseRun): through its own worker (own) while calls are cheap, taking
// first what the stage's goroutines have queued, if it has any.
type fuseHandle[In, Out any] struct {
	fr        *fuseRun[In, Out]
	own       *fused[In, Out]
	calls     int // calls through own, for sampling their duration
	slowCalls int // timed calls in a row that were slow
	firstCall time.Duration
	handed    bool // own's place went to a goroutine
}

// inline reports whether the handle should call the function itself now:
// nothing is queued and its own worker is still its own.
func (h *fuseHandle[In, Out]) inline() bool {
	if h.handed || h.own.ended && h.own.idle() {
		return false
	}
	out := h.fr.out.Load()
	return out == nil || out.ready.Load() == 0 || !h.own.idle()
}

// ownNext takes the next output of the handle's own worker. It times the
// first two calls of the function and one in 16 after that; after two slow
// ones in a row, it hands the worker's place to a goroutine once the
// current item's outputs are out.
func (h *fuseHandle[In, Out]) ownNext() (item[Out], bool) {
	if h.own.idle() {
		h.own.timeNext = h.calls < 2 || h.calls%16 == 0
		h.own.lastCall = 0
		h.calls++
	}
	it, ok := h.own.next()
	if h.own.lastCall > 0 {
		if h.calls == 1 {
			h.firstCall = h.own.lastCall
		}
		if h.own.lastCall > slowCall {
			h.slowCalls++
		} else {
			h.slowCalls = 0
		}
		h.own.lastCall = 0
	}
	// Two slow timed calls in a row, so that one call that merely lost its
	// processor for a while (the timer measures wall time) does not.
	if (h.slowCalls >= 2 || h.calls == 1 && h.firstCall > verySlowCall) && h.own.idle() && !h.own.ended {
		h.handed = true
		h.fr.spawn(h.own.in)
	}
	return it, ok
}

func (h *fuseHandle[In, Out]) pull() (item[Out], int, bool) {
	if h.inline() {
		if it, ok := h.ownNext(); ok {
			return it, h.fr.index(), true
		}
	}
	out := h.fr.out.Load()
	if out == nil {
		return item[Out]{}, 0, false
	}
	it, _, ok := out.pull()
	if !ok {
		return it, 0, false
	}
	return it, h.fr.index(), true
}

// pullAll serves the sink: what is queued, or else an output of its own.
func (h *fuseHandle[In, Out]) pullAll(dst []item[Out]) ([]item[Out], bool) {
	out := h.fr.out.Load()
	if h.inline() {
		// The sink has consumed its previous batch: its tokens go back.
		if out != nil && out.releaseHeld() {
			// A producer woke up on this processor, where it would wait
			// behind the call we are about to make; let it go first, so
			// that the scheduler moves one of us to the other processor.
			runtime.Gosched()
		}
		if it, ok := h.ownNext(); ok {
			return append(dst, it), true
		}
		out = h.fr.out.Load()
	}
	if out == nil {
		return dst, false
	}
	return out.pullAll(dst)
}

// serialHandle is a Workers(1) fusable stage shared by every goroutine of
// its consumer: they take turns calling the function under mu (the
// sequential path), which also keeps the outputs' indexes in order. After a
// slow call, the stage's one worker becomes a goroutine and every pull takes
// from its pipe.
type serialHandle[In, Out any] struct {
	h      fuseHandle[In, Out]
	mu     sync.Mutex
	handed atomic.Bool
	offset int // outputs handed out before the hand-over
}

func (s *serialHandle[In, Out]) pull() (item[Out], int, bool) {
	if !s.handed.Load() {
		s.mu.Lock()
		if !s.h.handed {
			it, ok := s.h.ownNext()
			idx := 0
			if ok {
				idx = s.h.fr.index()
			}
			if s.h.handed {
				s.offset = int(s.h.fr.count.Load())
				s.handed.Store(true)
			}
			s.mu.Unlock()
			return it, idx, ok
		}
		s.mu.Unlock()
	}
	it, idx, ok := s.h.fr.out.Load().pull()
	return it, s.offset + idx, ok
}
