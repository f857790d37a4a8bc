package source

import "github.com/sluicedev/sluice/stage"

// Slice returns a stream of the items of items, in order. Each run yields
// them all again from the first. Slice does not copy items: changing the
// slice while a run reads it is a data race. It takes no lock per item (see
// [stage.Indexed]) and never waits, so cheap stages over it may run in
// their consumer's goroutines.
func Slice[T any](items []T) stage.Stream[T] {
	return stage.Indexed(len(items), func(i int) T { return items[i] })
}
