package stage

import (
	"errors"
	"fmt"

	"github.com/sourcegraph/conc/panics"

	"github.com/sluicedev/sluice/internal/guard"
)

// Error is an item error: the user's function failed for one item in a stage
// (or in a sink callback). It carries the context only the library has: which
// stage, which item, what the input was. The user's error is Err, unchanged;
// errors.Is and errors.As see through Error to it.
type Error struct {
	// Stage is the stage's name: the one given with [Name], or its kind and
	// position ("map#1", "filter#2", ..., see [Name]); for a sink callback,
	// the sink's kind ("foreach", "reduce").
	Stage string
	// Index is the item's 0-based position in the stage's input (for a
	// sink callback, in the stream the sink runs). Forwarded errors count
	// as items. When the stage's input has no defined order
	// (the output of an unordered stage with more than one worker, or of
	// [Merge]), Index is the position in which the stage received the item.
	Index int
	// Input is the item the function was called with.
	Input any
	// Attempts is how many times the stage tried the item: 1, or more
	// under [Retry]; 0 when its [KeyBy] key function panicked, so that it
	// was never tried. A try that failed without calling the function (a
	// nil task of [Concurrent], a limiter's [ErrNoToken]) counts as one.
	Attempts int
	// Err is the error the function returned, or a *[PanicError].
	Err error
}

// Error reports the stage, the item's index and the cause.
func (e *Error) Error() string {
	if e.Attempts > 1 {
		return fmt.Sprintf("sluice: stage %q: item %d (%d attempts): %v", e.Stage, e.Index, e.Attempts, e.Err)
	}
	return fmt.Sprintf("sluice: stage %q: item %d: %v", e.Stage, e.Index, e.Err)
}

// Unwrap returns Err, the function's own error.
func (e *Error) Unwrap() error { return e.Err }

// SourceError reports that a source failed to produce its next item. It
// always ends the run, whatever the stages' error policies: the source stops,
// the items it produced before the failure still complete and are delivered,
// and then the sink returns the SourceError (unless a [FailFast] error ended
// the run first).
type SourceError struct {
	// Err is the source's error, or a *[PanicError].
	Err error
}

// Error reports the source's error (a nil Err prints as <nil>, as it does
// in an [Error]).
func (e *SourceError) Error() string { return fmt.Sprintf("sluice: source: %v", e.Err) }

// Unwrap returns Err, the source's own error.
func (e *SourceError) Unwrap() error { return e.Err }

// PanicError is a panic in user code (a source function, a stage function,
// a sink callback) turned into an error. It reaches the caller wrapped in an
// *[Error] or a *[SourceError], so the process never crashes because a user
// function panicked.
type PanicError struct {
	// Value is the value passed to panic.
	Value any
	// Stack is the stack of the goroutine that panicked, as debug.Stack
	// formats it.
	Stack []byte
}

// Error reports the panic's value (the stack is in Stack).
func (e *PanicError) Error() string { return fmt.Sprintf("sluice: panic: %v", e.Value) }

// Unwrap returns Value when it is an error (for example a runtime.Error), so
// that errors.Is and errors.As see the panic's cause.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

func panicError(rec *panics.Recovered) *PanicError {
	return &PanicError{Value: rec.Value, Stack: rec.Stack}
}

// ErrNoToken is the error of an attempt whose [SharedRateLimit] limiter can
// never give a token (see there). Under [Retry] it is an error like any
// other: each refused attempt counts as one.
var ErrNoToken = errors.New("sluice: the rate limiter can give no token (a burst of 0, or a limit of 0 once its burst is spent)")

// ErrNilTask is the item error of a nil task in [Concurrent]. Under [Retry]
// it is an error like any other: each try counts as an attempt.
var ErrNilTask = errors.New("sluice: nil task")

// ErrGoexit is the error of a run one of whose goroutines was ended by
// runtime.Goexit in user code (t.Fatal or t.FailNow called from a stage's
// function, which may run on a goroutine of the run): the item it held is
// lost, so the run fails with ErrGoexit rather than return what it has as
// if complete (unless it failed otherwise, whose error it returns, its
// context was cancelled first, whose error it returns as for any
// cancellation, or its sink stopped it with ErrStop). A function that
// calls Goexit on the sink's own goroutine ends that goroutine: the sink
// does not return, as with any function, and the run's goroutines exit.
// The functions that run on the sink's goroutine: the sink's callback, a
// source's open and stop, an observer's Stage and Closed, and the calls a
// stage makes in its consumer's goroutines, which a cheap stage or one
// whose input holds a single item may do (see [Workers]; Buffer(1) keeps
// a stage's calls on goroutines of its own), with the source's next (or
// an Indexed at) that such a stage calls there; and next when the sink
// reads a source directly.
var ErrGoexit = errors.New("sluice: a goroutine of the run was ended by runtime.Goexit (t.Fatal or t.FailNow in a stage's function?)")

// ErrStop, returned by the callback of [Run], ends the run early without an
// error; so does an error that wraps it, unless the ErrStop is inside an
// *[Error], a *[SourceError] or a *[PanicError] (see [IsStop]).
var ErrStop = errors.New("sluice: stop")

// IsStop reports whether err, returned by the callback of [Run], ends the
// run early without an error: err is [ErrStop] or wraps it (as errors.Is
// sees it), and that ErrStop is not inside an *[Error], a *[SourceError] or
// a *[PanicError] (of an err that joins several errors, one ErrStop
// outside them is enough, whatever else it holds). Those are failures: some run reported them (a stage's
// function, a source or a [Handle] function returned ErrStop), so a callback that returns
// one, say from a run of its own, fails the run with it; and a panic,
// whatever its value, is a failure (panic(ErrStop) does not stop a run). A
// sink that wraps its callback's errors (as sink.ForEach does, in an
// *Error) passes a stop on as it is.
//
// Asking calls err's own methods (Is, As, Unwrap), which a callback's
// error type defines: if one panics, IsStop reports false, and the error is
// a failure like any other (the panic is not raised again here).
func IsStop(err error) (stop bool) {
	if err == nil {
		return false
	}
	guard.Call(func() { stop = isStop(err) })
	return stop
}

// isStop is IsStop's walk of err's tree: an ErrStop (err itself, or one
// an Is method claims) on a path that passes through no *Error,
// *SourceError or *PanicError (nor an error whose As method says it is one
// that holds ErrStop), whatever the rest of the tree holds. A chain of
// single wrappers is walked in a loop, as errors.Is does, so that its
// length costs no stack.
func isStop(err error) bool {
	for {
		switch err.(type) {
		case nil, *Error, *SourceError, *PanicError:
			return false // what a failure holds is the failure's
		}
		if failureAs(err) {
			return false
		}
		if err == ErrStop {
			return true
		}
		if x, ok := err.(interface{ Is(error) bool }); ok && x.Is(ErrStop) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if isStop(e) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
}

// failureAs reports whether err's own As method says it is an *Error, a
// *SourceError or a *PanicError that holds ErrStop.
func failureAs(err error) bool {
	x, ok := err.(interface{ As(any) bool })
	if !ok {
		return false
	}
	var e *Error
	if x.As(&e) && e != nil && errors.Is(e, ErrStop) {
		return true
	}
	var se *SourceError
	if x.As(&se) && se != nil && errors.Is(se, ErrStop) {
		return true
	}
	var pe *PanicError
	return x.As(&pe) && pe != nil && errors.Is(pe, ErrStop)
}
