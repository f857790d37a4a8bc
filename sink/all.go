package sink

import (
	"context"
	"iter"

	"github.com/sluicedev/sluice/stage"
)

// All returns an iterator that runs s and yields each item as it arrives:
// (v, nil) for a value, (zero, err) for a forwarded error. If the run fails,
// the last pair is (zero, err) with the error that ended it. Each range over
// the iterator runs s anew.
//
// Breaking out of the loop stops the run; the loop statement ends only once
// every goroutine of the run has exited. Whatever the run would have
// reported after the break (an error of an item the loop never saw) is
// dropped: the loop saw everything it asked for. The item of the loop body
// that breaks counts as committed (its acknowledgement, if any, is
// released, see stage.Ack). A panic in the loop body stops the run the same
// way and then continues; its item is not committed, and its
// acknowledgement is not told (a broker redelivers it).
func All[T any](ctx context.Context, s stage.Stream[T]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		broke := false
		err := stage.Run(ctx, s, func(_ context.Context, v T, err error) error {
			if !yield(v, err) {
				broke = true
				return stage.ErrStop
			}
			return nil
		})
		if err != nil && !broke {
			var zero T
			yield(zero, err)
		}
	}
}
