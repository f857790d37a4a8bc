// Package runcheck checks, in tests, that a sink returned only when every
// goroutine of its run had exited: it compares the goroutines alive before
// and after, by id (ids are never reused).
package runcheck

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Watchdog is how long Run waits for run before it calls it hung: a hang
// detector, never a duration any verdict depends on.
const Watchdog = 30 * time.Second

// Goroutines returns the id of the calling goroutine and the stacks of
// every goroutine, by id. Goroutine ids are never reused, so a goroutine
// that is in a later snapshot and not in an earlier one started in between.
func Goroutines() (int64, map[int64]string) {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var cur int64 = -1
	all := map[int64]string{}
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		var id int64
		if _, err := fmt.Sscanf(g, "goroutine %d ", &id); err != nil {
			continue
		}
		if cur < 0 {
			cur = id // runtime.Stack puts the calling goroutine first
		}
		all[id] = g
	}
	return cur, all
}

// onItsWayOut reports whether a goroutine may be on its way out: it is not
// parked (runnable or running). A goroutine that has done its deferred
// wg.Done() and only has its return left looks like that: the sink's wait
// has returned, the goroutine has not quite ended. LeakedSince gives such
// a goroutine a grace of many yields of the processor to end; a parked one
// is a leak at once.
func onItsWayOut(st string) bool {
	head, _, _ := strings.Cut(st, "\n")
	return strings.Contains(head, "[runnable]") || strings.Contains(head, "[running]")
}

// ended reports whether a goroutine has returned from its function and
// only the runtime's exit remains (runtime.goexit frames alone).
func ended(st string) bool {
	lines := strings.Split(st, "\n")
	for i := 1; i < len(lines); i += 2 {
		fn := lines[i]
		if strings.HasPrefix(fn, "created by ") || fn == "" {
			break
		}
		if !strings.HasPrefix(fn, "runtime.goexit") {
			return false
		}
	}
	return onItsWayOut(st)
}

// Exited counts goroutines that Alive (so Run and LeakedSince) found on
// their way out (see onItsWayOut), and that exited soon after.
var Exited atomic.Int32

// LeakedSince returns the stacks of the goroutines alive now that were
// not in before, but the caller's (see Alive for the grace a goroutine that
// is not parked is given).
func LeakedSince(before map[int64]string) []string {
	return Alive(func(id int64, _ string) bool {
		_, old := before[id]
		return !old
	})
}

// Alive returns the stacks of the goroutines, but the caller's and those
// that only have the runtime's exit left, for which keep(id, stack) is
// true. A parked goroutine is returned at once; one that is not parked
// (onItsWayOut: it may have done its deferred wg.Done() or close and only
// have its return left) is returned if it is still there after the caller
// yielded the processor many times, or if it is seen parked meanwhile. So
// a check "none of these is left when the sink returned" is strict for
// every goroutine that waits for anything.
func Alive(keep func(id int64, stack string) bool) []string {
	cur, after := Goroutines()
	var leaked []string
	exiting := map[int64]string{}
	for id, st := range after {
		if id != cur && keep(id, st) && !ended(st) {
			if onItsWayOut(st) {
				exiting[id] = st
			} else {
				leaked = append(leaked, st)
			}
		}
	}
	for i := 0; i < 20000 && len(exiting) > 0; i++ {
		runtime.Gosched()
		if i%100 == 99 {
			_, now := Goroutines()
			for id := range exiting {
				st, alive := now[id]
				switch {
				case !alive || ended(st):
					delete(exiting, id)
					Exited.Add(1)
				case !onItsWayOut(st):
					delete(exiting, id)
					leaked = append(leaked, st)
				}
			}
		}
	}
	for _, st := range exiting {
		leaked = append(leaked, st)
	}
	return leaked
}

// Run runs run in a goroutine of its own and fails the test if a
// goroutine that started during run is still alive when run returns: run
// calls a sink, and a sink returns only when every goroutine of its run has
// exited. The snapshot is taken right after run returns (see
// LeakedSince for the grace given to a goroutine that is not parked:
// one that only has its return left). A hang (Watchdog) fails the test; no duration is asserted.
func Run(t testing.TB, label string, run func()) {
	t.Helper()
	var leaked []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, before := Goroutines()
		run()
		leaked = LeakedSince(before)
	}()
	select {
	case <-done:
	case <-time.After(Watchdog):
		_, all := Goroutines()
		var sts []string
		for _, st := range all {
			sts = append(sts, st)
		}
		t.Fatalf("%s: hung; goroutines:\n%s", label, strings.Join(sts, "\n\n"))
	}
	if len(leaked) > 0 {
		t.Errorf("%s: %d goroutine(s) started by the run still alive when the sink returned:\n%s",
			label, len(leaked), strings.Join(leaked, "\n\n"))
	}
}

// NoHang runs f in a goroutine and fails the test if f has not returned
// after the Watchdog: a hang detector, never a duration a verdict depends
// on. (After a hang, f's goroutine is left behind; the test has failed.)
func NoHang(t testing.TB, label string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(Watchdog):
		t.Fatalf("%s: hung", label)
	}
}
