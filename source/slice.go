package source

import (
	"context"
	"io"

	"github.com/sluicedev/sluice/stage"
)

// Slice returns a stream of the items of items, in order. Each run yields
// them all again from the first. Slice does not copy items: changing the
// slice while a run reads it is a data race.
func Slice[T any](items []T) stage.Stream[T] {
	return stage.Source(func(context.Context) (func(context.Context) (T, error), func()) {
		i := 0
		return func(context.Context) (T, error) {
			if i == len(items) {
				var zero T
				return zero, io.EOF
			}
			i++
			return items[i-1], nil
		}, nil
	})
}
