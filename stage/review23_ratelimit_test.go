package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// RateLimit (calls.go): "A worker waits for its token as long as it takes,
// holding its place; only the end of the run ends the wait", and RateLimit
// accepts any perSecond > 0. With a tiny rate the second token is far
// away: the worker must wait for it until the run ends (here: until ctx is
// cancelled), and the item must not fail with ErrNoToken, which is
// documented only for a SharedRateLimit limiter that can never give one.
func TestReview23RateLimitTinyRateWaitsInsteadOfFailing(t *testing.T) {
	for _, perSecond := range []float64{1e-10, 1e-300} {
		t.Run(fmt.Sprint(perSecond), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := stage.Map(stage.Indexed(2, func(i int) int { return i }),
				func(_ context.Context, v int) (int, error) { return v, nil },
				stage.Workers(1), stage.RateLimit(perSecond, 1))
			done := make(chan error, 1)
			first := make(chan struct{})
			go func() {
				done <- stage.Run(ctx, s, func(_ context.Context, v int, _ error) error {
					if v == 0 {
						close(first)
					}
					return nil
				})
			}()
			<-first // the first token was spent: the second is ages away
			var err error
			select {
			case err = <-done:
				if errors.Is(err, stage.ErrNoToken) {
					t.Errorf("the second item failed instead of waiting for its token: %v", err)
				} else {
					t.Errorf("the run ended without waiting for the second token: %v", err)
				}
				return
			case <-time.After(200 * time.Millisecond): // room for a refusal (it comes at once) to show; a slow machine only finds less
			}
			cancel()
			if err = <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want context.Canceled", err)
			}
		})
	}
}
