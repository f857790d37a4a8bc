package stage_test

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// SharedRateLimit (calls.go): "if l can never give one (its burst is 0, or
// its limit is 0 and its burst spent), the attempt fails with [ErrNoToken]
// instead of waiting for ever". waitToken now waits for the run's end when
// the next token is further than a Duration reaches; these limiters must
// still fail at once (or pass), never wait: limit 0 with a burst of 2 (two
// pass, the third fails), burst 0 (all fail), an Inf limit with burst 0
// (all pass: Inf ignores the burst). (Passes.)
func TestReview25SharedLimiterNeverWaitsForNothing(t *testing.T) {
	for _, tc := range []struct {
		name        string
		l           *rate.Limiter
		ok, noToken int
	}{
		{"limit0-burst2", rate.NewLimiter(0, 2), 2, 1},
		{"limit1-burst0", rate.NewLimiter(1, 0), 0, 3},
		{"inf-burst0", rate.NewLimiter(rate.Inf, 0), 3, 0},
		{"negative-limit-burst1", rate.NewLimiter(-1, 1), 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := stage.Map(source.Slice(ints(3)), double, stage.Workers(1), stage.OnError(stage.Forward), stage.SharedRateLimit(tc.l))
			ok, noToken := 0, 0
			var err error
			hangGuard(t, func() {
				err = stage.Run(context.Background(), s, func(_ context.Context, _ int, err error) error {
					switch {
					case err == nil:
						ok++
					case errors.Is(err, stage.ErrNoToken):
						noToken++
					}
					return nil
				})
			})
			if err != nil || ok != tc.ok || noToken != tc.noToken {
				t.Fatalf("Run = %v with %d passed and %d ErrNoToken, want %d and %d", err, ok, noToken, tc.ok, tc.noToken)
			}
		})
	}
}
