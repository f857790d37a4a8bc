package stage_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview86SingleItemChains: a cheap stage whose input is known to hold
// a single item "calls the function in its consumer's goroutine from the
// start, whatever the call costs, and starts no goroutine of its own" (an
// Ordered one too, for a consumer of one goroutine): a chain of such Maps
// over a one-item slice runs every call in the sink's goroutine and starts
// no goroutine at all.
func TestReview86SingleItemChains(t *testing.T) {
	r86singleChains(t, []bool{false})
}

// TestReview86SingleItemOrderedChains: the same with Ordered stages. An
// Ordered stage over a one-item slice, whose consumer is another stage of
// Workers(n>1) over that one-item input (which runs its one call in the
// sink's goroutine, so pulls from one goroutine), runs in the sink's
// goroutine too. (It started a goroutine of its own while the consumer
// opened its input for its Workers count rather than for its one item.)
func TestReview86SingleItemOrderedChains(t *testing.T) {
	r86singleChains(t, []bool{true})
}

func r86singleChains(t *testing.T, orders []bool) {
	for _, w := range []int{1, 2, 4, 64, 100} {
		for depth := 1; depth <= 3; depth++ {
			for _, ordered := range orders {
				label := fmt.Sprintf("w=%d/depth=%d/ordered=%v", w, depth, ordered)
				runcheck.Run(t, label, func() {
					sinkG, before := runcheck.Goroutines()
					var problem string
					s := source.Slice([]int{7})
					for k := range depth {
						opts := []stage.Option{stage.Workers(w)}
						if ordered {
							opts = append(opts, stage.Ordered())
						}
						s = stage.Map(s, func(_ context.Context, v int) (int, error) {
							if g, _ := runcheck.Goroutines(); g != sinkG && problem == "" {
								problem = fmt.Sprintf("stage %d called on goroutine %d, not the sink's %d", k, g, sinkG)
							}
							return v + 1, nil
						}, opts...)
					}
					var got []int
					err := sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
						if leaked := runcheck.LeakedSince(before); len(leaked) > 0 && problem == "" {
							problem = fmt.Sprintf("%d goroutines started: %v", len(leaked), leaked[0])
						}
						got = append(got, v)
						return nil
					})
					if err != nil || len(got) != 1 || got[0] != 7+depth {
						t.Errorf("%s: got %v, %v", label, got, err)
					}
					if problem != "" {
						t.Errorf("%s: %s", label, problem)
					}
				})
			}
		}
	}
}
