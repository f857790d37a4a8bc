package stage

// Review 44: the run's failure and its context's cause as one decision
// (run.go: failLocked, cancelLocked, exit). Each test checks the invariant
// the fix states: what calls in flight see as the cause is what the sink
// returns.

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// r44Uncomparable is an error whose dynamic type == cannot compare.
type r44Uncomparable struct{ parts []string }

func (e r44Uncomparable) Error() string { return "r44 uncomparable" }

// r44Parent is a parent context whose run context is a direct child of a
// standard cancelCtx (Done and Value are the embedded context's, so the
// cancellation propagates in place, as for context.WithCancel), and whose
// Err runs a hook once: the parent is cancelled at exactly the instant the
// run asks it for its Err. before: the hook runs before Err reads the
// error (Err reports the cancellation); else after (Err reports nil, the
// cancellation follows at once). This is only a gate on a timing that a
// standard parent can have by chance (see the racing tests).
type r44Parent struct {
	context.Context
	before bool
	hook   atomic.Pointer[func()]
}

func (p *r44Parent) arm(f func()) { p.hook.Store(&f) }

func (p *r44Parent) Err() error {
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

// r44IsU reports whether err is (wraps) an r44Uncomparable.
func r44IsU(err error) bool {
	var u r44Uncomparable
	return errors.As(err, &u)
}

// TestReview44UncomparableFailureParentGate: a failure with an error of an
// uncomparable type cancels the run (the cause is the failure); the parent
// is cancelled right after, before failLocked asks parent.Err(). failLocked
// then asks sameError(cause, err), which says false for an uncomparable
// value even though the cause IS err, so the failure is not recorded: the
// sink returns the parent's context.Canceled while every call in flight
// saw the failure as the cause.
func TestReview44UncomparableFailureParentGate(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"comparable", errors.New("boom")}, // control: consistent
		{"uncomparable", r44Uncomparable{parts: []string{"a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			pc := errors.New("parent's cause")
			p := &r44Parent{Context: inner, before: true}
			r := newRun(p)
			p.arm(func() { cancel(pc) })
			r.fail(tc.err)
			cause := context.Cause(r.ctx)
			r.finish()
			got := r.result(p)
			causeIsFailure := r44IsU(cause) || cause == tc.err
			gotIsFailure := r44IsU(got) || got == tc.err
			if !causeIsFailure {
				t.Fatalf("the cause is %v, want the failure (its cancellation came first)", cause)
			}
			if !gotIsFailure {
				t.Fatalf("calls in flight saw the failure %q as the cause, but the sink returns %q", cause, got)
			}
		})
	}
}

// TestReview44UncomparableFailureParentRace: the same with a standard
// parent, cancelled by another goroutine while the run fails: no gate,
// repeated. A mismatch needs the parent's cancel to land between
// failLocked's cancelLocked and its parent.Err().
func TestReview44UncomparableFailureParentRace(t *testing.T) {
	const reps = 4000
	pc := errors.New("parent's cause")
	bad := 0
	var example string
	for range reps {
		parent, cancel := context.WithCancelCause(context.Background())
		r := newRun(parent)
		u := r44Uncomparable{parts: []string{"a"}}
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { <-start; r.fail(u) })
		wg.Go(func() { <-start; cancel(pc) })
		close(start)
		wg.Wait()
		cause := context.Cause(r.ctx)
		r.finish()
		got := r.result(parent)
		if r44IsU(cause) != r44IsU(got) {
			bad++
			example = "cause " + cause.Error() + ", sink returns " + got.Error()
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d runs: the cause and the sink's error differ (e.g. %s)", bad, reps, example)
	}
}

// TestReview44GoexitParentGate: a goroutine of the run is ended by
// runtime.Goexit while the parent is live; exit reads parent.Err() (nil:
// goexitLive) and then calls cancelRun(ErrGoexit), outside the run's lock
// and not as one decision. The parent is cancelled in between: its
// cancellation is the one that takes effect, so calls in flight see the
// parent's cause, yet the sink returns ErrGoexit (ErrGoexit's doc: "its
// context was cancelled first, whose error it returns").
func TestReview44GoexitParentGate(t *testing.T) {
	inner, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	pc := errors.New("parent's cause")
	p := &r44Parent{Context: inner, before: false}
	r := newRun(p)
	seen := make(chan error, 1)
	r.goroutine(func() {
		<-r.ctx.Done() // a call in flight
		seen <- context.Cause(r.ctx)
	})
	r.goroutine(func() {
		p.arm(func() { cancel(pc) })
		runtime.Goexit()
	})
	r.start()
	cause := <-seen
	r.finish()
	got := r.result(p)
	if (cause == ErrGoexit) != (got == ErrGoexit) {
		t.Fatalf("calls in flight saw the cause %q, but the sink returns %q", cause, got)
	}
}

// TestReview44GoexitParentRace: the same with a standard parent cancelled
// by another goroutine, repeated.
func TestReview44GoexitParentRace(t *testing.T) {
	const reps = 4000
	pc := errors.New("parent's cause")
	bad, other := 0, 0
	var example, example2 string
	for range reps {
		parent, cancel := context.WithCancelCause(context.Background())
		r := newRun(parent)
		start := make(chan struct{})
		seen := make(chan error, 1)
		r.goroutine(func() {
			<-r.ctx.Done()
			seen <- context.Cause(r.ctx)
		})
		r.goroutine(func() {
			<-start
			runtime.Goexit()
		})
		r.start()
		done := make(chan struct{})
		go func() { defer close(done); <-start; cancel(pc) }()
		close(start)
		cause := <-seen
		<-done
		r.finish()
		got := r.result(parent)
		switch {
		case cause != ErrGoexit && errors.Is(got, ErrGoexit):
			bad++ // exit saw the parent live (goexitLive); the parent's cancel took effect first
			example = "cause " + cause.Error() + ", sink returns " + got.Error()
		case cause == ErrGoexit && !errors.Is(got, ErrGoexit):
			other++ // exit saw parent.Err() set (goexitLate) while the parent was still cancelling its children; ErrGoexit took effect
			example2 = "cause " + cause.Error() + ", sink returns " + got.Error()
		}
	}
	if bad+other > 0 {
		t.Fatalf("%d of %d runs: the cause and the sink's error differ (%d: e.g. %s; %d: e.g. %s)", bad+other, reps, bad, example, other, example2)
	}
}
