package stage_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// r40Watchdog is a hang detector only; no verdict depends on it.
const r40Watchdog = 30 * time.Second

var errR40 = errors.New("review40: trigger")

// r40Wait waits for ch to be closed (or to deliver), failing the test on a hang.
func r40Wait[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(r40Watchdog):
		t.Fatalf("hang: %s", what)
	}
}

// r40Go runs f in a goroutine and returns a channel closed when it returns.
func r40Go(f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	return done
}

// r40Settle polls n until it stops growing (25 polls in a row unchanged) or
// exceeds limit, and returns it. The polling is a detector, not a verdict: a
// count over a bound can only be seen more often by waiting longer.
func r40Settle(n *atomic.Int64, limit int64) int64 {
	last, stable := n.Load(), 0
	for stable < 25 && last <= limit {
		time.Sleep(5 * time.Millisecond)
		if v := n.Load(); v != last {
			last, stable = v, 0
		} else {
			stable++
		}
	}
	return last
}
