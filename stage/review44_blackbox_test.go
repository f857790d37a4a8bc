package stage_test

// Review 44, through the public API: what a call in flight sees as its
// context's cause against what stage.Run returns, when the parent is
// cancelled at the instant the run decides its failure (the parent's Err
// is the gate: see r44bParent).

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r44bUncomparable struct{ parts []string }

func (e r44bUncomparable) Error() string { return "r44b uncomparable" }

// r44bParent embeds a standard cancellable context (the run's context is
// its direct child: cancellation propagates in place) and runs a hook once
// in Err: before Err reads (before) or right after.
type r44bParent struct {
	context.Context
	before bool
	hook   atomic.Pointer[func()]
}

func (p *r44bParent) arm(f func()) { p.hook.Store(&f) }

func (p *r44bParent) Err() error {
	f := p.hook.Swap(nil)
	if f != nil && p.before {
		(*f)()
	}
	err := p.Context.Err()
	if f != nil && !p.before {
		(*f)()
	}
	return err
}

// TestReview44UncomparableRunErrorParentCancelled: stage.Run's f fails
// with an error of an uncomparable type while a call of item 1 is in
// flight; the parent is cancelled right after the run's context took f's
// error as its cause. The call in flight sees f's error as the cause;
// stage.Run returns the parent's cancellation (the failure was dropped by
// sameError, which cannot tell that an uncomparable value is itself).
func TestReview44UncomparableRunErrorParentCancelled(t *testing.T) {
	inner, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	pc := errors.New("parent's cause")
	p := &r44bParent{Context: inner, before: true}
	started := make(chan struct{})
	seen := make(chan error, 1)
	in := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, v int) (int, error) {
		if v == 1 {
			close(started)
			<-ctx.Done()
			seen <- context.Cause(ctx)
			return 0, ctx.Err()
		}
		<-started
		return v, nil
	}, stage.Workers(2))
	var err error
	hangGuard(t, func() {
		err = stage.Run(p, in, func(context.Context, int, error) error {
			p.arm(func() { cancel(pc) })
			return r44bUncomparable{parts: []string{"f"}}
		})
	})
	cause := <-seen
	var u r44bUncomparable
	causeIsF := errors.As(cause, &u)
	errIsF := errors.As(err, &u)
	if causeIsF != errIsF {
		t.Fatalf("the call in flight saw the cause %q, but stage.Run returns %q", cause, err)
	}
}

// TestReview44GoexitParentCancelledBlackBox: a stage's function ends its
// goroutine with runtime.Goexit while item 1's call is in flight; the
// parent is cancelled just after the run's exit looked at it (nil) and
// before it cancels the run with ErrGoexit. The call in flight sees the
// parent's cause; stage.Run returns ErrGoexit.
func TestReview44GoexitParentCancelledBlackBox(t *testing.T) {
	inner, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	pc := errors.New("parent's cause")
	p := &r44bParent{Context: inner, before: false}
	started := make(chan struct{})
	seen := make(chan error, 1)
	in := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, v int) (int, error) {
		if v == 1 {
			close(started)
			<-ctx.Done()
			seen <- context.Cause(ctx)
			return 0, ctx.Err()
		}
		<-started
		p.arm(func() { cancel(pc) })
		runtime.Goexit()
		return v, nil
	}, stage.Workers(2))
	var err error
	hangGuard(t, func() {
		err = stage.Run(p, in, func(context.Context, int, error) error { return nil })
	})
	cause := <-seen
	if (cause == stage.ErrGoexit) != errors.Is(err, stage.ErrGoexit) {
		t.Fatalf("the call in flight saw the cause %q, but stage.Run returns %q", cause, err)
	}
}

// r44bValueParent embeds a standard cancellable context; once armed, its
// Value panics when the context package asks it from removeChild (the run's
// context leaving its parent: the first cancellation of the run's context,
// at finish in a run that ends well).
type r44bValueParent struct {
	context.Context
	armed atomic.Bool
}

func (p *r44bValueParent) Value(key any) any {
	if p.armed.Load() {
		pcs := make([]uintptr, 32)
		frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
		for {
			f, more := frames.Next()
			if f.Function == "context.removeChild" {
				panic("r44b: the parent's Value panicked")
			}
			if !more {
				break
			}
		}
	}
	return p.Context.Value(key)
}

// TestReview44ParentPanicAtFinish: 7effe16 unlocks the run's lock by a
// defer in cancelForFinish so that a panic in the parent's methods (called
// when the run's context is cancelled) does not hang the run. But finish
// has set r.finished before, so the panic leaves finish half done and the
// deferred finish in Run returns at once: the sink panics without waiting
// for the run's goroutines, without waking its sleepers, without running
// the cleanups (the source's stop is never called). Pre-existing
// (0da709d's finish did the same), not a regression of the fix. In a child.
func TestReview44ParentPanicAtFinish(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		inner, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := &r44bValueParent{Context: inner}
		var stopped atomic.Bool
		src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			n := 0
			return func(context.Context) (int, error) { n++; return n, nil }, func() { stopped.Store(true) }
		})
		in := stage.Map(src, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1))
		var rec any
		func() {
			defer func() { rec = recover() }()
			_ = stage.Run(p, in, func(context.Context, int, error) error {
				p.armed.Store(true)
				return stage.ErrStop
			})
		}()
		if rec == nil {
			t.Skip("the parent's Value was not asked at finish")
		}
		if !stopped.Load() {
			t.Fatalf("stage.Run panicked (%v) without running the run's cleanups: the source's stop was never called", rec)
		}
	})
}

func runcheckInChild(t *testing.T, body func(t *testing.T)) { runcheck.InChildTest(t, body) }
