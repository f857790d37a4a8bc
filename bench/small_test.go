package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// BenchmarkSmallRun: a whole run per request — sink.Slice over a Map (or
// Concurrent) of n items with 4 workers, built anew each time, under
// context.Background() (and, for "request", a context that can be
// cancelled) — beside the hand-written fan-out. ns/run and allocs/run are the cost of one run.
func BenchmarkSmallRun(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1, 10, 100, 1000} {
		in := ints(n)
		want := sumOf(n, double)
		b.Run(fmt.Sprintf("n=%d/hand-written", n), func(b *testing.B) {
			measureRuns(b, func() { checkSlice(b, FanOut(in, 4, double), n, want, nil) })
		})
		b.Run(fmt.Sprintf("n=%d/sluice-map", n), func(b *testing.B) {
			measureRuns(b, func() {
				got, err := sink.Slice(ctx, stage.Map(source.Slice(in), mapDouble, stage.Workers(4)))
				checkSlice(b, got, n, want, err)
			})
		})
		b.Run(fmt.Sprintf("n=%d/sluice-map-ordered", n), func(b *testing.B) {
			// The README's per-request snippet: results in input order.
			measureRuns(b, func() {
				got, err := sink.Slice(ctx, stage.Map(source.Slice(in), mapDouble, stage.Workers(4), stage.Ordered()))
				checkSlice(b, got, n, want, err)
				checkOrder(b, got)
			})
		})
		b.Run(fmt.Sprintf("n=%d/sluice-map-request", n), func(b *testing.B) {
			// Under a request's context, which can be cancelled.
			request, cancel := context.WithCancel(ctx)
			defer cancel()
			measureRuns(b, func() {
				got, err := sink.Slice(request, stage.Map(source.Slice(in), mapDouble, stage.Workers(4)))
				checkSlice(b, got, n, want, err)
			})
		})
		b.Run(fmt.Sprintf("n=%d/sluice-concurrent", n), func(b *testing.B) {
			measureRuns(b, func() {
				tasks := make([]func(context.Context) (int, error), n)
				for i, x := range in {
					tasks[i] = func(context.Context) (int, error) { return double(x), nil }
				}
				got, err := sink.Slice(ctx, stage.Concurrent(source.Slice(tasks), stage.Workers(4)))
				checkSlice(b, got, n, want, err)
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

// checkSlice fails the benchmark unless got holds n results summing to want.
func checkSlice(b *testing.B, got []int, n, want int, err error) {
	check(b, sliceSum(got, n), want, err)
}

// checkOrder fails the benchmark unless got is double of 1..len(got), in
// that order (the inputs are 1..n).
func checkOrder(b testing.TB, got []int) {
	for i, v := range got {
		if v != double(i+1) {
			b.Fatalf("result %d is %d, want %d: out of input order", i, v, double(i+1))
		}
	}
}

// sliceSum is the sum of a run's n results, or -1 if there are not n of
// them: no sum of results over 1..n is negative.
func sliceSum(got []int, n int) int {
	if len(got) != n {
		return -1
	}
	s := 0
	for _, v := range got {
		s += v
	}
	return s
}

// BenchmarkManySmallRuns: 1,000 goroutines at once, each running 10 runs of
// 10 items in a loop (a service under load, fanning out per request),
// beside the hand-written fan-out. ns/run is wall time over every run of
// every goroutine; B/run is what a run allocates (a run in flight also holds
// its fused stage's recycled state and its batch: see bench/README.md).
func BenchmarkManySmallRuns(b *testing.B) {
	const callers, runsEach, n = 1000, 10, 10
	ctx := context.Background()
	in := ints(n)
	want := sumOf(n, double)
	for _, impl := range []struct {
		name string
		run  func() ([]int, error)
	}{
		{"hand-written", func() ([]int, error) { return FanOut(in, 4, double), nil }},
		{"sluice-map", func() ([]int, error) {
			return sink.Slice(ctx, stage.Map(source.Slice(in), mapDouble, stage.Workers(4)))
		}},
	} {
		b.Run(impl.name, func(b *testing.B) {
			var bad atomic.Int64
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				var wg sync.WaitGroup
				for range callers {
					wg.Go(func() {
						for range runsEach {
							got, err := impl.run()
							if err != nil || sliceSum(got, n) != want {
								bad.Add(1)
							}
						}
					})
				}
				wg.Wait()
			}
			if bad.Load() > 0 {
				b.Fatalf("%d runs went wrong", bad.Load())
			}
			runtime.ReadMemStats(&after)
			runs := float64(b.N * callers * runsEach)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/runs, "ns/run")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/runs, "B/run")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/runs, "allocs/run")
			b.ReportMetric(0, "ns/op")
		})
	}
}
