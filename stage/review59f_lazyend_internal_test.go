package stage

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
)

// review59fPausingHandles wraps a stage's input handles: the first new
// handle asked for from goroutine who (once armed) waits for release. That
// is the only call between applier.more's CAS of lazy and fuseRun.spawn's
// addWorker (more takes the new place's input handle there): the pause
// the suspicion needs, forced.
type review59fPausingHandles struct {
	orig    handles[int]
	who     atomic.Int64
	armed   atomic.Bool
	once    sync.Once
	paused  chan struct{}
	release chan struct{}
}

func (w *review59fPausingHandles) newHandle() puller[int] {
	if w.armed.Load() && goid() == w.who.Load() {
		w.once.Do(func() {
			close(w.paused)
			<-w.release
		})
	}
	return w.orig.next()
}

// Suspicion 1 (applier.more / noMore, engine_worker.go): in a fused stage
// of more places than start at once, a consumer's handle that holds a place
// takes one of the places not started (more's CAS of lazy) and is delayed
// before the new goroutine's writer is added (spawn's addWorker), while the
// stage's goroutines meet the end of the input, give up the places not
// started (noMore closes the stand-in writer) and exit: the queue ends, and
// the consumer's other handle reports the end while the delayed handle
// still holds an item of its own.
//
// The order is forced: the handle h1 pauses in more (in the input's
// newHandle, called between the CAS and addWorker); the other handle h2
// then reads to the end; only then does h1 go on. The promises at stake:
// the Workers doc ("at most n"), engine.go (a stream end "proves the run
// complete" when nothing cut it short) and fuseRun's ("no input handle (and
// what it holds) is left behind"): every item reaches one of the two
// consumers exactly once, the late goroutine ends, the run finishes, and
// no goroutine is left. It passes: noMore runs only when the shared input
// has ended (or the run is over), so the goroutine that starts late finds
// the input ended, and the item h1 holds goes out through h1 itself; h2's
// early end loses nothing (it had nothing more to get).
func TestReview59fLazyPlaceStartedAfterTheQueueEnded(t *testing.T) {
	const items, workers = 1500, eagerWorkers + 100_000
	for attempt := 0; ; attempt++ {
		if attempt == 20 {
			t.Skip("h1 never held a place while places were left to start: the interleaving was not reached")
		}
		if review59fLazyEndOnce(t, items, workers) {
			return
		}
	}
}

// review59fLazyEndOnce runs the scenario once; it reports whether the
// interleaving was reached.
func review59fLazyEndOnce(t *testing.T, items, workers int) bool {
	t.Helper()
	r := newRun(context.Background())
	n := 0
	var srcMu sync.Mutex
	src := NeverWaits(Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(context.Context) (int, error) {
			srcMu.Lock()
			defer srcMu.Unlock()
			if n == items {
				return 0, io.EOF
			}
			n++
			return n - 1, nil
		}, nil
	}))
	s := Map(src, func(_ context.Context, v int) (int, error) { return v, nil }, Workers(workers))
	hs := s.openFor(r, 2)
	fr, ok := hs.fused.(*fuseRun[int, int])
	if !ok {
		r.finish()
		t.Fatal("a Map over a NeverWaits source opened for 2 consumers did not fuse")
	}
	w := &review59fPausingHandles{orig: fr.handles, paused: make(chan struct{}), release: make(chan struct{})}
	fr.handles = handles[int]{fused: w}
	fr.app.handles = fr.handles
	h1 := hs.next().(*fuseHandle[int, int])
	h2 := hs.next().(*fuseHandle[int, int])
	r.start()

	var got1, got2 []int
	done1, done2 := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done1)
		w.who.Store(goid())
		for {
			it, _, ok := h1.pull()
			if !ok {
				return
			}
			got1 = append(got1, it.v)
			// From now on h1's own pulls are past startIdle: arm the pause
			// for the first place it starts (more, from ownNext).
			w.armed.Store(true)
		}
	}()
	go func() {
		defer close(done2)
		for {
			it, _, ok := h2.pull()
			if !ok {
				return
			}
			got2 = append(got2, it.v)
		}
	}()
	watchdog := time.After(runcheck.Watchdog) // a hang watchdog only
	reached := false
	select {
	case <-w.paused:
		reached = true
	case <-done1:
	case <-watchdog:
		t.Fatal("hung before the pause")
	}
	sawEarlyEnd := false
	if reached {
		// h1 paused inside more, its item in hand. h2 reads on; the
		// stage's goroutines meet the input's end and give up the places.
		select {
		case <-done2:
			sawEarlyEnd = true
		case <-watchdog:
			t.Fatal("the other handle hung while h1 paused in more")
		}
		close(w.release)
	}
	select {
	case <-done1:
	case <-watchdog:
		t.Fatal("h1 hung after the pause")
	}
	select {
	case <-done2:
	case <-watchdog:
		t.Fatal("h2 hung")
	}
	lazyLeft := fr.app.lazy.Load()
	r.finish()
	if !reached {
		return false
	}
	t.Logf("h2 saw the end while h1 paused in more: %v; lazy left: %d", sawEarlyEnd, lazyLeft)
	seen := make([]int, items)
	for _, v := range append(got1, got2...) {
		seen[v]++
	}
	for v, c := range seen {
		if c != 1 {
			t.Fatalf("item %d arrived %d times (h1 got %d, h2 got %d items)", v, c, len(got1), len(got2))
		}
	}
	return true
}
