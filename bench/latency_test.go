package bench

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// reportMedian reports the median of ds in µs under name.
func reportMedian(b *testing.B, ds []time.Duration, name string) {
	b.Helper()
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds())/1e3, name)
	b.ReportMetric(0, "ns/op")
}

// endless is a source that never ends.
func endless() stage.Stream[int] {
	return source.Func(func(context.Context) (int, error) { return 1, nil })
}

// BenchmarkBreak: the time from a break out of sink.All to the loop
// statement ending, which is when every goroutine of the run has exited.
func BenchmarkBreak(b *testing.B) {
	s := stage.Map(endless(), mapDouble, stage.Workers(shapeWorkers))
	var ds []time.Duration
	for b.Loop() {
		var start time.Time
		n := 0
		for range sink.All(ctx, s) {
			if n++; n == 1000 {
				start = time.Now()
				break
			}
		}
		ds = append(ds, time.Since(start))
	}
	reportMedian(b, ds, "µs-break-to-return")
}

var errFail = errors.New("fail")

// BenchmarkFailFast: the time from a function returning the failing item's
// error to the sink returning with every goroutine of the run joined.
func BenchmarkFailFast(b *testing.B) {
	var calls, failedAt atomic.Int64
	s := stage.Map(endless(), func(_ context.Context, x int) (int, error) {
		if calls.Add(1) == 1000 {
			failedAt.Store(time.Now().UnixNano())
			return 0, errFail
		}
		return x, nil
	}, stage.Workers(shapeWorkers))
	var ds []time.Duration
	for b.Loop() {
		calls.Store(0)
		if _, err := sink.Count(ctx, s); !errors.Is(err, errFail) {
			b.Fatal(err)
		}
		ds = append(ds, time.Duration(time.Now().UnixNano()-failedAt.Load()))
	}
	reportMedian(b, ds, "µs-fail-to-return")
}

// Latency-bound: 2,000 items that each sleep 1ms, 50 workers. The ideal is
// items × 1ms / workers; efficiency is ideal / actual.
const (
	latItems   = 2_000
	latWorkers = 50
	latSleep   = time.Millisecond
)

func reportEfficiency(b *testing.B) {
	ideal := latItems * latSleep / latWorkers
	b.ReportMetric(float64(ideal)/(float64(b.Elapsed())/float64(b.N)), "efficiency")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkLatencyBound(b *testing.B) {
	in := ints(latItems)
	want := sumOf(latItems, double)
	slow := func(x int) int { time.Sleep(latSleep); return 2 * x }
	b.Run("hand-written", func(b *testing.B) {
		for b.Loop() {
			check(b, HandMap(FeedSlice(in), latWorkers, slow), want, nil)
		}
		reportEfficiency(b)
	})
	s := stage.Map(source.Slice(in), func(_ context.Context, x int) (int, error) { return slow(x), nil }, stage.Workers(latWorkers))
	b.Run("sluice", func(b *testing.B) {
		for b.Loop() {
			got, err := total(s)
			check(b, got, want, err)
		}
		reportEfficiency(b)
	})
}

// peakHeap runs a Map over n items from source.Func and returns the largest
// live heap seen, sampled every 50,000 items by the sink.
func peakHeap(n int) (uint64, error) {
	var peak uint64
	var ms heapGauge
	i := 0
	src := source.Func(func(context.Context) (int, error) {
		if i == n {
			return 0, io.EOF
		}
		i++
		return i, nil
	})
	seen := 0
	err := sink.ForEach(ctx, stage.Map(src, mapDouble, stage.Workers(shapeWorkers)), func(context.Context, int) error {
		if seen++; seen%50_000 == 0 {
			peak = max(peak, ms.heapInUse())
		}
		return nil
	})
	return peak, err
}

// BenchmarkPeakHeap reports the peak heap of a Map over 1M and 10M items from
// source.Func: bounded memory means the two are the same.
func BenchmarkPeakHeap(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var peak uint64
			for b.Loop() {
				p, err := peakHeap(n)
				if err != nil {
					b.Fatal(err)
				}
				peak = max(peak, p)
			}
			b.ReportMetric(float64(peak)/(1<<20), "MiB-peak-heap")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestPeakHeapDoesNotGrowWithInput is the same check, smaller, as a test: ten
// times the input may not take much more memory.
func TestPeakHeapDoesNotGrowWithInput(t *testing.T) {
	small, err := peakHeap(100_000)
	if err != nil {
		t.Fatal(err)
	}
	large, err := peakHeap(1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	if large > 2*small+4<<20 {
		t.Fatalf("peak heap %d B over 1M items, %d B over 100k: memory grows with the input", large, small)
	}
	t.Logf("peak heap: %d KiB over 100k items, %d KiB over 1M", small>>10, large>>10)
}
