package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// BenchmarkSmallRun: a whole run per request — sink.Slice over a Map (or
// Concurrent) of n items with 4 workers, built anew each time — beside the
// hand-written fan-out. ns/run and allocs/run are the cost of one run.
func BenchmarkSmallRun(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1, 10, 100, 1000} {
		in := ints(n)
		want := sumOf(n, double)
		b.Run(fmt.Sprintf("n=%d/hand-written", n), func(b *testing.B) {
			measureRuns(b, func() { checkSlice(b, FanOut(in, 4, double), want, nil) })
		})
		b.Run(fmt.Sprintf("n=%d/sluice-map", n), func(b *testing.B) {
			measureRuns(b, func() {
				got, err := sink.Slice(ctx, stage.Map(source.Slice(in), mapDouble, stage.Workers(4)))
				checkSlice(b, got, want, err)
			})
		})
		b.Run(fmt.Sprintf("n=%d/sluice-concurrent", n), func(b *testing.B) {
			measureRuns(b, func() {
				tasks := make([]func(context.Context) (int, error), n)
				for i, x := range in {
					tasks[i] = func(context.Context) (int, error) { return double(x), nil }
				}
				got, err := sink.Slice(ctx, stage.Concurrent(source.Slice(tasks), stage.Workers(4)))
				checkSlice(b, got, want, err)
			})
		})
	}
}

// measureRuns reports the cost of one run.
func measureRuns(b *testing.B, run func()) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/run")
	b.ReportMetric(0, "ns/op")
}

// checkSlice fails the benchmark unless got sums to want.
func checkSlice(b *testing.B, got []int, want int, err error) {
	b.Helper()
	s := 0
	for _, v := range got {
		s += v
	}
	check(b, s, want, err)
}
