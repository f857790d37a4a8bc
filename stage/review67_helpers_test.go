package stage_test

// Helpers of the review67 black-box tests of the stage package's
// combinators and per-stage options. Every name here has the r67 prefix.

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r67Ints returns 0, 1, ..., n-1.
func r67Ints(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

// r67Err is a test's own error value.
const r67Err = ctxtest.Error("r67: boom")

// r67Recover calls f and returns the value it panicked with, if any.
func r67Recover(f func()) (v any, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			v, panicked = r, true
		}
	}()
	f()
	return nil, false
}

// r67MustPanicSluice fails t unless f panics with a value whose text
// starts with "sluice:".
func r67MustPanicSluice(t *testing.T, label string, f func()) {
	t.Helper()
	v, panicked := r67Recover(f)
	if !panicked {
		t.Errorf("%s: did not panic", label)
		return
	}
	msg := fmt.Sprint(v)
	if e, ok := v.(error); ok {
		msg = e.Error()
	}
	if !strings.HasPrefix(msg, "sluice:") {
		t.Errorf("%s: panic message %q does not start with \"sluice:\"", label, msg)
	}
}

// r67MustNotPanic fails t if f panics.
func r67MustNotPanic(t *testing.T, label string, f func()) {
	t.Helper()
	if v, panicked := r67Recover(f); panicked {
		t.Errorf("%s: panicked: %v", label, v)
	}
}

// r67Run runs s with stage.Run and returns the values, the forwarded
// errors (in arrival order) and the run's error.
func r67Run[T any](ctx context.Context, s stage.Stream[T]) (vals []T, fwd []error, err error) {
	err = stage.Run(ctx, s, func(_ context.Context, v T, e error) error {
		if e != nil {
			fwd = append(fwd, e)
			return nil
		}
		vals = append(vals, v)
		return nil
	})
	return vals, fwd, err
}

// r67Guard runs f under runcheck.Run: a hang fails the test, and so does a
// goroutine started during f that is alive once f returned.
func r67Guard(t *testing.T, label string, f func()) {
	t.Helper()
	runcheck.Run(t, label, f)
}

// r67Counter counts calls.
type r67Counter struct{ n atomic.Int64 }

func (c *r67Counter) inc() int64 { return c.n.Add(1) }
func (c *r67Counter) get() int64 { return c.n.Load() }

// r67Src returns a waiting source of the items 0..n-1 (n < 0: without
// end) built with stage.Source; nexts counts its calls of next that
// produced an item.
func r67Src(n int, nexts *r67Counter) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
			if n >= 0 && i >= n {
				return 0, io.EOF
			}
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			v := i
			i++
			if nexts != nil {
				nexts.inc()
			}
			return v, nil
		}, nil
	})
}

// r67Id is the identity stage function.
func r67Id(_ context.Context, v int) (int, error) { return v, nil }

// r67SameInts reports whether got and want hold the same ints, as
// multisets.
func r67SameInts(got, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	m := map[int]int{}
	for _, v := range want {
		m[v]++
	}
	for _, v := range got {
		m[v]--
		if m[v] < 0 {
			return false
		}
	}
	return true
}

// r67Equal reports whether got and want are equal, element by element.
func r67Equal[T comparable](got, want []T) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// r67SinkGoroutine runs run in a goroutine of its own and reports whether
// it returned (with its error) or was ended by runtime.Goexit (a user
// function that ran on the sink's goroutine and called Goexit ends it, as
// ErrGoexit's doc says). A hang fails the test (runcheck.Watchdog).
func r67SinkGoroutine(t *testing.T, run func() error) (err error, returned bool) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		err = run()
		returned = true
	}()
	select {
	case <-done:
	case <-time.After(runcheck.Watchdog):
		t.Fatalf("the sink hung")
	}
	return err, returned
}

// r67NoLeakSince fails t if a goroutine started since before is alive.
func r67NoLeakSince(t *testing.T, label string, before map[int64]string) {
	t.Helper()
	if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
		t.Errorf("%s: %d goroutine(s) left:\n%s", label, len(leaked), strings.Join(leaked, "\n\n"))
	}
}

// r67Goexit ends the calling goroutine as t.FailNow does.
func r67Goexit() { runtime.Goexit() }

// r67Window is how long a bound test gives the pipeline to overshoot its
// bound once it is blocked: a detector's window, never a verdict on speed.
// A pipeline that keeps its bound passes however long it takes; one that
// breaks it is caught if it does so within the window (a correct one is
// never failed).
const r67Window = 150 * time.Millisecond

// r67Settle waits until c stops growing for r67Window (or the watchdog):
// for the bound tests, which then read c. See r67Window.
func r67Settle(c *r67Counter) int64 {
	deadline := time.Now().Add(runcheck.Watchdog)
	last := c.get()
	for time.Now().Before(deadline) {
		time.Sleep(r67Window)
		now := c.get()
		if now == last {
			return now
		}
		last = now
	}
	return last
}

// r67Gate is a one-shot gate: Open closes it once.
type r67Gate struct {
	once sync.Once
	ch   chan struct{}
}

func r67NewGate() *r67Gate            { return &r67Gate{ch: make(chan struct{})} }
func (g *r67Gate) Open()              { g.once.Do(func() { close(g.ch) }) }
func (g *r67Gate) C() <-chan struct{} { return g.ch }

// r67CtxKind names the caller's context kinds the cancellation tests run
// under: a standard one and a context type of the caller's own.
var r67CtxKinds = []string{"std", "own"}

// r67Parent returns a caller's ctx of the kind and its cancel.
var r67Parent = ctxtest.New
