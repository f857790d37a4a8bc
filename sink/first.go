package sink

import (
	"context"

	"github.com/sluicedev/sluice/stage"
)

// First runs s until its first item arrives, then stops the run and returns
// once every goroutine has exited. It returns (v, true, nil) for a value,
// (zero, false, err) when the first item is a forwarded error or the run
// failed before any item, and (zero, false, nil) for an empty stream: always
// the first pair of `for v, err := range All(ctx, s) { ...; break }`, so
// what happens in the run after the first item (a worker that read ahead
// into a failing source, say) never changes it. Only the items the stages
// were already working on are computed; over a bare source, exactly one
// item is taken.
func First[T any](ctx context.Context, s stage.Stream[T]) (T, bool, error) {
	var (
		first T
		found bool
		fwd   error
	)
	err := stage.Run(ctx, s, func(_ context.Context, v T, err error) error {
		first, found, fwd = v, err == nil, err
		return stage.ErrStop
	})
	if err == nil {
		err = fwd
	}
	return first, found, err
}
