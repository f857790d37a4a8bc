package stage_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview94SharedTokenNotTakenByAWaitTheRunEnded: SharedRateLimit,
// "Each attempt takes a token of l before it starts, ... waiting as long
// as it takes unless the run ends", in a bucket that "every stage and
// every run given it shares". An attempt whose wait the run's end cut
// short never started: the token it waited for must be left to the other
// users of l. Item 0 takes the only token; item 1's attempt waits for the
// next, eleven days away (the bucket then owes one: Tokens is -1); the
// caller cancels. Once the run has returned, l must owe nothing.
func TestReview94SharedTokenNotTakenByAWaitTheRunEnded(t *testing.T) {
	l := rate.NewLimiter(1e-6, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := stage.Map(source.Slice(ints(2)), double, stage.Workers(1), stage.SharedRateLimit(l))
	waiting := make(chan struct{})
	go func() {
		defer close(waiting)
		for l.Tokens() > -0.5 { // until item 1's attempt waits for its token
			runtime.Gosched()
		}
		cancel()
	}()
	var err error
	hangGuard(t, func() {
		err = stage.Run(ctx, s, func(context.Context, int, error) error { return nil })
		<-waiting
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if n := l.Tokens(); n < -0.01 {
		t.Errorf("the shared limiter holds %.3f tokens after the run ended a wait for one; want 0: the wait took it", n)
	}
}
