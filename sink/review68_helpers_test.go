package sink_test

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
)

// r68ErrBoom is a test's own item failure.
//
//lint:ignore ST1012 package-level helpers of this review carry the r68 prefix
var r68ErrBoom = errors.New("r68: boom")

// r68Ints returns 0, 1, ..., n-1.
func r68Ints(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// r68FilledChan returns a channel of capacity n holding 0, 1, ..., n-1,
// left open.
func r68FilledChan(n int) chan int {
	ch := make(chan int, n)
	for i := range n {
		ch <- i
	}
	return ch
}

// r68Gauge counts calls in progress and remembers the most at once.
type r68Gauge struct {
	cur, max atomic.Int64
}

func (g *r68Gauge) enter() int64 {
	n := g.cur.Add(1)
	for {
		m := g.max.Load()
		if n <= m || g.max.CompareAndSwap(m, n) {
			return n
		}
	}
}

func (g *r68Gauge) leave() { g.cur.Add(-1) }

// r68WaitFor waits until cond holds; the Watchdog only detects a hang, no
// verdict depends on how long it takes.
func r68WaitFor(t testing.TB, label string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(runcheck.Watchdog)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: hung waiting", label)
		}
		runtime.Gosched()
		time.Sleep(100 * time.Microsecond)
	}
}

// r68Settle gives the run's goroutines many chances to do what they must
// not do (take one item too many, deliver one more): used only before a
// check that something did NOT happen, so that speed can only hide a bug,
// never invent one.
func r68Settle() {
	for range 200 {
		runtime.Gosched()
	}
	time.Sleep(20 * time.Millisecond)
	for range 200 {
		runtime.Gosched()
	}
}

// r68Recorder is a concurrency-safe list of events.
type r68Recorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *r68Recorder) add(e string) {
	r.mu.Lock()
	r.evs = append(r.evs, e)
	r.mu.Unlock()
}

func (r *r68Recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.evs...)
}

// r68Balance counts entries into and exits from user functions: when a sink
// returns, no user function of the run may be running.
type r68Balance struct{ in, out atomic.Int64 }

func (b *r68Balance) enter() func() {
	b.in.Add(1)
	return func() { b.out.Add(1) }
}

func (b *r68Balance) check(t testing.TB, label string) {
	t.Helper()
	if in, out := b.in.Load(), b.out.Load(); in != out {
		t.Errorf("%s: %d user calls entered, %d returned when the sink returned: a user function was still running", label, in, out)
	}
}

// r68Start runs run (which calls a sink) in a goroutine of its own and
// returns a wait that fails t if run hung (Watchdog) or if a goroutine
// started during run was still alive when it returned (as runcheck.Run
// does, but leaving the test goroutine free to drive the run meanwhile).
func r68Start(run func()) (wait func(t testing.TB, label string)) {
	done := make(chan struct{})
	var leaked []string
	go func() {
		defer close(done)
		_, before := runcheck.Goroutines()
		run()
		leaked = runcheck.LeakedSince(before)
	}()
	return func(t testing.TB, label string) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(runcheck.Watchdog):
			t.Fatalf("%s: hung", label)
		}
		if len(leaked) > 0 {
			t.Errorf("%s: %d goroutine(s) started by the run still alive when the sink returned:\n%s",
				label, len(leaked), strings.Join(leaked, "\n\n"))
		}
	}
}
