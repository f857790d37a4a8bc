package sink

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicedev/sluice/internal/guard"

	"github.com/sluicedev/sluice/stage"
)

// SampleSize is how many forwarded errors a [ForwardedError] keeps.
const SampleSize = 8

// ForwardedError reports the errors that stages with the Forward policy sent
// to a sink that returns them at the end (every sink but [All] and
// [First]): how many arrived, and the first [SampleSize] of them, so that a
// run with a million failed rows holds eight errors, not a million.
// errors.Is and errors.As see through it to each kept error.
type ForwardedError struct {
	Count  int     // forwarded errors the sink received
	Sample []error // the first min(Count, SampleSize) of them, in arrival order
}

// Error reports the count and the first error (only the count if Sample
// is empty, as in a ForwardedError made by hand).
func (e *ForwardedError) Error() string {
	switch {
	case len(e.Sample) == 0:
		return fmt.Sprintf("sluice: %d forwarded errors", e.Count)
	case e.Count == 1:
		return fmt.Sprint(e.Sample[0])
	}
	return fmt.Sprintf("sluice: %d forwarded errors, the first: %v", e.Count, e.Sample[0])
}

// Unwrap returns the kept errors.
func (e *ForwardedError) Unwrap() []error { return e.Sample }

// forwarded collects a sink's forwarded errors; the zero value has none.
type forwarded struct{ e *ForwardedError }

func (f *forwarded) add(err error) {
	if f.e == nil {
		f.e = &ForwardedError{}
	}
	f.e.Count++
	if len(f.e.Sample) < SampleSize {
		f.e.Sample = append(f.e.Sample, err)
	}
}

// result is what a sink returns: the error that ended the run, or the
// forwarded errors, or both joined (the ending error first, so that
// errors.As finds it before any forwarded one).
func (f *forwarded) result(end error) error {
	switch {
	case f.e == nil:
		return end
	case end == nil:
		return f.e
	}
	return errors.Join(end, f.e)
}

// runCalls runs s and calls f for each value, one call at a time, for a
// sink of the kind given: what is forwarded goes to fwd, and an error or
// panic of f ends the run with a *stage.Error whose Index is the item's
// position among everything the sink received, forwarded errors included
// (as a stage counts them). It allocates only on failure.
func runCalls[T any](ctx context.Context, s stage.Stream[T], kind string, fwd *forwarded, f func(ctx context.Context, v T) error) error {
	idx := -1 // the position of the item in hand
	return stage.Run(ctx, s, func(ctx context.Context, v T, err error) error {
		idx++
		if err != nil {
			fwd.add(err)
			return nil
		}
		if rec := guard.Call(func() { err = f(ctx, v) }); rec != nil {
			err = &stage.PanicError{Value: rec.Value, Stack: rec.Stack}
		}
		if err != nil && !stage.IsStop(err) { // IsStop contains a panic in err's methods
			return &stage.Error{Stage: kind, Index: idx, Input: v, Attempts: 1, Err: err}
		}
		return err // nil, or a stop: as it is, for Run to see (see stage.IsStop)
	})
}
