package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// tailLatencies: per item, 1–20 ms, and 200 ms for 1% of the items (a
// slow backend), the same every run.
func tailLatencies(n int) []time.Duration {
	rng := rand.New(rand.NewPCG(1, 2))
	d := make([]time.Duration, n)
	for i := range d {
		d[i] = time.Duration(1+rng.IntN(20)) * time.Millisecond
		if rng.IntN(100) == 0 {
			d[i] = 200 * time.Millisecond
		}
	}
	return d
}

// BenchmarkOrderedTail: 32 workers call a backend whose latency is 1–20 ms
// with a 1% tail of 200 ms. Unordered, the tail costs little; Ordered, a
// slow item at the head of the reorder window holds back everything behind
// it once the window is full. The window the Ordered doc tells users to
// set (Buffer ≈ workers × slowest / typical latency, here 32 × 200 / 10)
// keeps Ordered near the unordered throughput. Reports items/s.
func BenchmarkOrderedTail(b *testing.B) {
	const workers, n = 32, 3000
	lat := tailLatencies(n)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	call := func(_ context.Context, i int) (int, error) {
		time.Sleep(lat[i])
		return i, nil
	}
	cases := []struct {
		name string
		opts []stage.Option
	}{
		{"unordered", nil},
		{"ordered", []stage.Option{stage.Ordered()}},
		{fmt.Sprintf("ordered-buffer=%d", workers*200/10), []stage.Option{stage.Ordered(), stage.Buffer(workers * 200 / 10)}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				start := time.Now()
				got, err := sink.Count(ctx, stage.Map(source.Slice(idx), call, append([]stage.Option{stage.Workers(workers)}, c.opts...)...))
				if err != nil || got != n {
					b.Fatalf("%d, %v", got, err)
				}
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "items/s")
			}
		})
	}
}
