package stage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/time/rate"
)

// retry is the configuration set by Retry and RetryIf.
type retry struct {
	attempts  int           // calls per item at most; 0 or 1: no retry
	backoff   time.Duration // wait before the first retry
	retryable func(error) bool
}

// maxBackoff caps the exponential growth of the wait between attempts, as a
// multiple of the first wait.
const maxBackoff = 64

// Retry makes the stage call its function up to attempts times for an item
// whose call failed with a retryable error (see [RetryIf]; by default every
// error but a panic). Before the n-th retry the worker waits a random
// duration between d/2 and d, where d = backoff·2^(n-1), capped at
// 64·backoff (exponential backoff with jitter, so that workers that failed
// together do not retry together). The wait holds the worker and ends early,
// without a retry, when the run is cancelled.
//
// Only the last error reaches the error policy, in an *[Error] whose
// Attempts field says how many calls were made. Each attempt gets its own
// [Timeout] and waits for its own [RateLimit] token. Outputs that a failed
// attempt emitted stay emitted (Map, Filter, FlatMap and Concurrent emit
// nothing from a failed call, so for them a retry repeats nothing).
//
// Retry panics if attempts < 1 or backoff < 0. Retry(1, 0) means no retry.
func Retry(attempts int, backoff time.Duration) Option {
	if attempts < 1 {
		panic(fmt.Sprintf("sluice: stage.Retry: attempts = %d, want 1 or more", attempts))
	}
	if backoff < 0 {
		panic(fmt.Sprintf("sluice: stage.Retry: negative backoff %v", backoff))
	}
	return Option{func(c *config) { c.retry.attempts, c.retry.backoff = attempts, backoff }}
}

// RetryIf sets which errors [Retry] retries: those for which retryable
// returns true. The default retries every error but a *[PanicError] (a bug
// is not cured by trying again). retryable is called from the stage's
// workers, possibly at the same time. RetryIf panics if retryable is nil.
func RetryIf(retryable func(err error) bool) Option {
	checkFunc(retryable == nil, "stage.RetryIf", "function")
	return Option{func(c *config) { c.retry.retryable = retryable }}
}

// Timeout gives each call of the stage's function (each attempt, under
// [Retry]) a context that expires d after the call starts. A function that
// honours its ctx then returns an error for which
// errors.Is(err, context.DeadlineExceeded) holds, which is retryable by
// default. The run goes on: only that call's context expires. Cost: a timer
// and a context per call. Timeout panics if d <= 0.
func Timeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("sluice: stage.Timeout: d = %v, want more than 0", d))
	}
	return Option{func(c *config) { c.timeout = d }}
}

// rateLimit is the configuration set by RateLimit.
type rateLimit struct {
	perSecond float64
	burst     int
	limiter   *rate.Limiter // per run, made by forRun
}

// RateLimit lets the stage start at most perSecond calls of its function per
// second on average, with bursts of up to burst calls, across all its
// workers (a token bucket, golang.org/x/time/rate). Each attempt under
// [Retry] takes a token. A worker waits for its token, holding its place;
// the wait ends when the run is cancelled. The bucket is per run and starts
// full. RateLimit panics if perSecond <= 0 or burst < 1.
func RateLimit(perSecond float64, burst int) Option {
	if !(perSecond > 0) {
		panic(fmt.Sprintf("sluice: stage.RateLimit: perSecond = %v, want more than 0", perSecond))
	}
	if burst < 1 {
		panic(fmt.Sprintf("sluice: stage.RateLimit: burst = %d, want 1 or more", burst))
	}
	return Option{func(c *config) { c.rateLimit = rateLimit{perSecond: perSecond, burst: burst} }}
}

// forRun returns the stage's configuration for one run: a fresh rate
// limiter and error handler, and the stage's observer; in is its input.
func (c config) forRun(r *run, in *node) config {
	c.obs = r.observe(&c, c.kind, in.expected())
	if c.rateLimit.perSecond > 0 {
		c.rateLimit.limiter = rate.NewLimiter(rate.Limit(c.rateLimit.perSecond), c.rateLimit.burst)
	}
	if c.policy.p.handle != nil {
		c.handler = &handler{p: c.policy.p}
	}
	return c
}

// retried is the error of a call that was retried: its attempts and the
// last error. itemError unwraps it into an *Error.
type retried struct {
	attempts int
	err      error
}

func (e *retried) Error() string { return e.err.Error() }

// wrapCalls returns f under the stage's Retry, Timeout and RateLimit; f
// itself when none is set, so that a plain stage pays nothing.
func wrapCalls[In, Out any](c *config, f func(context.Context, In, func(Out) bool) error) func(context.Context, In, func(Out) bool) error {
	if c.retry.attempts <= 1 && c.timeout == 0 && c.rateLimit.limiter == nil {
		return f
	}
	return func(ctx context.Context, v In, emit func(Out) bool) error {
		for n := 1; ; n++ {
			err := attempt(c, ctx, f, v, emit)
			if err == nil {
				return nil
			}
			if n >= c.retry.attempts || ctx.Err() != nil || !c.retryable(err) || !sleep(ctx, c.backoff(n)) {
				if n > 1 {
					return &retried{attempts: n, err: err}
				}
				return err
			}
		}
	}
}

// attempt is one call of f, after its rate-limit token, under its timeout.
func attempt[In, Out any](c *config, ctx context.Context, f func(context.Context, In, func(Out) bool) error, v In, emit func(Out) bool) error {
	if l := c.rateLimit.limiter; l != nil {
		if err := l.Wait(ctx); err != nil {
			return err
		}
	}
	if c.timeout > 0 {
		ctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		return f(ctx, v, emit)
	}
	return f(ctx, v, emit)
}

func (c *config) retryable(err error) bool {
	if c.retry.retryable != nil {
		return c.retry.retryable(err)
	}
	var pe *PanicError
	return !errors.As(err, &pe)
}

// backoff is the wait after the given failed attempt: random in [d/2, d).
func (c *config) backoff(attempt int) time.Duration {
	d := c.retry.backoff << min(attempt-1, 6)
	d = min(d, maxBackoff*c.retry.backoff)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// sleep waits d; it reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// itemError wraps a failed call's error for the stage's policy.
func (c *config) itemError(idx int, v any, err error) *Error {
	e := &Error{Stage: c.name, Index: idx, Input: v, Attempts: 1, Err: err}
	if r, ok := err.(*retried); ok {
		e.Attempts, e.Err = r.attempts, r.err
	}
	return e
}
