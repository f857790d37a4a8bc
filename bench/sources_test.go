package bench

import (
	"context"
	"io"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// counter is a generator of 1..n.
func counter(n int) func() (int, bool) {
	i := 0
	return func() (int, bool) {
		if i == n {
			return 0, false
		}
		i++
		return i, true
	}
}

// BenchmarkSource: Map (four workers) over source.Func (as a source that
// may wait, the same with a Buffer of the worker count, and declared with
// stage.NeverWaits), source.Chan and source.Slice, beside the hand-written
// pool fed the same way (and, for the channel, a sequential receive loop:
// the floor of any consumer).
func BenchmarkSource(b *testing.B) {
	want := sumOf(items, double)
	w := stage.Workers(shapeWorkers)
	b.Run("func/hand-written", func(b *testing.B) {
		measure(b, items, func() { check(b, HandMap(FeedFunc(counter(items)), shapeWorkers, double), want, nil) })
	})
	for _, v := range []struct {
		name       string
		neverWaits bool
		opts       []stage.Option
	}{
		{"func/sluice", false, []stage.Option{w}},
		{"func/sluice-neverwaits", true, []stage.Option{w}},
		// Twice the read-ahead: the sink takes up to twice as many outputs
		// at each wake-up (see bench/README.md).
		{"func/sluice-buffer4", false, []stage.Option{w, stage.Buffer(shapeWorkers)}},
	} {
		neverWaits := v.neverWaits
		b.Run(v.name, func(b *testing.B) {
			measure(b, items, func() {
				next := counter(items)
				src := source.Func(func(context.Context) (int, error) {
					if x, ok := next(); ok {
						return x, nil
					}
					return 0, io.EOF
				})
				if neverWaits {
					src = stage.NeverWaits(src)
				}
				got, err := total(stage.Map(src, mapDouble, v.opts...))
				check(b, got, want, err)
			})
		})
	}
	b.Run("chan/hand-written", func(b *testing.B) {
		measure(b, items, func() { check(b, HandMap(FeedSlice(input), shapeWorkers, double), want, nil) })
	})
	// The floor under any consumer of an unbuffered channel fed by a
	// goroutine: one loop that receives and applies the function, no
	// workers. A pool can only beat it when the function costs more than
	// the receive.
	b.Run("chan/sequential-loop", func(b *testing.B) {
		measure(b, items, func() {
			got := 0
			for x := range FeedSlice(input) {
				got += double(x)
			}
			check(b, got, want, nil)
		})
	})
	b.Run("chan/sluice", func(b *testing.B) {
		measure(b, items, func() {
			got, err := total(stage.Map(source.Chan(FeedSlice(input)), mapDouble, w))
			check(b, got, want, err)
		})
	})
	wantInOrder := foldOf(items, double)
	b.Run("chan/sluice-ordered", func(b *testing.B) {
		measure(b, items, func() {
			got, err := totalInOrder(stage.Map(source.Chan(FeedSlice(input)), mapDouble, w, stage.Ordered()))
			check(b, got, wantInOrder, err)
		})
	})
	b.Run("slice/hand-written", func(b *testing.B) {
		measure(b, items, func() { check(b, HandMap(FeedSlice(input), shapeWorkers, double), want, nil) })
	})
	s := stage.Map(source.Slice(input), mapDouble, w)
	b.Run("slice/sluice", func(b *testing.B) {
		measure(b, items, func() { got, err := total(s); check(b, got, want, err) })
	})
}
