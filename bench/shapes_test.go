package bench

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const shapeWorkers = 4

// BenchmarkChain: map -> filter -> map, four workers each.
func BenchmarkChain(b *testing.B) {
	want := 0
	for x := range items {
		if (x+1)%2 == 0 {
			want += 3 * (x + 1)
		}
	}
	b.Run("hand-written", func(b *testing.B) {
		measure(b, items, func() { check(b, HandChain(FeedSlice(input), shapeWorkers), want, nil) })
	})
	w := stage.Workers(shapeWorkers)
	s := stage.Map(source.Slice(input), func(_ context.Context, x int) (int, error) { return x + 1, nil }, w)
	s = stage.Filter(s, func(_ context.Context, x int) (bool, error) { return x%2 == 0, nil }, w)
	s = stage.Map(s, func(_ context.Context, x int) (int, error) { return 3 * x, nil }, w)
	b.Run("sluice", func(b *testing.B) {
		measure(b, items, func() { got, err := total(s); check(b, got, want, err) })
	})
}

// BenchmarkFlatMap: each item becomes four; ns/item counts outputs.
func BenchmarkFlatMap(b *testing.B) {
	const fan = 4
	in := input[:items/fan]
	want := 0
	for _, x := range in {
		for k := range fan {
			want += x + k
		}
	}
	b.Run("hand-written", func(b *testing.B) {
		measure(b, items, func() { check(b, HandFlatMap(FeedSlice(in), shapeWorkers, fan), want, nil) })
	})
	s := stage.FlatMap(source.Slice(in), func(_ context.Context, x int) ([]int, error) {
		return []int{x, x + 1, x + 2, x + 3}, nil
	}, stage.Workers(shapeWorkers))
	b.Run("sluice", func(b *testing.B) {
		measure(b, items, func() { got, err := total(s); check(b, got, want, err) })
	})
}

// BenchmarkMerge: four slice sources merged, summed.
func BenchmarkMerge(b *testing.B) {
	quarter := input[:items/4]
	want := 4 * sumOf(items/4, func(x int) int { return x })
	b.Run("hand-written", func(b *testing.B) {
		measure(b, items, func() {
			check(b, HandMerge(quarter, quarter, quarter, quarter), want, nil)
		})
	})
	s := stage.Merge(source.Slice(quarter), source.Slice(quarter), source.Slice(quarter), source.Slice(quarter))
	b.Run("sluice", func(b *testing.B) {
		measure(b, items, func() { got, err := total(s); check(b, got, want, err) })
	})
}
