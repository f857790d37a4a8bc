package sink_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
)

// errReview71Boom is the tests' own failure.
var errReview71Boom = errors.New("review71: boom")

// review71Kinds are the kinds of caller's context every cancellation scenario
// runs under.
var review71Kinds = []string{ctxtest.Std, ctxtest.Own, ctxtest.Wrap, ctxtest.Cause}

// review71Ints returns 0, 1, ..., n-1.
func review71Ints(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// review71Gen is a generator for source.Func: 0, 1, ..., n-1 then io.EOF
// (n < 0: endless). It counts its calls, notices overlapping calls, and
// counts the calls that started once stopped was set.
type review71Gen struct {
	n          int
	calls      atomic.Int64
	inflight   atomic.Int32
	overlapped atomic.Bool
	stopped    atomic.Bool
	afterStop  atomic.Int64
}

func (g *review71Gen) next(ctx context.Context) (int, error) {
	if g.stopped.Load() {
		g.afterStop.Add(1)
	}
	if g.inflight.Add(1) != 1 {
		g.overlapped.Store(true)
	}
	defer g.inflight.Add(-1)
	i := int(g.calls.Add(1)) - 1
	if g.n >= 0 && i >= g.n {
		return 0, io.EOF
	}
	return i, nil
}

// review71Run runs f under runcheck.Run (no goroutine of the run may outlive
// the sink; a hang fails the test after the Watchdog).
func review71Run(t *testing.T, label string, f func()) {
	t.Helper()
	runcheck.Run(t, label, f)
}

// review71Wait waits for ch, failing the test after the Watchdog: a hang
// detector, no verdict depends on it.
func review71Wait(t testing.TB, label string, ch <-chan struct{}) bool {
	t.Helper()
	select {
	case <-ch:
		return true
	case <-time.After(runcheck.Watchdog):
		t.Errorf("%s: hung", label)
		return false
	}
}

// review71Distinct reports whether vs holds no value twice.
func review71Distinct(vs []int) bool {
	seen := map[int]bool{}
	for _, v := range vs {
		if seen[v] {
			return false
		}
		seen[v] = true
	}
	return true
}

// review71Ints32 returns 0, 1, ..., n-1 as int32 (4 bytes a value).
func review71Ints32(n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}
