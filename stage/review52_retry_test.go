package stage_test

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Doc (Retry): "Before the n-th retry the worker waits a random duration
// between d/2 and d, where d = backoff·2^(n-1), capped at 64·backoff and at
// the longest time.Duration"; "Only the last error reaches the error
// policy, in an *Error whose Attempts field says how many calls were made."
// Many attempts push 2^(n-1) past 64 bits: the run must still make every
// attempt and fail with Attempts = attempts, not crash or stop early.
func TestReview52RetryManyAttempts(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		for _, c := range []struct {
			name     string
			attempts int
			backoff  time.Duration
			retryIf  bool
		}{
			{"retry-200x1ns", 200, time.Nanosecond, false},
			{"retry-130x0", 130, 0, false},
			{"retryif-150x1ns", 150, time.Nanosecond, true},
			{"retry-70x1ns", 70, time.Nanosecond, false},
		} {
			var calls, preds atomic.Int64
			opt := stage.Retry(c.attempts, c.backoff)
			if c.retryIf {
				opt = stage.RetryIf(c.attempts, c.backoff, func(err error) bool {
					preds.Add(1)
					return errors.Is(err, errR52)
				})
			}
			_, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{7}), func(context.Context, int) (int, error) {
				calls.Add(1)
				return 0, errR52
			}, opt))
			var e *stage.Error
			if !errors.As(err, &e) || !errors.Is(err, errR52) {
				t.Errorf("%s: err %v, want an *Error wrapping errR52", c.name, err)
				continue
			}
			if e.Attempts != c.attempts || calls.Load() != int64(c.attempts) {
				t.Errorf("%s: Attempts %d, calls %d; want %d", c.name, e.Attempts, calls.Load(), c.attempts)
			}
			// RetryIf: "it sees the error of each failed attempt that another
			// could follow (not the last allowed one's)".
			if c.retryIf && preds.Load() != int64(c.attempts-1) {
				t.Errorf("%s: retryable called %d times, want %d", c.name, preds.Load(), c.attempts-1)
			}
		}
	})
}

// Doc (Retry): "capped at 64·backoff and at the longest time.Duration";
// "The wait holds the worker and ends early, without a retry, when the run
// is cancelled." With a backoff so large that 64·backoff (or backoff·2)
// does not fit in a time.Duration, the first wait is still at least
// backoff/2 (years): no second attempt may start before the run is
// cancelled, and the cancellation ends the wait. (The pause before the
// cancellation only gives a broken cap a chance to show: a correct
// implementation passes whatever its length.)
func TestReview52RetryHugeBackoffWaitsUntilCancelled(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		for _, backoff := range []time.Duration{
			time.Duration(math.MaxInt64),
			time.Duration(math.MaxInt64/64 + 1),
			time.Duration(1 << 62),
			time.Duration(math.MaxInt64 / 2),
		} {
			ctx, cancel := context.WithCancel(context.Background())
			failed := make(chan struct{})
			retried := make(chan struct{}, 1)
			var calls atomic.Int64
			done := make(chan error, 1)
			go func() {
				_, err := sink.Slice(ctx, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
					if calls.Add(1) == 1 {
						close(failed)
					} else {
						retried <- struct{}{}
					}
					return 0, errR52
				}, stage.Retry(3, backoff)))
				done <- err
			}()
			<-failed
			select {
			case <-retried:
				t.Errorf("backoff %v: a second attempt started without waiting (at least backoff/2 = %v)", backoff, backoff/2)
			case err := <-done:
				t.Errorf("backoff %v: the run ended (%v) before it was cancelled, after %d call(s)", backoff, err, calls.Load())
			case <-time.After(300 * time.Millisecond):
			}
			cancel()
			err := <-done
			if !errors.Is(err, context.Canceled) {
				t.Errorf("backoff %v: Slice = %v after the cancellation, want context.Canceled", backoff, err)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("backoff %v: %d calls, want 1 (the wait ends without a retry)", backoff, n)
			}
		}
	})
}

// Doc (Retry): "unless the error is a *PanicError (a bug is not cured by
// trying again; see RetryIf to choose)"; (RetryIf) "a panic included (as a
// *PanicError, so that a predicate may retry one)"; "if it panics, the item
// fails at once with that panic's *PanicError, not retried".
func TestReview52RetryPanics(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		type predPanic struct{ n int }
		run := func(opt stage.Option, panics bool) (int64, *stage.Error, error) {
			var calls atomic.Int64
			_, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
				calls.Add(1)
				if panics {
					panic("r52 boom")
				}
				return 0, errR52
			}, opt))
			var e *stage.Error
			errors.As(err, &e)
			return calls.Load(), e, err
		}
		// Retry does not retry a panic.
		if calls, e, err := run(stage.Retry(4, 0), true); e == nil || calls != 1 || e.Attempts != 1 {
			t.Errorf("Retry over a panic: calls %d, err %v; want one call, Attempts 1", calls, err)
		} else if pe := (*stage.PanicError)(nil); !errors.As(err, &pe) || pe.Value != "r52 boom" {
			t.Errorf("Retry over a panic: err %v, want a *PanicError of the value", err)
		}
		// RetryIf may retry one.
		var sawPanic atomic.Bool
		calls, e, err := run(stage.RetryIf(4, 0, func(err error) bool {
			var pe *stage.PanicError
			if errors.As(err, &pe) {
				sawPanic.Store(true)
			}
			return true
		}), true)
		if e == nil || calls != 4 || e.Attempts != 4 || !sawPanic.Load() {
			t.Errorf("RetryIf(always) over a panic: calls %d, err %v, predicate saw a *PanicError %v; want 4 calls, Attempts 4, true", calls, err, sawPanic.Load())
		}
		// A predicate that panics fails the item at once with its panic.
		calls, e, err = run(stage.RetryIf(4, 0, func(error) bool { panic(predPanic{3}) }), false)
		var pe *stage.PanicError
		if e == nil || calls != 1 || !errors.As(err, &pe) || pe.Value != (predPanic{3}) {
			t.Errorf("RetryIf with a panicking predicate: calls %d, err %v; want one call and the predicate's *PanicError", calls, err)
		}
		if errors.Is(err, errR52) {
			t.Logf("note: the error also wraps the function's error: %v", err)
		}
	})
}
