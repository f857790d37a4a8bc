package stage_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// review74: the watchers of contexts the run does not own (the caller's
// parent of a type of its own, an Until stop context of a type of its
// own), which run while the pipeline is opened: a source's open may wait
// on its context, and only they can end it (Observer.Stage's exception).

// r74obs is an observer whose Stage runs hook with the call's number (from
// 1) and returns no watcher, or a counting one if watch is set.
type r74obs struct {
	hook   func(n int, info stage.Info)
	watch  bool
	calls  atomic.Int32
	closed atomic.Int32
}

func (o *r74obs) Stage(info stage.Info) stage.Watcher {
	n := int(o.calls.Add(1))
	if o.hook != nil {
		o.hook(n, info)
	}
	if o.watch {
		return &r74watcher{o: o}
	}
	return nil
}

type r74watcher struct{ o *r74obs }

func (w *r74watcher) Received()                     {}
func (w *r74watcher) Finished(time.Duration, error) {}
func (w *r74watcher) Closed()                       { w.o.closed.Add(1) }

// r74src is a source of 1..n that counts the calls of next and records the
// context open was given and whether stop was called (and whether that
// context was done by then).
type r74src struct {
	n          int
	nexts      atomic.Int32
	ctx        atomic.Pointer[context.Context]
	stopped    atomic.Bool
	doneAtStop atomic.Bool
	// block, if set, is called by next for item block.at instead of
	// producing it: it returns the error next returns.
	blockAt int
	block   func(ctx context.Context) error
}

func (s *r74src) stream() stage.Stream[int] {
	return stage.Source(func(ctx context.Context) (func(context.Context) (int, error), func()) {
		s.ctx.Store(&ctx)
		i := 0
		return func(ctx context.Context) (int, error) {
				s.nexts.Add(1)
				i++
				if s.block != nil && i == s.blockAt {
					return 0, s.block(ctx)
				}
				if i > s.n {
					return 0, io.EOF
				}
				return i, nil
			}, func() {
				s.doneAtStop.Store(ctx.Err() != nil)
				s.stopped.Store(true)
			}
	})
}

// openCtx is the context the source's open was given (nil before).
func (s *r74src) openCtx() context.Context {
	if p := s.ctx.Load(); p != nil {
		return *p
	}
	return nil
}

// r74ctx is a context type of the caller's (the context package cannot see
// into it: it embeds a *ctxtest.DoneCtx, no standard context) whose methods
// can misbehave: onDone gets the number of each Done call (from 1), onValue
// and onErr run before Value and Err answer. They may panic, call
// runtime.Goexit, or block.
type r74ctx struct {
	*ctxtest.DoneCtx
	doneCalls atomic.Int32
	onDone    func(n int32)
	onValue   func(key any)
	onErr     func()
}

func newR74ctx() *r74ctx { return &r74ctx{DoneCtx: ctxtest.NewDoneCtx()} }

func (c *r74ctx) Done() <-chan struct{} {
	n := c.doneCalls.Add(1)
	if c.onDone != nil {
		c.onDone(n)
	}
	return c.DoneCtx.Done()
}

func (c *r74ctx) Value(key any) any {
	if c.onValue != nil {
		c.onValue(key)
	}
	return c.DoneCtx.Value(key)
}

func (c *r74ctx) Err() error {
	if c.onErr != nil {
		c.onErr()
	}
	return c.DoneCtx.Err()
}

// r74calledFrom reports whether a function whose name contains fn is on
// the caller's stack.
func r74calledFrom(fn string) bool {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if strings.Contains(f.Function, fn) {
			return true
		}
		if !more {
			return false
		}
	}
}

// r74inSettleWait reports whether goroutine id is parked in the run's
// finish, waiting for its hooks (settle's hooks.Wait).
func r74inSettleWait(id int64) bool {
	_, all := runcheck.Goroutines()
	st, ok := all[id]
	return ok && strings.Contains(st, "(*run).settle") && strings.Contains(st, "sync.(*WaitGroup).Wait")
}

// r74parent is a caller's context of the kind (see ctxtest.New) and its
// cancel. Kind "own-watcher-late" is a context of the caller's own type
// whose end the run's watcher passes on only once the goroutine *sinkG
// names has left the opening and parks: every decision taken while the
// pipeline is opened comes before the run's context hears the end.
func r74parent(kind string, sinkG *atomic.Int64) (context.Context, func()) {
	if kind != "own-watcher-late" {
		return ctxtest.New(kind)
	}
	p := newR74ctx()
	p.onErr = func() {
		if p.DoneCtx.Err() == nil || !r74calledFrom("(*watched).AfterFunc") {
			return
		}
		for !r74parkedAfterOpening(sinkG.Load()) {
			runtime.Gosched()
		}
	}
	return p, p.Cancel
}

// r74parkedAfterOpening reports whether goroutine id is parked (not
// running or runnable) and no longer opening the pipeline or starting it.
func r74parkedAfterOpening(id int64) bool {
	_, all := runcheck.Goroutines()
	st, ok := all[id]
	if !ok {
		return false
	}
	head, _, _ := strings.Cut(st, "\n")
	return !strings.Contains(head, "running") && !strings.Contains(head, "runnable") &&
		!strings.Contains(st, "openFor") && !strings.Contains(st, "(*run).start")
}

// r74sinkGoexits runs run, which ends its goroutine by runtime.Goexit (or
// panics, or returns), in a goroutine of its own, and reports the
// goroutines that started meanwhile and were still alive once it ended,
// what it panicked with, and whether it returned.
func r74sinkGoexits(t *testing.T, run func()) (leaked []string, panicked any, returned bool) {
	t.Helper()
	runcheck.NoHang(t, "sink", func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, before := runcheck.Goroutines()
			defer func() { leaked = runcheck.LeakedSince(before) }()
			defer func() { panicked = recover() }()
			run()
			returned = true
		}()
		<-done
	})
	return leaked, panicked, returned
}

// r74isCanceled reports whether err says the caller's cancellation ended
// the run, and nothing else did.
func r74isCanceled(err error) bool {
	var pe *stage.PanicError
	return errors.Is(err, context.Canceled) && !errors.As(err, &pe) && !errors.Is(err, stage.ErrUnconsumedBranch)
}
