package sink

import (
	"errors"

	"github.com/sluicedev/sluice/internal/guard"

	"github.com/sluicedev/sluice/stage"
)

// result joins the error that ended the run (first, so that errors.As finds
// it before any forwarded one) and the forwarded errors; a single error is
// returned as it is.
func result(forwarded []error, end error) error {
	switch {
	case len(forwarded) == 0:
		return end
	case end == nil && len(forwarded) == 1:
		return forwarded[0]
	case end == nil:
		return errors.Join(forwarded...)
	}
	return errors.Join(append([]error{end}, forwarded...)...)
}

// callback runs a user callback of the sink kind for item idx, turning its
// error or panic into a *stage.Error. It allocates only on failure.
func callback[T any](kind string, idx int, input T, f func() error) error {
	var err error
	if rec := guard.Call(func() { err = f() }); rec != nil {
		err = &stage.PanicError{Value: rec.Value, Stack: rec.Stack}
	}
	if err != nil {
		return &stage.Error{Stage: kind, Index: idx, Input: input, Attempts: 1, Err: err}
	}
	return nil
}
