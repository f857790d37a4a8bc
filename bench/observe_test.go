package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// BenchmarkObserve is the cost of an observer: a no-op Map with nothing
// attached, with stage.Stats, and with a Stats at each of two observers,
// beside the hand-written pool. Without an observer a stage does nothing
// extra per item; with one, two clock reads and two observer calls.
func BenchmarkObserve(b *testing.B) {
	want := sumOf(items, double)
	for _, w := range []int{1, 4} {
		b.Run(fmt.Sprintf("workers=%d/hand-written", w), func(b *testing.B) {
			measure(b, items, func() { check(b, HandMap(FeedSlice(input), w, double), want, nil) })
		})
		s := stage.Map(source.Slice(input), mapDouble, stage.Workers(w))
		var one, two stage.Stats
		for _, c := range []struct {
			name string
			ctx  func() context.Context
		}{
			{"sluice", func() context.Context { return ctx }},
			{"sluice+stats", func() context.Context { return stage.Observe(ctx, &one) }},
			{"sluice+2stats", func() context.Context { return stage.Observe(stage.Observe(ctx, &one), &two) }},
		} {
			octx := c.ctx()
			b.Run(fmt.Sprintf("workers=%d/%s", w, c.name), func(b *testing.B) {
				measure(b, items, func() {
					got, err := sink.Reduce(octx, s, 0, add)
					check(b, got, want, err)
				})
			})
		}
	}
}
