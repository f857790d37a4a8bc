package bench

import (
	"context"
	"runtime"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// items is the input size of the no-op benchmarks.
const items = 100_000

var input = ints(items)

// ints is 1..n: no item is 0, so that every item counts in a checksum.
func ints(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i + 1
	}
	return xs
}

// sumOf is the checksum of f over 1..n: a lost or repeated item changes it.
func sumOf(n int, f func(int) int) int {
	s := 0
	for i := 1; i <= n; i++ {
		s += f(i)
	}
	return s
}

// fold is the order-sensitive checksum of an ordered run: any two outputs
// swapped change it.
func fold(h, y int) int { return h*31 + y }

// foldOf is fold over f of 1..n, in order.
func foldOf(n int, f func(int) int) int {
	h := 0
	for i := 1; i <= n; i++ {
		h = fold(h, f(i))
	}
	return h
}

var ctx = context.Background()

func double(x int) int { return 2 * x }

func mapDouble(_ context.Context, x int) (int, error) { return 2 * x, nil }

func add(a, b int) int { return a + b }

// total runs s and sums its values.
func total(s stage.Stream[int]) (int, error) { return sink.Reduce(ctx, s, 0, add) }

// totalInOrder runs s and folds its values in the order they come (see
// fold): the checksum of an ordered run.
func totalInOrder(s stage.Stream[int]) (int, error) { return sink.Reduce(ctx, s, 0, fold) }

// measure runs run once per benchmark iteration and reports ns/item,
// allocs/item and B/item for n items per run (setup included, spread over
// the items).
func measure(b *testing.B, n int, run func()) {
	b.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		run()
	}
	runtime.ReadMemStats(&after)
	per := float64(b.N * n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/item")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/item")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/item")
	b.ReportMetric(0, "ns/op")
}

// check fails the benchmark if got is not want.
func check(b *testing.B, got, want int, err error) {
	if got != want || err != nil {
		b.Helper() // only here: Helper walks the stack, a cost a small run would measure
		b.Fatalf("got %d, %v; want %d, nil", got, err, want)
	}
}
