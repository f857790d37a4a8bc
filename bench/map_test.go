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
	want, wantInOrder := sumOf(items, double), foldOf(items, double)
	for _, w := range workerCounts {
		b.Run(fmt.Sprintf("workers=%d/hand-written", w), func(b *testing.B) {
			measure(b, items, func() { check(b, HandMap(FeedSlice(input), w, double), want, nil) })
		})
		b.Run(fmt.Sprintf("workers=%d/parallel-loop", w), func(b *testing.B) {
			measure(b, items, func() { check(b, ParallelLoop(input, w, double), want, nil) })
		})
		for _, ordered := range []bool{false, true} {
			name, opts, run, want := "sluice", []stage.Option{stage.Workers(w)}, total, want
			if ordered {
				name, opts, run, want = "sluice-ordered", append(opts, stage.Ordered()), totalInOrder, wantInOrder
			}
			s := stage.Map(source.Slice(input), mapDouble, opts...)
			b.Run(fmt.Sprintf("workers=%d/%s", w, name), func(b *testing.B) {
				measure(b, items, func() { got, err := run(s); check(b, got, want, err) })
			})
		}
	}
}

// workItems is the input size of the benchmarks whose function works 50µs.
const workItems = 2_000

// busy50 keeps the processor busy for 50µs, then doubles x. (A 50µs
// time.Sleep is no use here: on the development machine a sleep that short
// takes about a millisecond.)
func busy50(x int) int {
	for start := time.Now(); time.Since(start) < 50*time.Microsecond; {
	}
	return 2 * x
}

// BenchmarkMapWork: a Map whose function works for 50µs, where the
// pipeline's own cost should vanish behind the work (two cores cap the
// speed-up at two).
func BenchmarkMapWork(b *testing.B) {
	in := ints(workItems)
	want, wantInOrder := sumOf(workItems, double), foldOf(workItems, double)
	slow := busy50
	for _, w := range workerCounts {
		b.Run(fmt.Sprintf("workers=%d/hand-written", w), func(b *testing.B) {
			measure(b, workItems, func() { check(b, HandMap(FeedSlice(in), w, slow), want, nil) })
		})
		for _, ordered := range []bool{false, true} {
			name, opts, run, want := "sluice", []stage.Option{stage.Workers(w)}, total, want
			if ordered {
				name, opts, run, want = "sluice-ordered", append(opts, stage.Ordered()), totalInOrder, wantInOrder
			}
			s := stage.Map(source.Slice(in), func(_ context.Context, x int) (int, error) { return slow(x), nil }, opts...)
			b.Run(fmt.Sprintf("workers=%d/%s", w, name), func(b *testing.B) {
				measure(b, workItems, func() { got, err := run(s); check(b, got, want, err) })
			})
		}
	}
}
