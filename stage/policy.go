package stage

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/sluicedev/sluice/internal/guard"
)

// ErrorPolicy says what a stage does when its function fails for an item
// (after its retries, see [Retry]): [FailFast], [Forward], or a handler made
// by [Handle] or [Budget]. See the package documentation, "Error policies".
// The zero ErrorPolicy is FailFast.
type ErrorPolicy struct{ p *policy }

type policy struct {
	name   string
	handle func(ctx context.Context, e *Error) error // Handle, Budget
	budget int                                       // Budget: failures allowed per run; -1: no budget
}

var (
	// FailFast, the default, ends the run at the first item error: the run's
	// context is cancelled with the *[Error] as its cause, calls in flight see
	// ctx.Done(), no new item starts, and the sink returns the error once
	// every goroutine of the run has exited. Outputs on their way to the sink
	// then are dropped (once the run is cancelled the sink delivers nothing
	// more, but for a step already on its way: see Cancellation in the
	// package doc), so how many of the items before the failed one reached the sink
	// depends on timing; a source's failure, by contrast, lets every item
	// before it through (see [SourceError]).
	FailFast = ErrorPolicy{}
	// Forward sends the *[Error] downstream in the failed item's place. Later
	// stages pass it through without calling their function and the run goes
	// on; the sink reports it (see package sink).
	Forward = ErrorPolicy{&policy{name: "Forward"}}
)

// String returns the policy's name: "FailFast", "Forward", "Handle" or
// "Budget(n)".
func (p ErrorPolicy) String() string {
	if p.p == nil {
		return "FailFast"
	}
	return p.p.name
}

// Handle returns the policy that passes every failed item to h, the
// dead-letter pattern: h sees the *[Error] (stage, index, input, attempts,
// cause) once the item's retries are spent. If h returns nil, the item is
// dropped (outputs it emitted before failing stay emitted) and the run goes
// on; if h returns an error, the run fails with it as with [FailFast], and
// the sink returns h's error (one that [IsStop] would take for a stop, such
// as ErrStop, comes wrapped in an *Error of the item's stage and index, so
// that a callback that returns it from a run of its own fails that run
// too). (Once the run is ending, an error of h's that
// is the context's error or the run's cause means h was cut short: the
// run's result stays what ended it, and the item is left unacknowledged,
// see [Ack].)
//
// Calls of h never overlap within one stage of one run, so h may append to
// a slice or count without a lock of its own; they run in the stage's
// worker goroutines, so a slow h holds a worker. ctx is the run's context. A
// panic in h fails the run with an *[Error] wrapping a *[PanicError]. Handle
// panics if h is nil.
func Handle(h func(ctx context.Context, e *Error) error) ErrorPolicy {
	checkFunc(h == nil, "stage.Handle", "handler")
	return ErrorPolicy{&policy{name: "Handle", handle: h, budget: -1}}
}

// ErrBudget is wrapped by the error with which a [Budget] policy fails the
// run.
var ErrBudget = errors.New("sluice: error budget exceeded")

// Budget returns the policy "fail after n errors": the first n failed items
// of a run are dropped after being passed to h (which may be nil), and the
// (n+1)th, which h does not see, fails the run with an error that wraps
// both [ErrBudget] and that item's *[Error] (errors.Is and errors.As find
// each). The count is per
// stage and per run: each run starts with a full budget. If h returns an
// error, the run fails with it at once, as with [Handle]. Calls of h never
// overlap within a stage. Budget panics if n < 0.
func Budget(n int, h func(ctx context.Context, e *Error) error) ErrorPolicy {
	if n < 0 {
		panic(fmt.Sprintf("sluice: stage.Budget: n = %d, want 0 or more", n))
	}
	if h == nil {
		h = func(context.Context, *Error) error { return nil }
	}
	return ErrorPolicy{&policy{name: fmt.Sprintf("Budget(%d)", n), handle: h, budget: n}}
}

// errHandlerCutShort is what failed returns when a Handle or Budget handler
// failed because the run was ending (with the context's error or the run's
// cause, once the run is cancelled): the handler was cut short, as a call
// is, so the item's fate is unknown and its acknowledgement is abandoned,
// not failed.
var errHandlerCutShort = errors.New("sluice: handler cut short")

// handler is a Handle or Budget policy in one run of one stage.
type handler struct {
	p      *policy
	mu     sync.Mutex
	failed int
}

// handle applies h to e under the lock; a non-nil result ends the run.
// returned reports that err is what h returned (not the budget's error, nor
// a panic of h's): only such an error can say that h was cut short.
func (h *handler) handle(ctx context.Context, e *Error) (err error, returned bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failed++
	if h.p.budget >= 0 && h.failed > h.p.budget {
		return fmt.Errorf("%w: %d failed items in stage %q (budget %d); last: %w", ErrBudget, h.failed, e.Stage, h.p.budget, e), false
	}
	if rec := guard.Call(func() { err = h.p.handle(ctx, e) }); rec != nil {
		return &Error{Stage: e.Stage, Index: e.Index, Input: e.Input, Attempts: e.Attempts, Err: panicError(rec)}, false
	}
	return err, true
}

// failed applies the stage's policy to an item error. It returns the error
// to send downstream in the item's place (nil: the item is dropped), or the
// error with which the policy ends the run (the caller fails the run with
// it, see stepper.failRun, and stops), or errHandlerCutShort.
func (c *config) failed(r *run, e *Error) (forward *Error, end error) {
	switch {
	case c.policy == Forward:
		return e, nil
	case c.handler != nil:
		if err, returned := c.handler.handle(r.ctx, e); err != nil {
			if returned && r.ending() && r.endedBy(err) {
				return nil, errHandlerCutShort
			}
			if returned && IsStop(err) {
				// The run's failure must not read as a stop to a callback
				// that hands it on from a run of its own (see IsStop).
				return nil, &Error{Stage: e.Stage, Index: e.Index, Input: e.Input, Attempts: e.Attempts, Err: err}
			}
			return nil, err
		}
		return nil, nil
	default:
		return nil, e
	}
}
