package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const items = 100_000

var input = func() []int {
	xs := make([]int, items)
	for i := range xs {
		xs[i] = i
	}
	return xs
}()

const wantSum = items * (items - 1) // sum of 2*x over the input

func double(x int) int { return 2 * x }

// measure runs the benchmark loop body run and reports ns/item, allocs/item
// and B/item (whole runs included: setup is spread over the items).
func measure(b *testing.B, run func()) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		run()
	}
	runtime.ReadMemStats(&after)
	n := float64(b.N * items)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/item")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/item")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, "B/item")
	b.ReportMetric(0, "ns/op")
}

func TestBaselineAndSluiceAgree(t *testing.T) {
	if got := handMap(input, 4, double); got != wantSum {
		t.Fatalf("hand-written sum %d, want %d", got, wantSum)
	}
	s := stage.Map(source.Slice(input), func(_ context.Context, x int) (int, error) { return double(x), nil })
	if got, err := sink.Reduce(context.Background(), s, 0, func(a, b int) int { return a + b }); got != wantSum || err != nil {
		t.Fatalf("sluice sum %d, %v; want %d", got, err, wantSum)
	}
}

// BenchmarkMap: a no-op Map over a slice source, unordered and ordered,
// across worker counts, beside the hand-written pool.
func BenchmarkMap(b *testing.B) {
	ctx := context.Background()
	for _, w := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("workers=%d/hand-written", w), func(b *testing.B) {
			measure(b, func() {
				if handMap(input, w, double) != wantSum {
					b.Fatal("wrong sum")
				}
			})
		})
		for _, ordered := range []bool{false, true} {
			name := "unordered"
			opts := []stage.Option{stage.Workers(w)}
			if ordered {
				name = "ordered"
				opts = append(opts, stage.Ordered())
			}
			s := stage.Map(source.Slice(input), func(_ context.Context, x int) (int, error) { return double(x), nil }, opts...)
			b.Run(fmt.Sprintf("workers=%d/sluice-%s", w, name), func(b *testing.B) {
				measure(b, func() {
					sum, err := sink.Reduce(ctx, s, 0, func(a, b int) int { return a + b })
					if sum != wantSum || err != nil {
						b.Fatal("wrong sum", sum, err)
					}
				})
			})
		}
	}
}
