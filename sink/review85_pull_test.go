package sink_test

import (
	"context"
	"iter"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// All: "Breaking out of the loop stops the run; the loop statement ends only
// once every goroutine of the run has exited"; "Each range over the iterator
// runs s anew"; stage: "Building a Stream runs nothing". Driven by
// iter.Pull2, stop is the break: it returns once the run's goroutines are
// gone. A Pull2 stopped before any next runs nothing; one pulled three times
// and stopped took only what its stages were working on; one pulled to the
// end gets every item.
func TestReview85AllDrivenByPull(t *testing.T) {
	var calls atomic.Int32
	mk := func() stage.Stream[int] {
		return stage.Map(source.Slice(r85Ints(300)), func(_ context.Context, v int) (int, error) {
			calls.Add(1)
			return v, nil
		}, stage.Workers(4), stage.Ordered())
	}
	runcheck.Run(t, "never pulled", func() {
		_, stop := iter.Pull2(sink.All(context.Background(), mk()))
		stop()
	})
	if calls.Load() != 0 {
		t.Fatalf("a Pull2 never pulled ran %d calls", calls.Load())
	}
	runcheck.Run(t, "three", func() {
		next, stop := iter.Pull2(sink.All(context.Background(), mk()))
		defer stop()
		for i := range 3 {
			v, err, ok := next()
			if v != i || err != nil || !ok {
				t.Errorf("pull %d = %d %v %v", i, v, err, ok)
			}
		}
	})
	// Ordered, 4 workers: at most 2×4 items beyond the 3 taken.
	if c := calls.Load(); c < 3 || c > 3+8+1 {
		t.Fatalf("%d calls for 3 items pulled", c)
	}
	n := 0
	runcheck.Run(t, "all", func() {
		next, stop := iter.Pull2(sink.All(context.Background(), mk()))
		defer stop()
		for {
			v, err, ok := next()
			if !ok {
				break
			}
			if v != n || err != nil {
				t.Fatalf("pull %d = %d %v", n, v, err)
			}
			n++
		}
	})
	if n != 300 {
		t.Fatalf("%d items", n)
	}
}
