package bench

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// BenchmarkSink: Map (four workers) into each sink, beside the hand-written
// pool with a plain consumer loop.
func BenchmarkSink(b *testing.B) {
	want := sumOf(items, double)
	s := stage.Map(source.Slice(input), mapDouble, stage.Workers(shapeWorkers))
	b.Run("hand-written", func(b *testing.B) {
		measure(b, items, func() { check(b, HandMap(FeedSlice(input), shapeWorkers, double), want, nil) })
	})
	b.Run("Reduce", func(b *testing.B) {
		measure(b, items, func() { got, err := sink.Reduce(ctx, s, 0, add); check(b, got, want, err) })
	})
	b.Run("Count", func(b *testing.B) {
		measure(b, items, func() { n, err := sink.Count(ctx, s); check(b, n, items, err) })
	})
	b.Run("ForEach", func(b *testing.B) {
		measure(b, items, func() {
			got := 0
			err := sink.ForEach(ctx, s, func(_ context.Context, v int) error { got += v; return nil })
			check(b, got, want, err)
		})
	})
	b.Run("All", func(b *testing.B) {
		measure(b, items, func() {
			got := 0
			var err error
			for v, e := range sink.All(ctx, s) {
				got, err = got+v, e
			}
			check(b, got, want, err)
		})
	})
	b.Run("Slice", func(b *testing.B) {
		measure(b, items, func() {
			vs, err := sink.Slice(ctx, s)
			got := 0
			for _, v := range vs {
				got += v
			}
			check(b, got, want, err)
		})
	})
	b.Run("Chan", func(b *testing.B) {
		measure(b, items, func() {
			out := make(chan int)
			done := make(chan int)
			go func() { done <- Sum(out) }()
			err := sink.Chan(ctx, s, out)
			close(out)
			check(b, <-done, want, err)
		})
	})
	b.Run("First", func(b *testing.B) {
		measure(b, 1, func() {
			_, ok, err := sink.First(ctx, s)
			if !ok || err != nil {
				b.Fatal(ok, err)
			}
		})
	})
}
