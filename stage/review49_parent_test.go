package stage_test

// Review 49: fresh eyes on 157e7e0 and a468915 (whether the parent ended
// the run first is read from the run's own context: ownCause and
// cutShortLocked in run.go, ctxGoexited in run_userctx.go).

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r49OwnDone is a context of the user's with a Done channel of its own
// (the context package cannot see into it: the run watches it from a
// goroutine of its own, run_userctx.go's watched). Once done, its Err is
// errDone; when the run's watcher calls it, it closes watcherAsked and,
// if armed, ends the watcher (runtime.Goexit, as t.FailNow in a fake
// context does).
type r49OwnDone struct {
	context.Context // context.Background: Deadline, Value
	done            chan struct{}
	once            sync.Once
	errDone         error
	armed           bool
	askOnce         sync.Once
	watcherAsked    chan struct{}
	goexits         atomic.Int64
}

func newR49OwnDone(errDone error, armed bool) *r49OwnDone {
	return &r49OwnDone{Context: context.Background(), done: make(chan struct{}), errDone: errDone, armed: armed, watcherAsked: make(chan struct{})}
}

func (c *r49OwnDone) Done() <-chan struct{} { return c.done }
func (c *r49OwnDone) cancel()               { c.once.Do(func() { close(c.done) }) }

func (c *r49OwnDone) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	if r46CalledFrom("stage.(*watched).AfterFunc") {
		c.askOnce.Do(func() { close(c.watcherAsked) })
		if c.armed {
			c.goexits.Add(1)
			runtime.Goexit()
		}
	}
	return c.errDone
}

// r49Wait waits for ch; the timeout is a hang watchdog only (a call that
// gives up returns, and the test's verdict then says what happened).
func r49Wait(ch <-chan struct{}) {
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
	}
}

// TestReview49UntilStopGoexitAfterParentCancelled: the caller cancels its
// ctx (a standard cancellable context) while the stage's calls wait for
// it; the run's context is cut short by the parent. Only then is Until's
// stop context (a context type of the user's with its own Done channel)
// done, and its Err, asked by the run's watcher of it, Goexits. The calls
// wait until the watcher asked, then return ctx.Err().
//
// Broken (errors.go, ErrGoexit): the run fails with ErrGoexit "(unless ...
// its context was cancelled first, whose error it returns as for any
// cancellation ...)"; Run's doc: "when ctx was cancelled, an error for
// which errors.Is(err, context.Canceled) ... holds". The parent's
// cancellation came first, and Run returns ErrGoexit. Fails 20 of 20
// iterations (deterministic).
//
// Cause: ctxGoexited (run_userctx.go:243-255) cuts the run short for a
// Goexit in the parent's watcher, but for a stop context's stores
// goexitLive unconditionally (run_userctx.go:253) without asking
// cutShortLocked, as goexited (run.go:440-447) does for any other Goexit
// in a goroutine of the run; result (run.go:733-734) then returns
// ErrGoexit. Not new (ad2faa8 fails the same, 20 of 20), but 157e7e0 fixed
// only the parent's half of ctxGoexited.
func TestReview49UntilStopGoexitAfterParentCancelled(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		run := func(armed bool) (stop *r49OwnDone, err error) {
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop = newR49OwnDone(context.Canceled, armed)
			started := make(chan struct{})
			var once sync.Once
			in := stage.Map(stage.Until(generator(50), stop), func(ctx context.Context, v int) (int, error) {
				once.Do(func() { close(started) })
				<-ctx.Done()
				r49Wait(stop.watcherAsked) // the stop's end reached the run's watcher
				return 0, ctx.Err()
			}, stage.Workers(2))
			runcheck.Run(t, "the cut-short run", func() {
				done := make(chan struct{})
				go func() {
					defer close(done)
					<-started
					cancel() // the parent first: the run's context is cut short at once
					stop.cancel()
				}()
				err = stage.Run(parent, in, func(context.Context, int, error) error { return nil })
				<-done
			})
			return stop, err
		}
		if _, err := run(false); !errors.Is(err, context.Canceled) || errors.Is(err, stage.ErrGoexit) {
			t.Fatalf("control: stage.Run = %v, want context.Canceled", err)
		}
		bad, last := 0, ""
		for range 20 {
			stop, err := run(true)
			if t.Failed() {
				return
			}
			if stop.goexits.Load() == 0 {
				t.Fatal("the scenario did not happen: the stop's Err never Goexited in the run's watcher")
			}
			if !errors.Is(err, context.Canceled) || errors.Is(err, stage.ErrGoexit) {
				bad++
				last = fmt.Sprintf("stage.Run = %v", err)
			}
		}
		if bad > 0 {
			t.Fatalf("in %d of 20 runs, %s; want context.Canceled: the parent was cancelled before the stop's Err Goexited", bad, last)
		}
	})
}

// TestReview49ParentGoexitInWatcherCauseDisagrees: the caller's ctx is a
// context type of the user's with its own Done channel whose Err, once it
// is done, is context.DeadlineExceeded (a fake deadline context); the run's
// watcher of it asks that Err to pass the end on, and it Goexits. The
// stage's calls wait for their ctx to end and record context.Cause(ctx).
//
// Broken (doc.go, Error policies, and Run's doc: the run's context's cause
// is what the sink returns; the brief's "calls in flight see as
// context.Cause of their ctx the same thing the sink returns (... the
// parent's cause)"): the calls see context.Canceled, and the sink returns
// context.DeadlineExceeded (the parent's Err, read again by result on the
// sink's goroutine). Before 157e7e0 both were ErrGoexit (they agreed); the
// change made them disagree. Fails 20 of 20 iterations (deterministic).
//
// Cause: ctxGoexited (run_userctx.go:246-251) cancels the run's context
// with context.Canceled (errParentUnread as ownCause, so cut short), and
// result (run.go:739-751) asks the parent's Err and Cause anew instead of
// returning the cause the run's calls saw.
func TestReview49ParentGoexitInWatcherCauseDisagrees(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		run := func(armed bool) (seen []error, p *r49OwnDone, err error) {
			p = newR49OwnDone(context.DeadlineExceeded, armed)
			started := make(chan struct{})
			var once sync.Once
			var mu sync.Mutex
			in := stage.Map(generator(50), func(ctx context.Context, v int) (int, error) {
				once.Do(func() { close(started) })
				<-ctx.Done()
				mu.Lock()
				seen = append(seen, context.Cause(ctx))
				mu.Unlock()
				return 0, ctx.Err()
			}, stage.Workers(2))
			runcheck.Run(t, "the cut-short run", func() {
				done := make(chan struct{})
				go func() {
					defer close(done)
					<-started
					p.cancel()
				}()
				err = stage.Run(p, in, func(context.Context, int, error) error { return nil })
				<-done
			})
			return seen, p, err
		}
		// The parent's end is context.DeadlineExceeded; when its Err
		// Goexits, the run cannot read it, and ends with context.Canceled
		// (run_userctx.go's ctxGoexited): the promise is that the calls and
		// the sink agree.
		agree := func(err error, seen []error, want error) bool {
			if !errors.Is(err, want) || len(seen) == 0 {
				return false
			}
			for _, c := range seen {
				if !errors.Is(err, c) {
					return false
				}
			}
			return true
		}
		if seen, _, err := run(false); !agree(err, seen, context.DeadlineExceeded) {
			t.Fatalf("control: stage.Run = %v, the calls saw as the cause %v; want context.DeadlineExceeded for both", err, seen)
		}
		bad, last := 0, ""
		for range 20 {
			seen, p, err := run(true)
			if t.Failed() {
				return
			}
			if p.goexits.Load() == 0 {
				t.Fatal("the scenario did not happen: the parent's Err never Goexited in the run's watcher")
			}
			if !agree(err, seen, context.Canceled) {
				bad++
				last = fmt.Sprintf("stage.Run = %v, the calls saw as the cause %v", err, seen)
			}
		}
		if bad > 0 {
			t.Fatalf("in %d of 20 runs, %s; want the same error for both (context.Canceled: the parent's end could not be read)", bad, last)
		}
	})
}

var errR49 = errors.New("r49: the stage failed")

// TestReview49OwnParentCancelledThenFailure: the caller's ctx is a context
// type of the user's with its own Done channel (well behaved: Err is
// context.Canceled once done). The caller cancels it; only once that
// cancel returned does a stage's call fail (FailFast).
//
// Broken (Run's doc: the result depends only on the order of events; "when
// ctx was cancelled, an error for which errors.Is(err, context.Canceled)
// ... holds"; the brief: "the cancellation error when the parent was
// cancelled first, even if a failure ... came after"): Run returns the
// stage's *Error. Pre-existing (the parent's end reaches the run's context
// only when the run's watcher goroutine gets to run, run_userctx.go:92-
// 109), not made by 157e7e0/a468915: fail (run.go:295-305) finds the run
// live and records the failure, as the code before did. Fails 10-19 of 20
// iterations per run, every test run of 8 (the same on ad2faa8): timing
// decides.
func TestReview49OwnParentCancelledThenFailure(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		bad, last := 0, ""
		for range 20 {
			p := newR49OwnDone(context.Canceled, false)
			cancelled := make(chan struct{})
			in := stage.Map(generator(50), func(ctx context.Context, v int) (int, error) {
				if v == 0 {
					r49Wait(cancelled)
					return 0, errR49
				}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Workers(2))
			var err error
			runcheck.Run(t, "the run", func() {
				go func() {
					p.cancel()
					close(cancelled)
				}()
				err = stage.Run(p, in, func(context.Context, int, error) error { return nil })
			})
			if t.Failed() {
				return
			}
			if !errors.Is(err, context.Canceled) || errors.Is(err, errR49) {
				bad++
				last = fmt.Sprintf("stage.Run = %v", err)
			}
		}
		if bad > 0 {
			t.Fatalf("in %d of 20 runs, %s; want context.Canceled: the parent was cancelled before the stage failed", bad, last)
		}
	})
}
