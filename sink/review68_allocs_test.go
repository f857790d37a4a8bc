package sink_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// README Metrics: "Without an observer a stage does nothing extra per item;
// with one, no allocation per item (tested)." A run of 2,000 items may not
// allocate more than a run of 10 by more than a few allocations, with the
// built-in Stats observer and a Watcher of the test's own.
func TestReview68ObserverNoAllocationPerItem(t *testing.T) {
	if r68Race {
		t.Skip("allocation counts are not meaningful under -race")
	}
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	small, large := r68Ints(10), r68Ints(2000)
	for _, obs := range []string{"none", "stats", "watcher"} {
		t.Run(obs, func(t *testing.T) {
			ctx := context.Background()
			switch obs {
			case "stats":
				ctx = stage.Observe(ctx, &stage.Stats{})
			case "watcher":
				ctx = stage.Observe(ctx, &r68CheapObserver{})
			}
			allocs := func(items []int) float64 {
				s := stage.Map(source.Slice(items), id, stage.Workers(4), stage.Buffer(4))
				return testing.AllocsPerRun(20, func() {
					if _, err := sink.Count(ctx, s); err != nil {
						t.Fatal(err)
					}
				})
			}
			a10, a2000 := allocs(small), allocs(large)
			if a2000-a10 > 20 {
				t.Errorf("a run of 10 items: %.0f allocations, of 2000: %.0f: about %.3f per item, want none",
					a10, a2000, (a2000-a10)/1990)
			}
		})
	}
}

// r68CheapObserver counts with atomics only (no allocation of its own).
type r68CheapObserver struct{ w r68CheapWatcher }

func (o *r68CheapObserver) Stage(stage.Info) stage.Watcher { return &o.w }

type r68CheapWatcher struct{ n atomic.Int64 }

func (w *r68CheapWatcher) Received()                     { w.n.Add(1) }
func (w *r68CheapWatcher) Finished(time.Duration, error) { w.n.Add(1) }
func (w *r68CheapWatcher) Closed()                       {}
