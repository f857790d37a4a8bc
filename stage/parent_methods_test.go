package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The package doc: if the caller's ctx is a context type of the caller's
// whose methods panic when the run calls them, the sink raises that panic
// again, once the run is over. These tests arm such a context after the
// run has started, at each place the run calls the caller's context (or
// Until's stop context), and check that the sink raises the context's own
// panic value (not an internal panic of the library), that the run's
// source was stopped, and that nothing hangs or crashes (each runs in a
// child process).

// hostileValue is what a hostile context's methods panic with.
const hostileValue = "hostile context"

// hostileCtx embeds a standard context; once armed, its Err or its Value
// panics (hookPanics: only when context.AfterFunc asks it, as it registers
// a hook).
type hostileCtx struct {
	context.Context
	errPanics   atomic.Bool
	valuePanics atomic.Bool
	hookPanics  atomic.Bool
	hookGoexits bool         // hookPanics: runtime.Goexit instead of a panic
	hookAsked   atomic.Int32 // Value asked from within context.AfterFunc
}

func (c *hostileCtx) Err() error {
	if c.errPanics.Load() {
		panic(hostileValue)
	}
	return c.Context.Err()
}

func (c *hostileCtx) Value(key any) any {
	if c.valuePanics.Load() {
		panic(hostileValue)
	}
	if c.hookPanics.Load() && calledFrom("context.AfterFunc") {
		c.hookAsked.Add(1)
		if c.hookGoexits {
			runtime.Goexit()
		}
		panic(hostileValue)
	}
	return c.Context.Value(key)
}

// calledFrom reports whether fn is on the caller's stack.
func calledFrom(fn string) bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if f.Function == fn {
			return true
		}
		if !more {
			return false
		}
	}
}

// countingSource is a waiting source of 1, 2, 3, ...; arm runs as it is
// opened (after the run's context was made), and stopped is set by its
// stop.
func countingSource(arm func(), stopped *atomic.Bool) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		arm()
		n := 0
		return func(context.Context) (int, error) { n++; return n, nil }, func() { stopped.Store(true) }
	})
}

// raisesHostile runs f and fails t unless f panicked with hostileValue.
func raisesHostile(t *testing.T, f func()) {
	t.Helper()
	var rec any
	func() {
		defer func() { rec = recover() }()
		f()
	}()
	if rec != hostileValue {
		t.Fatalf("the sink's panic is %v, want the context's own %q", rec, hostileValue)
	}
}

// A goroutine of the run that sleeps makes the run hook its context, so
// that the parent's cancellation wakes it. The hook is made with the
// waker's lock held: it must ask nothing of the caller's context there (a
// panic in its Value hung the run; a Goexit would leave the lock held).
// The hook watches the run's own context; a caller's context whose Value
// panics, or calls Goexit, when context.AfterFunc asks it is never asked.
func TestParentNotAskedWhenHooked(t *testing.T) {
	for _, workers := range []int{1, 2} {
		for _, goexit := range []bool{false, true} {
			name := fmt.Sprintf("workers=%d/goexit=%v", workers, goexit)
			t.Run(name, func(t *testing.T) {
				runcheckInChild(t, func(t *testing.T) {
					inner, cancel := context.WithCancel(context.Background())
					defer cancel()
					p := &hostileCtx{Context: inner}
					p.hookPanics.Store(true)
					p.hookGoexits = goexit
					var stopped atomic.Bool
					started := make(chan struct{}, workers)
					in := stage.Map(countingSource(func() {}, &stopped), func(ctx context.Context, v int) (int, error) {
						started <- struct{}{}
						<-ctx.Done() // the sink sleeps for an output
						return 0, ctx.Err()
					}, stage.Workers(workers), stage.Buffer(1))
					go func() {
						<-started
						cancel()
					}()
					err := stage.Run(p, in, func(context.Context, int, error) error { return nil })
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("stage.Run = %v, want context.Canceled", err)
					}
					if n := p.hookAsked.Load(); n != 0 {
						t.Fatalf("context.AfterFunc asked the caller's context's Value %d times", n)
					}
					if !stopped.Load() {
						t.Fatal("the source was not stopped")
					}
				})
			})
		}
	}
}

// A failure, and a Goexit in a stage's function, end the run without
// asking the caller's context's Err (whether the parent ended first is read
// from the run's own context): the sink returns the failure, or ErrGoexit,
// and a panicking Err is never met.
func TestParentErrNotAskedOnFailure(t *testing.T) {
	errBoom := errors.New("boom")
	fail := func(context.Context, int) (int, error) { return 0, errBoom }
	goexit := func(context.Context, int) (int, error) { runtime.Goexit(); return 0, nil }
	for _, c := range []struct {
		name    string
		workers int
		f       func(context.Context, int) (int, error)
		want    error
	}{
		{"failure/workers=1", 1, fail, errBoom},
		{"failure/workers=2", 2, fail, errBoom},
		{"goexit/workers=2", 2, goexit, stage.ErrGoexit},
	} {
		t.Run(c.name, func(t *testing.T) {
			runcheckInChild(t, func(t *testing.T) {
				inner, cancel := context.WithCancel(context.Background())
				defer cancel()
				p := &hostileCtx{Context: inner}
				var stopped atomic.Bool
				src := countingSource(func() { p.errPanics.Store(true) }, &stopped)
				in := stage.Map(src, c.f, stage.Workers(c.workers))
				if err := stage.Run(p, in, func(context.Context, int, error) error { return nil }); !errors.Is(err, c.want) {
					t.Fatalf("stage.Run = %v, want %v", err, c.want)
				}
				if !stopped.Load() {
					t.Fatal("the source was not stopped")
				}
			})
		})
	}
}

// Until hooks its stop context as the pipeline is opened.
func TestUntilStopValuePanics(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		inner, cancel := context.WithCancel(context.Background())
		defer cancel()
		stop := &hostileCtx{Context: inner}
		stop.valuePanics.Store(true)
		var stopped atomic.Bool
		in := stage.Map(stage.Until(countingSource(func() {}, &stopped), stop), double, stage.Workers(2))
		raisesHostile(t, func() {
			_ = stage.Run(context.Background(), in, func(context.Context, int, error) error { return stage.ErrStop })
		})
	})
}

// A stop context whose Value starts to panic while the run goes on (here
// from the sink's first item) is asked again when the run ends and lets go
// of it: the package doc's Leaks section, "the run is cancelled and the
// sink raises that panic again once the run is over, in place of its
// result", holds for that last call too (a mutant that dropped the panic
// met there returned the sink's nil).
func TestUntilStopValuePanicsAtTheRunsEnd(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			runcheckInChild(t, func(t *testing.T) {
				inner, cancel := context.WithCancel(context.Background())
				defer cancel()
				stop := &hostileCtx{Context: inner}
				in := stage.Map(stage.Until(source.Slice(ints(3)), stop), double, stage.Workers(workers))
				raisesHostile(t, func() {
					_ = stage.Run(context.Background(), in, func(context.Context, int, error) error {
						stop.valuePanics.Store(true)
						return nil
					})
				})
			})
		})
	}
}

// A caller's context whose Value panics from the start panics where the
// run's context is made, before anything of the run exists.
func TestParentValuePanicsFromTheStart(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		inner, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := &hostileCtx{Context: inner}
		p.valuePanics.Store(true)
		var opened atomic.Bool
		src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			opened.Store(true)
			return func(context.Context) (int, error) { return 0, errEOF }, func() {}
		})
		raisesHostile(t, func() {
			_ = stage.Run(p, src, func(context.Context, int, error) error { return nil })
		})
		if opened.Load() {
			t.Fatal("the source was opened")
		}
	})
}

// keyPanicCtx is context.Background whose Value panics for keyPanics{}.
type keyPanicCtx struct{ context.Context }

type keyPanics struct{}

func (c keyPanicCtx) Value(key any) any {
	if key == (keyPanics{}) {
		panic(hostileValue)
	}
	return c.Context.Value(key)
}

// A function of the pipeline that calls the caller's context's methods
// through its own ctx meets the panic as its own (the Leaks section): the
// item fails with a *PanicError, and the sink returns it (FailFast).
func TestParentValuePanicsInAFunction(t *testing.T) {
	in := stage.Map(source.Slice([]int{1, 2}), func(ctx context.Context, v int) (int, error) {
		_ = ctx.Value(keyPanics{})
		return v, nil
	}, stage.Workers(2))
	var err error
	hangGuard(t, func() {
		err = stage.Run(keyPanicCtx{context.Background()}, in, func(context.Context, int, error) error { return nil })
	})
	var pe *stage.PanicError
	if !errors.As(err, &pe) || pe.Value != hostileValue {
		t.Fatalf("stage.Run = %v, want the item's *stage.PanicError with %q", err, hostileValue)
	}
}
