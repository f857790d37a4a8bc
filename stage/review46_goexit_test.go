package stage_test

// Review 46: a Goexit in a method of a caller's context that the run's own
// watcher goroutine calls (watched.AfterFunc, run_userctx.go). Commit
// abaf9f1 releases hooks on a Goexit, and 346d759/abaf9f1 fixed a Goexit in
// a stop context's Value that hung the run; the watcher's guard.Call cannot
// stop a Goexit, and when one ends the watcher, the cancellation it was
// passing on (the parent's, or the stop's) is lost.

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// r46GoexitOwnDone is a caller's context with a Done channel of its own;
// its Err ends the calling goroutine (runtime.Goexit, as t.FailNow in a
// fake context would) when the run's watcher goroutine calls it.
type r46GoexitOwnDone struct {
	context.Context // context.Background: Value, Deadline
	done            chan struct{}
	once            sync.Once
	goexits         atomic.Int64
}

func newR46GoexitOwnDone() *r46GoexitOwnDone {
	return &r46GoexitOwnDone{Context: context.Background(), done: make(chan struct{})}
}

func (c *r46GoexitOwnDone) Done() <-chan struct{} { return c.done }

func (c *r46GoexitOwnDone) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	if r46CalledFrom("stage.(*watched).AfterFunc") {
		c.goexits.Add(1)
		runtime.Goexit()
	}
	return context.Canceled
}

func (c *r46GoexitOwnDone) cancel() { c.once.Do(func() { close(c.done) }) }

// r46CalledFrom reports whether a function whose name contains fn is on
// the caller's stack.
func r46CalledFrom(fn string) bool {
	buf := make([]byte, 1<<16)
	return strings.Contains(string(buf[:runtime.Stack(buf, false)]), fn)
}

// r46Ended runs f in a goroutine and reports whether it ended (returned,
// panicked or Goexited) before the watchdog: a hang detector only.
func r46Ended(f func()) bool {
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		defer func() { _ = recover() }()
		f()
	}()
	select {
	case <-ended:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

// TestReview46ParentErrGoexitInWatcher: the caller's ctx has its own Done
// channel, so the run's context is made from a watched parent whose
// AfterFunc watches it from a goroutine of the run's. The parent is
// cancelled while a call waits for its ctx to end; the watcher calls the
// parent's Err (context's propagateCancel: child.cancel(false,
// parent.Err(), Cause(parent))), which Goexits. The promise: the parent's
// cancellation ends the run (the sink returns, or raises, or its goroutine
// ends: anything but waiting for ever).
func TestReview46ParentErrGoexitInWatcher(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		p := newR46GoexitOwnDone()
		started := make(chan struct{})
		var once sync.Once
		in := stage.Map(generator(4), func(ctx context.Context, v int) (int, error) {
			once.Do(func() { close(started) })
			<-ctx.Done()
			return 0, ctx.Err()
		}, stage.Workers(2))
		go func() {
			<-started
			p.cancel()
		}()
		ended := r46Ended(func() {
			_ = stage.Run(p, in, func(context.Context, int, error) error { return nil })
		})
		if !ended {
			t.Fatalf("the parent was cancelled, and the sink did not return (%d Goexits in the parent's Err in the run's watcher)", p.goexits.Load())
		}
	})
}

// TestReview46UntilStopErrGoexitInWatcher: the same for Until's stop
// context with a Done channel of its own: its hook's watcher (watched's
// AfterFunc, in the Until's scope) calls the stop's Err once it is done,
// which Goexits; the scope is never ended, and a source waiting in next
// for its context to end is never woken. Until's promise: once stop is
// done, the sink returns nil once the items in flight have arrived.
func TestReview46UntilStopErrGoexitInWatcher(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		stop := newR46GoexitOwnDone()
		started := make(chan struct{})
		var once sync.Once
		src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(ctx context.Context) (int, error) {
				once.Do(func() { close(started) })
				<-ctx.Done() // a source waiting for an item: the stop's hook wakes it
				return 0, context.Cause(ctx)
			}, func() {}
		})
		in := stage.Map(stage.Until(src, stop), double, stage.Workers(2))
		go func() {
			<-started
			stop.cancel()
		}()
		ended := r46Ended(func() {
			_ = stage.Run(context.Background(), in, func(context.Context, int, error) error { return nil })
		})
		if !ended {
			t.Fatalf("the stop context was done, and the sink did not return (%d Goexits in the stop's Err in the run's watcher)", stop.goexits.Load())
		}
	})
}
