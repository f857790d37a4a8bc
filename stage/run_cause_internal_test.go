package stage

// The run's error and its context's cause are one decision: the package doc
// promises that a run a failure ended is cancelled "with the *stage.Error as
// its cause (see context.Cause)", and the sink returns that same error. Each
// test here races what can end a run (a failure, a second failure, the
// sink's finish, the parent's cancellation) and checks that what calls in
// flight see as the cause is what the sink returns. Before the cause was
// decided together with the run's over flag, a sink that saw the flag could
// finish the run, with its own cause, before the failing goroutine had
// cancelled the context: 109 of 12,000 fail-fast runs under -race saw
// "sluice: run finished".

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
)

const causeReps = 3000

// TestRunCauseIsTheFailureTheSinkSawEnd: a goroutine fails the run while
// the sink's goroutine waits for the run to look cancelled and finishes it
// (what a sink loop does when it sees the run over).
func TestRunCauseIsTheFailureTheSinkSawEnd(t *testing.T) {
	for _, parent := range []context.Context{context.Background(), context.TODO(), cancellable(t)} {
		for range causeReps {
			r := newRun(parent)
			e := errors.New("boom")
			done := make(chan struct{})
			go func() {
				defer close(done)
				r.fail(e)
			}()
			for !r.cancelled() {
				runtime.Gosched() // a yield, not a wait: on one processor the failing goroutine runs only when this loop lets it (without it, async preemption every ~10 ms: 220 s at -cpu=1)
			}
			r.finish()
			<-done
			if got := context.Cause(r.ctx); got != e {
				t.Fatalf("cause %v, want the failure %v", got, e)
			}
			if got := r.result(parent); got != e {
				t.Fatalf("result %v, want the failure %v", got, e)
			}
		}
	}
}

// TestRunCauseIsTheFailureOfTwo: two failures race; the one the sink
// returns is the cause.
func TestRunCauseIsTheFailureOfTwo(t *testing.T) {
	for range causeReps {
		r := newRun(context.Background())
		e1, e2 := errors.New("one"), errors.New("two")
		var wg sync.WaitGroup
		for _, e := range []error{e1, e2} {
			wg.Go(func() { r.fail(e) })
		}
		wg.Wait()
		r.finish()
		got := r.result(context.Background())
		if got != e1 && got != e2 {
			t.Fatalf("result %v, want one of the failures", got)
		}
		if cause := context.Cause(r.ctx); cause != got {
			t.Fatalf("cause %v, but the sink returns %v", cause, got)
		}
	}
}

// TestRunCauseParentOrFailure: the parent is cancelled while the run
// fails. Whichever came first is both the cause and (wrapped, for the
// parent) what the sink returns.
func TestRunCauseParentOrFailure(t *testing.T) {
	parentCause := errors.New("parent's cause")
	for range causeReps {
		parent, cancel := context.WithCancelCause(context.Background())
		r := newRun(parent)
		e := errors.New("boom")
		var wg sync.WaitGroup
		wg.Go(func() { r.fail(e) })
		wg.Go(func() { cancel(parentCause) })
		wg.Wait()
		r.finish()
		got, cause := r.result(parent), context.Cause(r.ctx)
		switch {
		case got == e:
			if cause != e {
				t.Fatalf("the sink returns the failure, but the cause is %v", cause)
			}
		case errors.Is(got, parentCause) && errors.Is(got, context.Canceled):
			if cause != parentCause {
				t.Fatalf("the sink returns the parent's %v, but the cause is %v", got, cause)
			}
		default:
			t.Fatalf("result %v, want the failure or the parent's cancellation", got)
		}
	}
}

// cancellable is a parent context that could be cancelled but is not.
func cancellable(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// uncomparable is an error whose dynamic type == cannot compare: the run
// must not compare a failure with ==.
type uncomparable struct{ parts []string }

func (e uncomparable) Error() string { return "uncomparable" }

// TestRunCauseUncomparableFailure: a run that fails with an error of an
// uncomparable type, with and without a parent that is cancelled at the
// same time, returns it (or the parent's error) and does not panic.
func TestRunCauseUncomparableFailure(t *testing.T) {
	runcheck.InChildTest(t, runCauseUncomparable)
}

func runCauseUncomparable(t *testing.T) {
	e := uncomparable{parts: []string{"a"}}
	for range causeReps / 10 {
		for _, cancelParent := range []bool{false, true} {
			parent, cancel := context.WithCancelCause(context.Background())
			r := newRun(parent)
			var wg sync.WaitGroup
			wg.Go(func() { r.fail(e) })
			if cancelParent {
				wg.Go(func() { cancel(e) })
			}
			wg.Wait()
			r.finish()
			var u uncomparable
			if got := r.result(parent); !errors.As(got, &u) {
				t.Fatalf("result %v, want the uncomparable failure", got)
			}
			cancel(nil)
		}
	}
}

// TestSameErrorNeverPanics: sameError says whether two errors are the very
// same value (the interface value a context stores and gives back), also
// for what == cannot compare, and never panics.
func TestSameErrorNeverPanics(t *testing.T) {
	type holder struct{ error }
	e := errors.New("e")
	var u error = uncomparable{parts: []string{"a"}}
	var hu error = holder{u}
	var he error = holder{e}
	for _, c := range []struct {
		a, b error
		want bool
	}{
		{e, e, true}, {e, errors.New("e"), false}, {nil, nil, true}, {e, nil, false},
		{u, u, true}, {u, uncomparable{parts: []string{"a"}}, false}, {hu, hu, true}, {hu, holder{u}, false},
		{he, he, true}, {u, e, false},
	} {
		if got := sameError(c.a, c.b); got != c.want {
			t.Errorf("sameError(%#v, %#v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// TestRunCauseSeenWithOver: whoever sees the run over (the flag that
// stands for the context when only the run can cancel it) and then asks for
// the cause gets it, not nil: a watcher's cut-short error names the run's
// cause ("naming the run's cause", see cutShortError), never a bare
// context.Canceled for a run a failure ended.
func TestRunCauseSeenWithOver(t *testing.T) {
	for range causeReps {
		r := newRun(context.Background())
		e := errors.New("boom")
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.fail(e)
		}()
		for !r.cancelled() {
			runtime.Gosched() // one processor: let the failing goroutine run
		}
		var ce *cutShortError
		if err := cutShort(r); !errors.As(err, &ce) || ce.cause != e {
			t.Fatalf("cut short: %v, want it to name the failure %v", err, e)
		}
		<-done
		r.finish()
	}
}
