package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// review82: random fused Ordered FlatMaps: many items with many outputs
// (beyond the window's 2×workers, so that goroutines stream theirs and the
// consumer's handle pushes its own at once), many with none, random call
// costs (places move to the handle and back), and a sink that may stop
// early (ErrStop) or cancel the run from its callback. Outputs in order,
// each item's outputs whole, no hang, no goroutine left.
func TestReview82RandomFlatMap(t *testing.T) {
	for seed := range 60 {
		rng := rand.New(rand.NewPCG(uint64(seed), 82))
		n := rng.IntN(400)
		w := 2 + rng.IntN(8)
		outs := make([]int, n)
		costs := make([]time.Duration, n)
		for i := range n {
			switch rng.IntN(8) {
			case 0:
				outs[i] = 0
			case 1:
				outs[i] = 2*w + 1 + rng.IntN(40)
			default:
				outs[i] = rng.IntN(3)
			}
			switch rng.IntN(10) {
			case 0:
				costs[i] = 100 * time.Microsecond
			case 1, 2:
				costs[i] = 30 * time.Microsecond
			}
		}
		var want []int
		for i := range n {
			for j := range outs[i] {
				want = append(want, i*1000+j)
			}
		}
		stopAt := -1 // index in want at which the sink stops
		mode := rng.IntN(3)
		if mode > 0 && len(want) > 0 {
			stopAt = rng.IntN(len(want))
		}
		srcKind := rng.IntN(3)
		label := fmt.Sprintf("seed=%d/n=%d/w=%d/mode=%d/stopAt=%d/src=%s", seed, n, w, mode, stopAt, r81sources[srcKind].name)
		s := stage.FlatMap(r81sources[srcKind].make(n), func(_ context.Context, v int) ([]int, error) {
			r81spin(costs[v])
			o := make([]int, outs[v])
			for j := range o {
				o[j] = v*1000 + j
			}
			return o, nil
		}, stage.Workers(w), stage.Ordered())
		var got []int
		var err error
		r81guard(t, label, func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var seen atomic.Int64
			err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				c := int(seen.Add(1)) - 1
				got = append(got, v)
				if c == stopAt {
					if mode == 1 {
						return stage.ErrStop
					}
					cancel()
				}
				return nil
			})
		})
		switch {
		case stopAt < 0 || mode == 1:
			if err != nil {
				t.Fatalf("%s: %v", label, err)
			}
		default:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("%s: %v", label, err)
			}
		}
		if stopAt < 0 {
			if e := r81equal(got, want); e != nil {
				t.Fatalf("%s: %v", label, e)
			}
			continue
		}
		if len(got) < stopAt+1 {
			t.Fatalf("%s: got %d values, stopped at %d", label, len(got), stopAt)
		}
		if e := r81prefix(got, want); e != nil {
			t.Fatalf("%s: %v", label, e)
		}
	}
}
