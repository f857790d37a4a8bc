package stage_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// handOut.put refuses outputs only once the run is cancelled (a4d8a5f). A
// drain (Until) is not a cancellation: a fused (serial) FlatMap whose
// drain starts while an item's outputs are in the consumer's hands still
// hands every output of every item the source produced, and each item is
// told Done(nil). The drain starts in the FlatMap's watcher (Finished of
// its second call), after that call's outputs went into hands. (Passes:
// kept as a guard.)
func TestReview27DrainKeepsHandsOutputs(t *testing.T) {
	for _, workers := range []int{1, 2} {
		a := newR26Acks()
		stop, drain := context.WithCancel(context.Background())
		var calls atomic.Int32
		ctx := stage.Observe(context.Background(), r27Observer{name: "fm", onFinished: func(error) {
			if calls.Add(1) == 2 {
				drain()
			}
		}})
		src := stage.Until(stage.NeverWaits(a.source(50)), stop)
		fm := stage.FlatMap(src, func(_ context.Context, v int) ([]int, error) {
			return []int{10 * v, 10*v + 1, 10*v + 2}, nil
		}, stage.Workers(workers), stage.Name("fm"))
		var mu sync.Mutex
		got := map[int]int{}
		var err error
		hangGuard(t, func() {
			err = stage.Run(ctx, fm, func(_ context.Context, v int, _ error) error {
				mu.Lock()
				got[v/10]++
				mu.Unlock()
				return nil
			})
		})
		drain()
		if err != nil {
			t.Fatalf("workers=%d: Run = %v, want nil (a drain)", workers, err)
		}
		a.mu.Lock()
		produced := a.nexts
		if a.eof {
			produced--
		}
		a.mu.Unlock()
		if produced < 2 {
			t.Fatalf("workers=%d: %d items produced", workers, produced)
		}
		for id := range produced {
			if got[id] != 3 || a.fate(id) != "nil" {
				t.Errorf("workers=%d: item %d of %d produced: %d of 3 outputs delivered, Done(%s); a drain drops nothing", workers, id, produced, got[id], a.fate(id))
			}
		}
	}
}
