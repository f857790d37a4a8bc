package stage

import (
	"context"
	"testing"
	"time"
)

// The Workers doc and README ("Bounded concurrency"): "Workers(n) runs at
// most n calls at once, and with enough input and a consumer that keeps up
// exactly n"; a fused stage's doc (engine_fuse.go): "a handle that still
// wants a place claims any baton left before it reports the end, so that
// no input handle (and what it holds) is left behind" — the end is
// reported only when "its queue has ended and it has no place to claim".
//
// fuseHandle.pull looks at the queue without its lock (ownTurn reads
// out.ready) and then pulls from it. Once every place went to the
// consumer's handles (every goroutine of the stage retired), the queue has
// no writer left: a handle that holds a place, saw an item queued (a
// baton, or an output queued before the places moved) and lost it to
// another handle of the consumer before it took the lock finds the queue
// ended, and done() reports the end because the handle holds a place
// (h.in != nil), although that place's input has items left. The
// consumer's goroutine (a worker of the stage downstream) stops: from then
// on the downstream stage runs fewer than n calls, and a barrier of n
// calls there (with the Buffer(1) its doc asks for) hangs. (Seen through
// the public API in review20_fusedend_test.go.)
//
// Here the lost race is set up directly, its order forced: the handle holds
// a place, the only other place is with another handle, and the queue's
// last writer is still open (the stand-in for the places not started, as a
// retiring goroutine's writer is until it exits). The handle has seen one
// item queued (out.ready is 1) that the other handle took before it took
// the lock, so it waits on the queue; then the ready count is right again
// (0) and the last writer goes. The handle must go on with its own place,
// not report the end of a stream whose 10 input items are all left.
func TestReview20FusedHandleWithPlaceLosesQueuedItem(t *testing.T) {
	r := newRun(context.Background())
	defer r.finish()
	s := Map(Indexed(10, func(i int) int { return i }), func(_ context.Context, v int) (int, error) { return v, nil }, Workers(2))
	hs := s.openFor(r, 2)
	fr, ok := hs.fused.(*fuseRun[int, int])
	if !ok {
		t.Fatal("a Map of 2 workers over Indexed opened for 2 consumers did not fuse")
	}
	h1 := hs.next().(*fuseHandle[int, int])
	h2 := hs.next().(*fuseHandle[int, int])
	r.start()
	// Both places are with the consumer's handles (as after both
	// goroutines retired and each handle claimed a baton).
	fr.started.Store(true)
	fr.mu.Lock()
	fr.idle = 0
	fr.mu.Unlock()
	h1.hold(fr.handles.next())
	h2.hold(fr.handles.next())
	fr.wanted.Store(0)
	// h1 saw one item queued, which h2 takes before h1 takes the lock.
	fr.out.ready.Store(1)
	type result struct {
		v  int
		ok bool
	}
	got := make(chan result, 1)
	go func() {
		it, _, ok := h1.pull()
		got <- result{it.v, ok}
	}()
	// h1 waits on the queue (observed under the queue's lock; the
	// deadline is a hang watchdog only).
	deadline := time.Now().Add(30 * time.Second)
	for {
		fr.out.mu.Lock()
		w := fr.out.waiting
		fr.out.mu.Unlock()
		if w == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the handle never waited on the queue")
		}
		time.Sleep(time.Millisecond)
	}
	fr.out.ready.Store(0) // what h2's pull left
	fr.out.closeWriter()  // the last writer of the queue goes
	var res result
	select {
	case res = <-got:
	case <-time.After(30 * time.Second): // hang watchdog only
		t.Fatal("the handle's pull did not return")
	}
	if !res.ok {
		t.Fatal("a handle that holds a place of a fused stage reported the end of its stream with all 10 of its input items left: its consumer goroutine stops, and its place (with whatever its input handle holds) is left behind")
	}
}
