package bench

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestNoAllocationPerItem checks the zero allocs/item of the benchmarks as a
// test: a run over 100 times the items allocates about the same.
func TestNoAllocationPerItem(t *testing.T) {
	for _, opts := range [][]stage.Option{
		{stage.Workers(1)},
		{stage.Workers(4)},
		{stage.Workers(4), stage.Ordered()},
		{stage.Workers(4), stage.Buffer(2)},
	} {
		allocs := func(n int) float64 {
			s := stage.Map(source.Slice(input[:n]), mapDouble, opts...)
			return testing.AllocsPerRun(2, func() {
				if _, err := total(stage.Filter(s, func(_ context.Context, x int) (bool, error) { return x >= 0, nil }, opts...)); err != nil {
					t.Fatal(err)
				}
			})
		}
		small, large := allocs(items/100), allocs(items)
		if perItem := (large - small) / float64(items-items/100); perItem > 0.01 {
			t.Errorf("%d options: %.0f allocations over %d items, %.0f over %d: %.3f per item, want 0", len(opts), small, items/100, large, items, perItem)
		}
	}
}
