package stage_test

// Review 45: the promise of commit 346d759 (stage/doc.go, Leaks): "If the
// caller's ctx, or the stop context of an Until, is a context type of the
// caller's whose methods panic when the run calls them, the run is
// cancelled and the sink raises that panic again once the run is over."
// These tests attack call sites of those methods that the commit's guards
// (run_userctx.go) do not cover. Each runs in a child process: a panic
// that escapes the guards crashes the process.

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r45Value is what the contexts of these tests panic with.
const r45Value = "r45 hostile context"

// r45OwnDone is a caller's context type with a Done channel of its own (as
// a deadline or a request context of a framework may be: see
// r41DeadlineCtx), not a standard cancellable context that the context
// package finds through Value. Once armed, its Err and Value panic.
type r45OwnDone struct {
	context.Context // context.Background: Value, Deadline
	done            chan struct{}
	once            sync.Once
	armed           atomic.Bool
	calls           atomic.Int64 // Err and Value calls once armed
}

func newR45OwnDone() *r45OwnDone {
	return &r45OwnDone{Context: context.Background(), done: make(chan struct{})}
}

func (c *r45OwnDone) Done() <-chan struct{} { return c.done }

func (c *r45OwnDone) Err() error {
	if c.armed.Load() {
		c.calls.Add(1)
		panic(r45Value)
	}
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

func (c *r45OwnDone) Value(key any) any {
	if c.armed.Load() {
		c.calls.Add(1)
		panic(r45Value)
	}
	return c.Context.Value(key)
}

// cancel arms the panics, then ends the context.
func (c *r45OwnDone) cancel() {
	c.armed.Store(true)
	c.once.Do(func() { close(c.done) })
}

// r45Recover runs f and returns its panic value (nil if none) and error.
func r45Recover(f func() error) (rec any, err error) {
	defer func() { rec = recover() }()
	return nil, f()
}

// r45Blocked is a pipeline of a waiting source whose calls wait for their
// context to end; started is closed as the first call starts, stopped is
// set by the source's stop.
func r45Blocked(started chan struct{}, stopped *atomic.Bool) stage.Stream[int] {
	var once sync.Once
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		n := 0
		return func(context.Context) (int, error) { n++; return n, nil }, func() { stopped.Store(true) }
	})
	return stage.Map(src, func(ctx context.Context, v int) (int, error) {
		once.Do(func() { close(started) })
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Workers(2), stage.Buffer(1))
}

// TestReview45OwnDoneParentPanicsWhenCancelled: the caller's ctx has a Done
// channel of its own, and its Err and Value panic once it is cancelled (as
// TestParentValuePanicsInHook arms them, for a context that embeds a
// standard one). The run's context is made from it with
// context.WithCancelCause, and the parent's hook with context.AfterFunc:
// for such a parent the context package watches it in goroutines it starts
// for the run, which, once it is done, call its Err and Value (Cause)
// unguarded. The promise: the sink raises the context's own panic (or
// returns the cancellation), the source is stopped, the process survives.
func TestReview45OwnDoneParentPanicsWhenCancelled(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		p := newR45OwnDone()
		started := make(chan struct{})
		var stopped atomic.Bool
		in := r45Blocked(started, &stopped)
		go func() {
			<-started
			p.cancel()
		}()
		rec, err := r45Recover(func() error {
			return stage.Run(p, in, func(context.Context, int, error) error { return nil })
		})
		if rec != nil && rec != r45Value {
			t.Fatalf("the sink's panic is %v, want none or the context's own %q", rec, r45Value)
		}
		if rec == nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("stage.Run = %v, want context.Canceled", err)
		}
		if !stopped.Load() {
			t.Fatal("the source was not stopped")
		}
	})
}

// TestReview45OwnDoneUntilStopPanicsWhenDone: the same for Until's stop
// context, whose hook (context.AfterFunc, run_userctx.go's hook) the
// context package watches in a goroutine of its own that calls the stop's
// Err and Value once it is done.
func TestReview45OwnDoneUntilStopPanicsWhenDone(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		stop := newR45OwnDone()
		var once sync.Once
		started := make(chan struct{})
		var stopped atomic.Bool
		src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(ctx context.Context) (int, error) {
				once.Do(func() { close(started) })
				<-ctx.Done() // a source waiting for an item: the stop's hook wakes it
				return 0, context.Cause(ctx)
			}, func() { stopped.Store(true) }
		})
		in := stage.Map(stage.Until(src, stop), double, stage.Workers(2))
		go func() {
			<-started
			stop.cancel()
		}()
		rec, err := r45Recover(func() error {
			return stage.Run(context.Background(), in, func(context.Context, int, error) error { return nil })
		})
		if rec != nil && rec != r45Value {
			t.Fatalf("the sink's panic is %v, want none or the context's own %q", rec, r45Value)
		}
		if rec == nil && err != nil {
			t.Fatalf("stage.Run = %v, want nil (drained) or the context's panic", err)
		}
		if !stopped.Load() {
			t.Fatal("the source was not stopped")
		}
	})
}

// TestReview45OwnDoneParentCalledAfterReturn: the Leaks section, "When a
// sink returns, no goroutine of the run is running", and the promise that
// a panic of the caller's ctx is raised by the sink once the run is over.
// A run under a parent with a Done channel of its own ends normally; the
// caller then cancels its ctx, whose methods now panic. Nothing of the run
// may call them any more; the goroutine that context.WithCancelCause (in
// newRun) started to watch the parent may still be there, and once both
// channels are closed its select picks either: it calls the parent's Err
// after the sink returned, in a goroutine nobody recovers.
func TestReview45OwnDoneParentCalledAfterReturn(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		const runs = 2000
		for i := range runs {
			p := newR45OwnDone()
			got, f := r45Count()
			_, before := runcheck.Goroutines()
			err := stage.Run(p, stage.Map(generator(4), double, stage.Workers(2)), f)
			if err != nil || got() != 4 {
				t.Fatalf("run %d: stage.Run = %v after %d items, want nil after 4", i, err, got())
			}
			p.cancel() // the sink returned: nothing of the run may call p now
			// Let whatever the run left behind run out (the context
			// package's watcher of such a parent outlived the sink, and
			// picked the parent's end as often as the run's).
			if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
				t.Fatalf("run %d: goroutines started by the run alive after the sink returned:\n%s", i, strings.Join(leaked, "\n\n"))
			}
			if n := p.calls.Load(); n != 0 {
				t.Fatalf("run %d: the parent's Err or Value was called %d times after the sink returned", i, n)
			}
		}
	})
}

// r45Count returns a sink function that counts what it sees, and the count.
func r45Count() (func() int, func(context.Context, int, error) error) {
	n := 0
	return func() int { return n }, func(context.Context, int, error) error { n++; return nil }
}

// r45DeadlineCtx embeds a standard cancellable context; once armed, its
// Deadline panics (Deadline is a method of the caller's ctx too).
type r45DeadlineCtx struct {
	context.Context
	armed atomic.Bool
}

func (c *r45DeadlineCtx) Deadline() (time.Time, bool) {
	if c.armed.Load() {
		panic(r45Value)
	}
	return c.Context.Deadline()
}

// TestReview45ParentDeadlinePanicsUnderTimeout: a stage with Timeout makes
// each call's context with context.WithTimeout(run's ctx), which asks the
// run's context's Deadline, that is the caller's ctx's (the run's context
// does not define it). That call is the library's, made in a worker
// goroutine of the run (stage/calls.go, limited), outside the guard of
// the user's function: the promise says the sink raises the context's own
// panic, not "sluice: internal panic: ...".
func TestReview45ParentDeadlinePanicsUnderTimeout(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(map[int]string{1: "workers=1", 2: "workers=2"}[workers], func(t *testing.T) {
			runcheckInChild(t, func(t *testing.T) {
				inner, cancel := context.WithCancel(context.Background())
				defer cancel()
				p := &r45DeadlineCtx{Context: inner}
				var stopped atomic.Bool
				src := countingSource(func() { p.armed.Store(true) }, &stopped)
				in := stage.Map(src, double, stage.Workers(workers), stage.Timeout(time.Hour))
				rec, err := r45Recover(func() error {
					return stage.Run(p, in, func(context.Context, int, error) error { return nil })
				})
				if rec != r45Value {
					t.Fatalf("stage.Run panicked with %v (error %v), want the context's own %q", rec, err, r45Value)
				}
				if !stopped.Load() {
					t.Fatal("the source was not stopped")
				}
			})
		})
	}
}
