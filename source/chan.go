package source

import (
	"context"
	"io"

	"github.com/sluicedev/sluice/stage"
)

// Chan returns a stream of the values received from ch, until ch is closed.
// A value is received only when a stage is ready to work on it, so a run that
// stops early (an error, sink.First, a break) leaves the rest in ch: Chan never
// closes ch and never drains it. A receive is abandoned when the run ends. It
// is a waiting source, and [stage.Interruptible]: a cheap stage over it may
// take values that are ready in its consumer's goroutines. A nil ch panics.
func Chan[T any](ch <-chan T) stage.Stream[T] {
	if ch == nil {
		panic("sluice: source.Chan: nil channel")
	}
	return stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (T, error), func()) {
		return func(ctx context.Context) (T, error) {
			select { // a value ready: no need to look at ctx (cheaper)
			case v, ok := <-ch:
				if !ok {
					return v, io.EOF
				}
				return v, nil
			default:
			}
			select {
			case v, ok := <-ch:
				if !ok {
					return v, io.EOF
				}
				return v, nil
			case <-ctx.Done():
				var zero T
				return zero, context.Cause(ctx)
			}
		}, nil
	}))
}
