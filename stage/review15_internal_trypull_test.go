package stage

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// Review 15 (white-box): sourcePuller.take classifies the error of a try
// (a next called with a context that is already done, see Interruptible)
// with errors.Is(err, errNotReady) || errors.Is(err, context.Canceled), on
// the source's error, outside guard.Call. errors.Is calls the error's own
// methods (Is, Unwrap): user code. A next that returns a typed nil of an
// error type whose Unwrap reads its receiver (the classic typed-nil error)
// makes that Unwrap panic inside tryPull, and the panic unwinds the goroutine
// that tried: a goroutine of the run (re-raised by Run as "sluice: internal
// panic") or the sink's own goroutine. The same next, called by a plain
// pull, becomes a *SourceError and the run fails quietly.
//
// Source's doc: "any other error (or a panic in open, next or stop) becomes
// a *SourceError that ends the run"; engine.go: "Every call of a function
// the user gave goes through guard.Call, so that its panic becomes an error
// and never unwinds a goroutine of the run: ... a source's open, next and
// stop".

// review15NilErr is an error type whose methods read their receiver: a nil
// *review15NilErr returned as an error is not a nil error, and its Unwrap
// panics.
type review15NilErr struct{ cause error }

func (e *review15NilErr) Error() string { return "review15: " + e.cause.Error() }
func (e *review15NilErr) Unwrap() error { return e.cause }

func review15NilErrSource() Stream[int] {
	return Interruptible(Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(ctx context.Context) (int, error) {
			var err *review15NilErr // a bug of the source's: a typed nil
			return 0, err
		}, nil
	}))
}

// A try of a next whose error's Unwrap panics: tryPull must not let the
// panic out (it is a failure of the source, or at worst "nothing ready").
func TestReview15TryPullErrorMethodPanicIsContained(t *testing.T) {
	r := newRun(context.Background())
	p, ok := review15NilErrSource().open.open(r).(tryPuller[int])
	if !ok {
		t.Fatal("an Interruptible source's puller is not a tryPuller")
	}
	var escaped any
	func() {
		defer func() { escaped = recover() }()
		p.tryPull()
	}()
	r.finish()
	if escaped != nil {
		t.Fatalf("tryPull let a panic of the source error's Unwrap unwind its caller: %v", escaped)
	}
}

// The control: the same next, called by a plain pull, fails the source
// (a *SourceError), no panic.
func TestReview15PullSameErrorIsASourceError(t *testing.T) {
	r := newRun(context.Background())
	p := review15NilErrSource().open.open(r)
	var escaped any
	func() {
		defer func() { escaped = recover() }()
		p.pull()
	}()
	r.finish()
	var se *SourceError
	if escaped != nil || !errors.As(r.srcErr, &se) {
		t.Fatalf("pull: escaped panic %v, srcErr %v; want no panic and a *SourceError", escaped, fmt.Sprintf("%T", r.srcErr))
	}
}
