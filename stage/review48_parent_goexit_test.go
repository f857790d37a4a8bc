package stage_test

// Review 48: what a run decides when the caller's context is a context type
// of the user's whose Err (or Value) calls runtime.Goexit off the sink's
// goroutine (t.FailNow in a fake context). Since 8024665 the run no longer
// hangs or leaks then; these tests look at what it returns and tells.
//
// The first three findings have one cause: run.fail (run.go:293-299) and
// run.goexited (run.go:425-433) call the parent's methods (through
// cancelCtxLocked's removeChild, parentErrLocked, parentCauseLocked) before
// they record what they decided, even where that decision needs no answer
// from the parent (the cancellation they just made is the context's
// cause: sameError(context.Cause(r.ctx), err), or a Goexit inside the
// cancellation, which the context package reaches only for the
// cancellation that won). A Goexit there skips the recording (fail's
// r.failure) and, in a worker, the rest of the item's way (the stepper's
// settle, which tells the item's Ack), and turns every outcome into a
// live ErrGoexit. The fourth (TestReview48OwnParentCancelledGoexitInWatcher)
// is ctxGoexited's, next to the change: it marks a live Goexit even when
// the parent ended first.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r47Parent (review47) is the hostile caller's context: newR47Parent(t,
// value, false, armed) Goexits off the sink's goroutine once armed.

var errR48 = errors.New("r48: the stage failed")

func r48Method(value bool) string {
	if value {
		return "Value"
	}
	return "Err"
}

// r48FailFast runs a FailFast stage whose items (on goroutines of the run:
// generator's source waits) fail with errR48 under p, and returns what the
// sink returned and how many items failed off the sink's goroutine.
func r48FailFast(t *testing.T, p *r47Parent, workers int) (offSink int64, err error) {
	t.Helper()
	var off atomic.Int64
	in := stage.Map(generator(50), func(ctx context.Context, v int) (int, error) {
		if r47Goid() == p.sink.Load() {
			return v, nil // not the scenario: the sink's goroutine asks p nothing hostile
		}
		off.Add(1)
		return 0, errR48
	}, stage.Workers(workers))
	runcheck.Run(t, "r48FailFast", func() {
		p.sink.Store(r47Goid())
		err = stage.Run(p, in, func(context.Context, int, error) error { return nil })
	})
	return off.Load(), err
}

// TestReview48FailFastErrorBecomesGoexit: a stage's FailFast error is the
// first and only failure of the run, and the run's context is cancelled
// with it as its cause; the caller's context's Err (or Value), asked by
// the goroutine of the run that failed as it records the failure, Goexits.
//
// Broken (errors.go, ErrGoexit): "the run fails with ErrGoexit ... (unless
// it failed otherwise, whose error it returns ...)"; and Run's doc: it
// returns "the error that cut the run short before f saw the end of s: the
// first [FailFast] *[Error]". Run returns ErrGoexit instead, while calls in
// flight saw the *Error as the run's cause. Fails 20 of 20 iterations, in
// every subtest (deterministic: every live fail asks the parent).
//
// Cause: run.fail (run.go:296-298) records r.failure only after
// cancelCtxLocked (removeChild asks the parent's Value) and
// parentErrLocked returned; the Goexit skips it, and exit's goexited then
// marks a live Goexit. The failure's cancellation is the context's cause
// (sameError(context.Cause(r.ctx), err)) before either call is made.
func TestReview48FailFastErrorBecomesGoexit(t *testing.T) {
	for _, value := range []bool{false, true} {
		for _, workers := range []int{2, 4} {
			name := r48Method(value) + "/workers=" + strconv.Itoa(workers)
			t.Run(name, func(t *testing.T) {
				runcheckInChild(t, func(t *testing.T) {
					// The same run under a well-behaved context: the failure.
					if off, err := r48FailFast(t, newR47Parent(t, value, false, false), workers); off == 0 || !errors.Is(err, errR48) {
						t.Fatalf("control: stage.Run = %v (%d items failed off the sink's goroutine), want errR48", err, off)
					}
					bad, last := 0, ""
					for range 20 {
						p := newR47Parent(t, value, false, true)
						off, err := r48FailFast(t, p, workers)
						if t.Failed() {
							return
						}
						if off == 0 {
							t.Fatalf("the scenario did not happen: no item failed off the sink's goroutine (%d Goexits)", p.goexits.Load())
						}
						if !errors.Is(err, errR48) {
							bad++
							last = fmt.Sprintf("stage.Run = %v (the context's %s Goexited %d times as the run recorded the failure)", err, r48Method(value), p.goexits.Load())
						}
					}
					if bad > 0 {
						t.Fatalf("in %d of 20 runs, %s; want the stage's FailFast *Error (errR48), the run's first and only failure", bad, last)
					}
				})
			})
		}
	}
}

// r48Ack records what Done was told.
type r48Ack struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (a *r48Ack) Done(err error) {
	a.mu.Lock()
	a.calls++
	a.err = err
	a.mu.Unlock()
}

// TestReview48FailFastItemAckNotTold: the same, over an AckSource: the
// first item fails (FailFast, on a goroutine of the run), the other items
// wait for the run's end.
//
// Broken (ack.go, Ack): "Done(err) as soon as its way failed, with the
// first error: ... its stage's policy ended the run at it ([FailFast] ...)".
// The item's Ack is never told. Fails 20 of 20 iterations, in every
// subtest.
//
// Cause: the worker's stepper.step calls config.failed → run.fail
// (engine_process.go:166, policy.go:135) before s.settle(end)
// (engine_process.go:172), which tells the Ack; fail's calls of the
// parent's methods (run.go:296-297) end the worker, and settle never runs
// (the item's Ack is settled neither by exit nor by anything deferred).
func TestReview48FailFastItemAckNotTold(t *testing.T) {
	for _, value := range []bool{false, true} {
		for _, workers := range []int{2, 4} {
			name := r48Method(value) + "/workers=" + strconv.Itoa(workers)
			t.Run(name, func(t *testing.T) {
				runcheckInChild(t, func(t *testing.T) {
					run := func(p *r47Parent) (first *r48Ack, onSink bool) {
						acks := make([]*r48Ack, 50)
						for i := range acks {
							acks[i] = &r48Ack{}
						}
						src := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
							i := 0
							return func(context.Context) (int, stage.Ack, error) {
								if i == len(acks) {
									return 0, nil, errEOF
								}
								i++
								return i - 1, acks[i-1], nil
							}, nil
						})
						var sinkRan atomic.Bool
						in := stage.Map(src, func(ctx context.Context, v int) (int, error) {
							if r47Goid() == p.sink.Load() {
								sinkRan.Store(true)
							}
							if v == 0 {
								return 0, errR48
							}
							<-ctx.Done()
							return 0, ctx.Err()
						}, stage.Workers(workers))
						runcheck.Run(t, "the ack run", func() {
							p.sink.Store(r47Goid())
							_ = stage.Run(p, in, func(context.Context, int, error) error { return nil })
						})
						return acks[0], sinkRan.Load()
					}
					if a, onSink := run(newR47Parent(t, value, false, false)); onSink || a.calls != 1 || !errors.Is(a.err, errR48) {
						t.Fatalf("control: the failed item's Ack was told %d times (last: %v; an item ran on the sink's goroutine: %v), want once, with errR48", a.calls, a.err, onSink)
					}
					bad, last := 0, ""
					for range 20 {
						p := newR47Parent(t, value, false, true)
						a, onSink := run(p)
						if t.Failed() {
							return
						}
						if onSink {
							t.Fatalf("the scenario did not happen: an item ran on the sink's goroutine (%d Goexits)", p.goexits.Load())
						}
						if a.calls != 1 || !errors.Is(a.err, errR48) {
							bad++
							last = fmt.Sprintf("the Ack was told %d times (last: %v; the context's %s Goexited %d times as the run recorded the failure)", a.calls, a.err, r48Method(value), p.goexits.Load())
						}
					}
					if bad > 0 {
						t.Fatalf("in %d of 20 runs, of the item whose FailFast error ended the run: %s; want once, with errR48", bad, last)
					}
				})
			})
		}
	}
}

// TestReview48ParentCancelledFirstThenGoexit: the caller cancels its ctx
// while the stage's calls wait for it; the calls then end by Goexit (the
// test's function calls t.FailNow once it sees ctx done). The run was
// cancelled by the parent first: its result is the cancellation's error.
// The caller's context's Err (or Value) Goexits as the run asks it whether
// the parent ended first.
//
// Broken (errors.go, ErrGoexit): "the run fails with ErrGoexit ... (unless
// ... its context was cancelled first, whose error it returns as for any
// cancellation ...)"; doc.go/Run: the result depends on the order of
// events. Every event here (both Goexits included) comes after the
// parent's cancellation, and Run returns ErrGoexit. Fails 20 of 20
// iterations, in every subtest.
//
// Cause: run.goexited (run.go:428-431) stores goexitLive first and asks the
// parent (parentErrLocked, parentCauseLocked) before it can store
// goexitLate; the Goexit there leaves goexitLive, and result
// (run.go:688) returns ErrGoexit. The run's own context already says who
// came first (its cause is the parent's, not ErrGoexit) without the
// parent's methods.
func TestReview48ParentCancelledFirstThenGoexit(t *testing.T) {
	for _, value := range []bool{false, true} {
		for _, workers := range []int{2, 4} {
			name := r48Method(value) + "/workers=" + strconv.Itoa(workers)
			t.Run(name, func(t *testing.T) {
				runcheckInChild(t, func(t *testing.T) {
					run := func(p *r47Parent) (err error, onSink bool) {
						var sinkRan atomic.Bool
						waiting := make(chan struct{})
						var once sync.Once
						in := stage.Map(generator(50), func(ctx context.Context, v int) (int, error) {
							if r47Goid() == p.sink.Load() {
								sinkRan.Store(true)
							}
							once.Do(func() { close(waiting) })
							<-ctx.Done()
							runtime.Goexit()
							return v, nil
						}, stage.Workers(workers))
						runcheck.Run(t, "the cancelled run", func() {
							done := make(chan struct{})
							go func() {
								defer close(done)
								<-waiting
								p.cancel()
							}()
							p.sink.Store(r47Goid())
							err = stage.Run(p, in, func(context.Context, int, error) error { return nil })
							<-done
						})
						return err, sinkRan.Load()
					}
					if err, onSink := run(newR47Parent(t, value, false, false)); onSink || !errors.Is(err, context.Canceled) || errors.Is(err, stage.ErrGoexit) {
						t.Fatalf("control: stage.Run = %v (an item ran on the sink's goroutine: %v), want context.Canceled", err, onSink)
					}
					bad, last := 0, ""
					for range 20 {
						p := newR47Parent(t, value, false, true)
						err, onSink := run(p)
						if t.Failed() {
							return
						}
						if onSink {
							t.Fatalf("the scenario did not happen: an item ran on the sink's goroutine (%d Goexits)", p.goexits.Load())
						}
						if !errors.Is(err, context.Canceled) || errors.Is(err, stage.ErrGoexit) {
							bad++
							last = fmt.Sprintf("stage.Run = %v (the context's %s Goexited %d times as the run asked whether the parent ended first)", err, r48Method(value), p.goexits.Load())
						}
					}
					if bad > 0 {
						t.Fatalf("in %d of 20 runs, %s; want context.Canceled: the parent was cancelled before anything Goexited", bad, last)
					}
				})
			})
		}
	}
}

// r48OwnParent is a context of the user's with no standard context inside
// (the context package cannot see into it: the run watches it from a
// goroutine of its own, see run_userctx.go's watched), cancelled by
// closing done; once armed, its Err calls runtime.Goexit on every
// goroutine but the sink's.
type r48OwnParent struct {
	done    chan struct{}
	once    sync.Once
	armed   bool
	sink    atomic.Int64
	goexits atomic.Int64
}

func (c *r48OwnParent) cancel()                                 { c.once.Do(func() { close(c.done) }) }
func (c *r48OwnParent) Deadline() (deadline time.Time, ok bool) { return }
func (c *r48OwnParent) Done() <-chan struct{}                   { return c.done }
func (c *r48OwnParent) Value(any) any                           { return nil }

func (c *r48OwnParent) Err() error {
	if sink := c.sink.Load(); c.armed && sink != 0 && r47Goid() != sink {
		c.goexits.Add(1)
		runtime.Goexit()
	}
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// TestReview48OwnParentCancelledGoexitInWatcher: the caller cancels its
// ctx (a context type of its own) while the stage's calls wait for it; the
// calls return ctx.Err(), and nothing of the pipeline's calls Goexit. The
// run's watcher of the parent asks its Err to pass the cancellation on,
// and that Err Goexits.
//
// Broken (errors.go, ErrGoexit): "(unless ... its context was cancelled
// first, whose error it returns as for any cancellation ...)": the only
// Goexit came after the parent's cancellation, in the parent's own method
// asked because of it; Run returns ErrGoexit. Fails 20 of 20 runs, in
// every subtest.
//
// Cause: ctxGoexited (run_userctx.go:229-234, changed by 8024665) stores
// goexitLive unconditionally; the watcher's goroutine (run_userctx.go:92-
// 103) runs only once the parent is done, so the parent did end first.
// (Same family as TestReview48ParentCancelledFirstThenGoexit.)
func TestReview48OwnParentCancelledGoexitInWatcher(t *testing.T) {
	for _, workers := range []int{2, 4} {
		t.Run("workers="+strconv.Itoa(workers), func(t *testing.T) {
			runcheckInChild(t, func(t *testing.T) {
				run := func(p *r48OwnParent) (err error, onSink bool) {
					var sinkRan atomic.Bool
					waiting := make(chan struct{})
					var once sync.Once
					in := stage.Map(generator(50), func(ctx context.Context, v int) (int, error) {
						if r47Goid() == p.sink.Load() {
							sinkRan.Store(true)
						}
						once.Do(func() { close(waiting) })
						<-ctx.Done()
						return 0, ctx.Err()
					}, stage.Workers(workers))
					runcheck.Run(t, "the cancelled run", func() {
						done := make(chan struct{})
						go func() {
							defer close(done)
							<-waiting
							p.cancel()
						}()
						p.sink.Store(r47Goid())
						err = stage.Run(p, in, func(context.Context, int, error) error { return nil })
						<-done
					})
					return err, sinkRan.Load()
				}
				if err, onSink := run(&r48OwnParent{done: make(chan struct{})}); onSink || !errors.Is(err, context.Canceled) || errors.Is(err, stage.ErrGoexit) {
					t.Fatalf("control: stage.Run = %v (an item ran on the sink's goroutine: %v), want context.Canceled", err, onSink)
				}
				bad, last := 0, ""
				for range 20 {
					p := &r48OwnParent{done: make(chan struct{}), armed: true}
					err, onSink := run(p)
					if t.Failed() {
						return
					}
					if onSink {
						t.Fatalf("the scenario did not happen: an item ran on the sink's goroutine (%d Goexits)", p.goexits.Load())
					}
					if !errors.Is(err, context.Canceled) || errors.Is(err, stage.ErrGoexit) {
						bad++
						last = fmt.Sprintf("stage.Run = %v (the context's Err Goexited %d times)", err, p.goexits.Load())
					}
				}
				if bad > 0 {
					t.Fatalf("in %d of 20 runs, %s; want context.Canceled: the parent was cancelled before anything Goexited", bad, last)
				}
			})
		})
	}
}
