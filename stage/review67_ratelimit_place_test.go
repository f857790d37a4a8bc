package stage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview67RateLimitWaitHoldsNoConsumer: RateLimit says a worker waits
// for its token "holding its place", and Workers that a consumer goroutine
// inside a call takes no output. A stage under RateLimit keeps its calls
// in goroutines of its own, so that its consumer (here the sink's
// goroutine) never waits for a token while outputs that other workers
// finished wait for it. The bucket gives 5 tokens and no more for ages;
// the sink's callback cancels the run after the 5 outputs: it must see
// them. Before, the sink's goroutine took a worker's place once the first
// calls proved cheap, then waited for the sixth token while the finished
// outputs waited behind it: the run hung (about 3 runs in 20 under -race;
// this runs 500 in a child process, whose hang watchdog fails the test).
func TestReview67RateLimitWaitHoldsNoConsumer(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, shared := range []bool{false, true} {
			for range 250 {
				rl := r67RateLimit(shared, 1e-9, 5)
				m := stage.Map(source.Slice(r67Ints(40)), func(_ context.Context, v int) (int, error) {
					return v, nil
				}, rl, stage.Workers(8))
				ctx, cancel := context.WithCancel(context.Background())
				seen := 0
				err := sink.ForEach(ctx, m, func(context.Context, int) error {
					if seen++; seen == 5 {
						cancel()
					}
					return nil
				})
				cancel()
				if !errors.Is(err, context.Canceled) || seen != 5 {
					t.Fatalf("shared=%v: %v after %d items; want context.Canceled after 5", shared, err, seen)
				}
			}
		}
	})
}
