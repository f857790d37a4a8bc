package stage_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestContractApplyOldestItemEmitsDirectly: Apply doc: "With Ordered, ... once
// the item is the oldest in flight emit queues them directly". Item 0 is the
// oldest from the start: its emitted output must reach the sink while f is
// still running (f waits for the sink to see it).
func TestContractApplyOldestItemEmitsDirectly(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		for _, w := range []int{1, 3} {
			for _, k := range []int{1, 2} {
				t.Run(fmt.Sprintf("ordered=%v/workers=%d/emitsBeforeWait=%d", ordered, w, k), func(t *testing.T) {
					got := make(chan struct{})
					opts := []stage.Option{stage.Workers(w)}
					if ordered {
						opts = append(opts, stage.Ordered())
					}
					s := stage.Apply(source.Slice(ints(2)), func(ctx context.Context, x int, emit func(int) bool) error {
						if x == 0 {
							for i := range k {
								emit(i)
							}
							if !rvWait(got) {
								return fmt.Errorf("HUNG: the oldest item's %d output(s) never reached the sink while it ran", k)
							}
						}
						return nil
					}, opts...)
					first := true
					var err error
					rvRun(t, func() {
						err = stage.Run(context.Background(), s, func(_ context.Context, v int, e error) error {
							if first {
								first = false
								close(got)
							}
							return e
						})
					})
					if err != nil {
						t.Error(err)
					}
				})
			}
		}
	}
}
