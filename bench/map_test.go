package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var workerCounts = []int{1, 2, 4, 8, 16, 32}

// BenchmarkMap: a no-op Map over a slice, unordered and Ordered, across
// worker counts, beside the hand-written pool and the channel-free
// parallel loop.
func BenchmarkMap(b *testing.B) {
	want := sumOf(items, double)
	for _, w := range workerCounts {
		b.Run(fmt.Sprintf("workers=%d/hand-written", w), func(b *testing.B) {
			measure(b, items, func() { check(b, handMap(feedSlice(input), w, double), want, nil) })
		})
		b.Run(fmt.Sprintf("workers=%d/parallel-loop", w), func(b *testing.B) {
			measure(b, items, func() { check(b, parallelLoop(input, w, double), want, nil) })
		})
		for _, ordered := range []bool{false, true} {
			name, opts := "sluice", []stage.Option{stage.Workers(w)}
			if ordered {
				name, opts = "sluice-ordered", append(opts, stage.Ordered())
			}
			s := stage.Map(source.Slice(input), mapDouble, opts...)
			b.Run(fmt.Sprintf("workers=%d/%s", w, name), func(b *testing.B) {
				measure(b, items, func() { got, err := total(s); check(b, got, want, err) })
			})
		}
	}
}

// sleepItems is the input size of the benchmarks whose function sleeps.
const sleepItems = 2_000

// BenchmarkMapSleep: a Map whose function sleeps 50µs, where the pipeline's
// own cost should vanish behind the work.
func BenchmarkMapSleep(b *testing.B) {
	in := ints(sleepItems)
	want := sumOf(sleepItems, double)
	slow := func(x int) int { time.Sleep(50 * time.Microsecond); return 2 * x }
	for _, w := range workerCounts {
		b.Run(fmt.Sprintf("workers=%d/hand-written", w), func(b *testing.B) {
			measure(b, sleepItems, func() { check(b, handMap(feedSlice(in), w, slow), want, nil) })
		})
		for _, ordered := range []bool{false, true} {
			name, opts := "sluice", []stage.Option{stage.Workers(w)}
			if ordered {
				name, opts = "sluice-ordered", append(opts, stage.Ordered())
			}
			s := stage.Map(source.Slice(in), func(_ context.Context, x int) (int, error) { return slow(x), nil }, opts...)
			b.Run(fmt.Sprintf("workers=%d/%s", w, name), func(b *testing.B) {
				measure(b, sleepItems, func() { got, err := total(s); check(b, got, want, err) })
			})
		}
	}
}
