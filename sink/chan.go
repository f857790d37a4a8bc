package sink

import (
	"context"

	"github.com/sluicedev/sluice/stage"
)

// Chan runs s and sends its values on out, in arrival order, blocking while
// out is full. It never closes out: the caller owns it. If the run fails
// while Chan waits on out, Chan stops waiting and returns the error that
// ended the run. Forwarded errors are not sent; they are returned in a
// *[ForwardedError]. A nil out panics.
func Chan[T any](ctx context.Context, s stage.Stream[T], out chan<- T) error {
	if out == nil {
		panic("sluice: sink.Chan: nil channel")
	}
	// The caller's Done too: a context type of the caller's reaches the
	// run's context a moment after its Done channel closed (see stage's
	// Cancellation), and a reader waiting on out would take a value after
	// that. (Nil: stage.Run panics with its own message.)
	var callerDone <-chan struct{}
	if ctx != nil {
		callerDone = ctx.Done()
	}
	var fwd forwarded
	err := stage.Run(ctx, s, func(ctx context.Context, v T, err error) error {
		if err != nil {
			fwd.add(err)
			return nil
		}
		select {
		case out <- v:
			return nil
		case <-ctx.Done():
			// The run already has its error. Not the cause: one that is
			// (or wraps) stage.ErrStop would read as the callback's stop.
			return ctx.Err()
		case <-callerDone:
			// The run is ending (stage.Run takes this for the commit
			// cut short) and returns the caller's own error.
			return context.Canceled
		}
	})
	return fwd.result(err)
}
