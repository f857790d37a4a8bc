package stage_test

import (
	"context"
	"errors"
	"runtime/debug"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r36Opaque is a wrapper that hides its cause from Unwrap but forwards
// errors.Is and errors.As to it (a common way to keep a cause out of
// callers' type switches while errors.Is/As still see it).
type r36Opaque struct{ cause error }

func (e r36Opaque) Error() string        { return "opaque: " + e.cause.Error() }
func (e r36Opaque) Is(target error) bool { return errors.Is(e.cause, target) }
func (e r36Opaque) As(target any) bool   { return errors.As(e.cause, target) }

// r36AsPanics unwraps to its cause, and its As method panics.
type r36AsPanics struct{ cause error }

func (e r36AsPanics) Error() string { return "asPanics" }
func (e r36AsPanics) Unwrap() error { return e.cause }
func (e r36AsPanics) As(_ any) bool { panic("r36AsPanics.As") }

// r36Link is one link of a long chain of plain single-error wrappers.
type r36Link struct{ next error }

func (e *r36Link) Error() string { return "link" }
func (e *r36Link) Unwrap() error { return e.next }

// Doc (IsStop): "that ErrStop is not inside an *Error, a *SourceError or a
// *PanicError"; "Asking calls err's own methods (Is, As, Unwrap)". An
// error whose As method says it holds an *Error with ErrStop (as errors.As
// sees it) carries a failure's ErrStop: IsStop must say false. The walk
// never calls As, and says true (before 789e1ad errors.As saw it: false).
func TestReview36IsStopForwardingAsHoldsAFailure(t *testing.T) {
	failure := &stage.Error{Stage: "map#1", Err: stage.ErrStop}
	err := r36Opaque{failure}
	var e *stage.Error
	if !errors.Is(err, stage.ErrStop) || !errors.As(err, &e) || e != failure {
		t.Fatal("setup: errors.Is/As do not see the *Error's ErrStop")
	}
	if stage.IsStop(err) {
		t.Errorf("IsStop(a wrapper whose As yields *Error{ErrStop}) = true, want false: the ErrStop is inside an *Error")
	}
	// The same through a sink: ForEach's callback returns the failure of a
	// run of its own, wrapped so; the run must fail, not stop.
	got := sink.ForEach(context.Background(), source.Slice([]int{1, 2, 3}), func(context.Context, int) error { return err })
	if got == nil {
		t.Errorf("ForEach whose callback returns another run's failure (behind a forwarding As) = nil, want that failure")
	}
}

// Doc (IsStop): "Asking calls err's own methods (Is, As, Unwrap), which a
// callback's error type defines: if one panics, IsStop reports false". An
// error that wraps ErrStop and whose As panics: IsStop no longer asks As,
// and reports true.
func TestReview36IsStopAsPanics(t *testing.T) {
	err := r36AsPanics{stage.ErrStop}
	if stage.IsStop(err) {
		t.Errorf("IsStop(err whose As panics) = true, want false per the doc (As is one of the methods asked)")
	}
}

// Doc (IsStop): "err is ErrStop or wraps it (as errors.Is sees it)". A long
// chain of single-error wrappers around ErrStop: errors.Is walks it in a
// loop (constant stack) and says true; isStop recurses once per link, so
// the goroutine's stack outgrows Go's default 1 GB limit: "fatal error:
// stack overflow", which no guard recovers, and the process dies.
func TestReview36IsStopLongChain(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		// A stack limit of 32 MB (this child's alone) makes a million links
		// enough to overflow a walk that recurses per link, at a twelfth of
		// the memory and time the default 1 GB limit needs.
		debug.SetMaxStack(32 << 20)
		const depth = 1 << 20
		var err error = stage.ErrStop
		for range depth {
			err = &r36Link{err}
		}
		if !errors.Is(err, stage.ErrStop) {
			t.Fatal("setup: errors.Is does not see ErrStop")
		}
		if !stage.IsStop(err) {
			t.Errorf("IsStop(%d wrappers around ErrStop) = false, want true", depth)
		}
	})
}
