package stage_test

// Review 64: Option and ErrorPolicy are values a user builds once and may
// pass to several stages (nothing in their doc says otherwise). What they
// configure is documented per stage and per run, so one value shared by
// two stages must not make them share state.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Budget: "The count is per stage and per run: each run starts with a
// full budget." One Budget(1, nil) value on two stages, each of which
// fails one item, and the same value in a second run: every run succeeds.
func TestReview64APIBudgetValueSharedByStages(t *testing.T) {
	boom := errors.New("review64 boom")
	p := stage.Budget(1, nil)
	failOn := func(bad int) func(context.Context, int) (int, error) {
		return func(_ context.Context, v int) (int, error) {
			if v == bad {
				return 0, boom
			}
			return v, nil
		}
	}
	for run := range 2 {
		s := stage.Map(source.Slice([]int{1, 2, 3, 4}), failOn(1), stage.Workers(1), stage.OnError(p))
		s = stage.Map(s, failOn(2), stage.Workers(1), stage.OnError(p))
		got, err := sink.Slice(context.Background(), s)
		if err != nil || len(got) != 2 {
			t.Fatalf("run %d: two stages sharing one Budget(1) value, one failure each: %v, %v", run, got, err)
		}
	}
}

// RateLimit: "lets the stage start at most perSecond calls of its function
// per second on average, with bursts of up to burst calls, across all its
// workers ... The bucket is per run and starts full". One RateLimit option
// value (a bucket of 2, refilled about never) on two stages of 2 items
// each: each stage's own full bucket covers its items, so the run ends at
// once. (The deadline is a hang watchdog: a shared bucket would make the
// second stage wait for its tokens for ever.)
func TestReview64APIRateLimitValueSharedByStages(t *testing.T) {
	opt := stage.RateLimit(1e-9, 2)
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	for run := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		s := stage.Map(source.Slice([]int{1, 2}), id, opt)
		s = stage.Map(s, id, opt)
		got, err := sink.Slice(ctx, s)
		cancel()
		if err != nil || len(got) != 2 {
			t.Fatalf("run %d: two stages sharing one RateLimit(~0, 2) option over 2 items: %v, %v", run, got, err)
		}
	}
}
