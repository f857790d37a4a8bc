package runcheck

import (
	"sync/atomic"
	"testing"
	"time"
)

// Stalls records, from a goroutine of its own that wakes every 5 ms, the
// longest time it was kept from running: how long the machine stalled the
// process (and an in-process server with it). A test whose scenario rests
// on a server's timer (an AckWait, a dead letter's bound) uses it only to
// excuse an outcome that such a stall explains, and then checks nothing and
// says so; no verdict depends on how long anything took, and a run on a
// quiet machine checks everything.
type Stalls struct {
	longestNs atomic.Int64
}

// WatchStalls starts a Stalls watch; its goroutine exits when the test
// (with its cleanups before this one) ends.
func WatchStalls(t testing.TB) *Stalls {
	w := &Stalls{}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			now := time.Now()
			w.note(now.Sub(last))
			last = now
		}
	}()
	t.Cleanup(func() { close(done); <-exited })
	return w
}

// note records a gap, keeping the longest.
func (w *Stalls) note(gap time.Duration) {
	for {
		old := w.longestNs.Load()
		if int64(gap) <= old || w.longestNs.CompareAndSwap(old, int64(gap)) {
			return
		}
	}
}

// Longest is the longest stall seen so far.
func (w *Stalls) Longest() time.Duration { return time.Duration(w.longestNs.Load()) }

// Excuse reports whether a stall seen so far could have let a timer with
// margin left before it fired do so ahead of the event a test ordered
// before it: a stall of at least half the margin (half, because the watch
// is one goroutine and the stalled one may be another).
func (w *Stalls) Excuse(margin time.Duration) bool { return w.Longest() >= margin/2 }
