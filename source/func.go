package source

import (
	"context"

	"github.com/sluicedev/sluice/stage"
)

// Func returns a stream of the values next produces. The run calls next only
// when a stage is ready for an item, never concurrently, and with the run's
// context. next returns io.EOF to end the stream (the value returned with
// it is not delivered; io.EOF itself, as an
// io.Reader does: an error that wraps it is a failure, so that a truncated
// input is never taken for a complete one); any other error ends the run
// with a *stage.SourceError after the items produced before it went
// through. A panic in next becomes a *stage.PanicError in a
// *stage.SourceError. Each run calls the same next (runs at the same time
// call it concurrently): a generator that should restart per run belongs in
// [stage.Source]. A nil next panics.
//
// next may wait (it is a waiting source): a select on a queue, a request,
// a message from a broker, as long as it honours ctx. If it never waits,
// wrap the stream in [stage.NeverWaits] for the faster path.
func Func[T any](next func(ctx context.Context) (T, error)) stage.Stream[T] {
	if next == nil {
		panic("sluice: source.Func: nil function")
	}
	return stage.Source(func(context.Context) (func(context.Context) (T, error), func()) {
		return next, nil
	})
}
