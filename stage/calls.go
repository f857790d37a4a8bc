package stage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/internal/guard"
)

// callOptions is the configuration of a stage's calls set by Retry,
// RetryIf, Timeout, RateLimit and SharedRateLimit (see config.calls).
type callOptions struct {
	retry     retry
	timeout   time.Duration
	rateLimit rateLimit
}

// callOptions returns c's call options, made if c has none yet; only while
// the stage is built.
func (c *config) callOptions() *callOptions {
	if c.calls == nil {
		c.calls = &callOptions{}
	}
	return c.calls
}

// retry is the configuration set by Retry and RetryIf.
type retry struct {
	attempts  int           // calls per item at most; 0 or 1: no retry
	backoff   time.Duration // wait before the first retry
	retryable func(error) bool
}

// maxDoublings caps the exponential growth of the wait between attempts:
// at most 2^6 = 64 times the first wait.
const maxDoublings = 6

// Retry makes the stage call its function up to attempts times for an item
// whose call failed, unless the error is a *[PanicError] (a bug is not
// cured by trying again; see [RetryIf] to choose). Before the n-th retry
// the worker waits a random duration between d/2 and d, where
// d = backoff·2^(n-1), capped at 64·backoff and at the longest
// time.Duration (exponential backoff with jitter, so that workers that
// failed together do not retry together). The wait holds the worker and
// ends early, without a retry, when the run is cancelled.
//
// Only the last error reaches the error policy, in an *[Error] whose
// Attempts field says how many calls were made. Each attempt gets its own
// [Timeout] and waits for its own [RateLimit] token. Outputs that a failed
// attempt emitted stay emitted (Map, Filter, FlatMap and Concurrent emit
// nothing from a failed call, so for them a retry repeats nothing).
//
// Retry panics if attempts < 1 or backoff < 0. Retry(1, 0) means no retry.
func Retry(attempts int, backoff time.Duration) Option {
	return retryOption("stage.Retry", attempts, backoff, notPanic)
}

// RetryIf is [Retry] for the errors for which retryable returns true: it
// sees the error of each failed attempt that another could follow (not the
// last allowed one's), a panic included (as a *[PanicError], so that a
// predicate may retry one). retryable is called from the stage's
// workers, possibly at the same time; if it panics, the item fails at once
// with that panic's *PanicError, not retried. RetryIf panics if
// attempts < 1, backoff < 0 or retryable is nil.
func RetryIf(attempts int, backoff time.Duration, retryable func(err error) bool) Option {
	checkFunc(retryable == nil, "stage.RetryIf", "function")
	return retryOption("stage.RetryIf", attempts, backoff, retryable)
}

func retryOption(fn string, attempts int, backoff time.Duration, retryable func(error) bool) Option {
	if attempts < 1 {
		panic(fmt.Sprintf("sluice: %s: attempts = %d, want 1 or more", fn, attempts))
	}
	if backoff < 0 {
		panic(fmt.Sprintf("sluice: %s: negative backoff %v", fn, backoff))
	}
	return Option{apply: func(c *config, _ int) {
		c.callOptions().retry = retry{attempts: attempts, backoff: backoff, retryable: retryable}
	}}
}

// notPanic is Retry's predicate: every error but a panic. The error's
// methods (As, Unwrap) are user code: if they panic, the error is still
// one the function returned, and is retried as returned (unlike a panic of
// RetryIf's predicate, which is the user's own choice failing).
func notPanic(err error) (yes bool) {
	if _, ok := err.(*PanicError); ok {
		return false
	}
	yes = true
	guard.Call(func() {
		var pe *PanicError
		yes = !errors.As(err, &pe)
	})
	return yes
}

// Timeout gives each call of the stage's function (each attempt, under
// [Retry]) a context that expires d after the call starts. A function that
// honours its ctx then returns an error for which
// errors.Is(err, context.DeadlineExceeded) holds, which is retryable by
// default. Only that call's context expires, not the run's: what the
// call's error does then is the stage's policy's (under the default
// FailFast it ends the run, as any item error does). Timeout
// cannot stop a function that ignores its ctx: the stage waits for it to
// return, however long that takes; what it returns then counts (nil is a
// success, even after the deadline).
// Cost: a timer and a context per call. Timeout panics if d <= 0.
func Timeout(d time.Duration) Option {
	if d <= 0 {
		panic(fmt.Sprintf("sluice: stage.Timeout: d = %v, want more than 0", d))
	}
	return Option{apply: func(c *config, _ int) { c.callOptions().timeout = d }}
}

// rateLimit is the configuration set by RateLimit or SharedRateLimit.
type rateLimit struct {
	perSecond float64
	burst     int
	shared    *rate.Limiter // SharedRateLimit's bucket
	limiter   *rate.Limiter // the run's: made by forRun, or shared
}

// rateLimited reports whether the stage has a RateLimit or SharedRateLimit.
func (c *config) rateLimited() bool {
	return c.calls != nil && (c.calls.rateLimit.shared != nil || c.calls.rateLimit.perSecond > 0)
}

// RateLimit lets the stage start at most perSecond calls of its function per
// second on average, with bursts of up to burst calls, across all its
// workers (a token bucket, golang.org/x/time/rate). Each attempt under
// [Retry] takes a token. A worker (a goroutine of the stage's own, never
// its consumer's: see [Workers]) waits for its token as long as it takes,
// holding its place; only the end of the run ends the wait (a deadline on
// the run's context is no reason to fail an item early). The bucket is per
// run and starts full: for a limit that holds across runs, see
// [SharedRateLimit]. RateLimit panics if perSecond is not above 0 (NaN
// included) or burst < 1.
func RateLimit(perSecond float64, burst int) Option {
	if !(perSecond > 0) {
		panic(fmt.Sprintf("sluice: stage.RateLimit: perSecond = %v, want more than 0", perSecond))
	}
	if burst < 1 {
		panic(fmt.Sprintf("sluice: stage.RateLimit: burst = %d, want 1 or more", burst))
	}
	return Option{apply: func(c *config, _ int) { c.callOptions().rateLimit = rateLimit{perSecond: perSecond, burst: burst} }}
}

// SharedRateLimit is [RateLimit] with a bucket of your own, l, which every
// stage and every run given it shares: the limit then holds across runs,
// for a backend that per-request fan-outs call, or the levels of a crawl
// each run in turn. Each attempt takes a token of l before it starts, as
// under RateLimit (and outside [Timeout]), waiting as long as it takes
// unless the run ends (an attempt whose wait the run's end cut short takes
// no token: l gets back the one it reserved); if l can never give one (its burst is 0 and its
// limit not rate.Inf, or its limit is 0 and its burst spent), the attempt
// fails with [ErrNoToken] instead of waiting for ever. The last of
// RateLimit and SharedRateLimit given to a stage wins. SharedRateLimit panics if l is nil.
func SharedRateLimit(l *rate.Limiter) Option {
	if l == nil {
		panic("sluice: stage.SharedRateLimit: nil limiter")
	}
	return Option{apply: func(c *config, _ int) { c.callOptions().rateLimit = rateLimit{shared: l} }}
}

// forRun returns the stage's configuration for one run: its rate limiter
// (a fresh one, or the shared one), a fresh error handler, and the stage's
// observer; in is its input.
func (c config) forRun(r *run, in *node) config {
	c.pos = int32(r.nextStage())
	c.obs = r.observe(&c, in.expected())
	if k := c.calls; c.rateLimited() {
		run := *k // the build's are shared by its runs
		if l := &run.rateLimit; l.shared != nil {
			l.limiter = l.shared
		} else {
			l.limiter = rate.NewLimiter(rate.Limit(l.perSecond), l.burst)
		}
		c.calls = &run
	}
	if c.policy.p != nil && c.policy.p.handle != nil {
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

// again reports whether *err is to be retried. The predicate is user code:
// if it panics, *err becomes the *PanicError, which is not retried.
func (r retry) again(err *error) (yes bool) {
	if rec := guard.Call(func() { yes = r.retryable(*err) }); rec != nil {
		*err = panicError(rec)
		return false
	}
	return yes
}

// call runs the user's function on v under the stage's Retry, Timeout and
// RateLimit. Each attempt recovers its own panic, which becomes a
// *PanicError that Retry's predicate sees like any error. A plain stage
// does not come here: stepper.call calls its one attempt directly.
func (p *processor[In, Out]) call(v In, emit emitter[Out]) error {
	c := p.cfg.calls
	ctx := p.r.ctx
	for n := 1; ; n++ {
		err := p.limited(ctx, v, emit)
		if err == nil {
			return nil
		}
		if n >= c.retry.attempts || p.r.ending() || !c.retry.again(&err) || !sleep(ctx, c.backoff(n)) {
			if n > 1 {
				return &retried{attempts: n, err: err}
			}
			return err
		}
	}
}

// limited is one attempt, after its rate-limit token, under its timeout.
// No attempt starts once the run is ending (see run.ending): a token or a
// backoff may run out just as it ends, or as a caller's own context type's
// Done closes, which reaches ctx a moment later; the attempt is then cut
// short before it began (step takes an error while the run is ending for
// its consequence).
func (p *processor[In, Out]) limited(ctx context.Context, v In, emit emitter[Out]) error {
	c := p.cfg.calls // not nil: see call
	if l := c.rateLimit.limiter; l != nil {
		if err := waitToken(ctx, l); err != nil {
			return err
		}
	}
	if p.r.ending() {
		return context.Canceled
	}
	if c.timeout > 0 {
		tctx, cancel, ok := p.r.deadlineContext(ctx, c.timeout)
		if !ok {
			return ctx.Err() // the caller's context panicked: the run is cancelled, the call cut short
		}
		defer cancel()
		return p.attempt(tctx, v, emit)
	}
	return p.attempt(ctx, v, emit)
}

// attempt is one call of the user's function, its panic recovered.
func (p *processor[In, Out]) attempt(ctx context.Context, v In, emit emitter[Out]) (err error) {
	if rec := guard.Call(func() { err = p.f(ctx, v, emit) }); rec != nil {
		err = panicError(rec)
	}
	return err
}

// waitToken waits for a token of l, or until ctx ends. Unlike l.Wait, it
// does not refuse at once a wait that would outlast ctx's deadline.
// No token is taken once ctx is done, so that a run that ended takes none
// from a limiter it shares with other runs. (A token that comes as the
// run ends is not given back: the limiter takes back only what lies in
// the future. limited starts no attempt with it.)
func waitToken(ctx context.Context, l *rate.Limiter) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	res := l.Reserve()
	d := res.Delay()
	never := d > rate.InfDuration/2 // InfDuration less the time since it was reserved
	if !res.OK() || never && l.Limit() <= 0 {
		res.Cancel()
		return ErrNoToken // it would wait for ever
	}
	if d == 0 {
		return nil
	}
	if never {
		// A rate so small that the token is further away than a Duration
		// reaches (rate saturates the delay): it comes, but only the run's
		// end ends this wait.
		<-ctx.Done()
		res.Cancel()
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		res.Cancel()
		return ctx.Err()
	}
}

// backoff is the wait after the given failed attempt: random in [d/2, d),
// where d = backoff·2^k, k = min(attempt-1, maxDoublings), saturating at the
// longest Duration rather than overflowing (a first wait over ~4.5 years
// would overflow at 64 times it, and an overflow is a short or negative
// wait: an immediate retry).
func (c *callOptions) backoff(attempt int) time.Duration {
	k := min(attempt-1, maxDoublings)
	d := time.Duration(math.MaxInt64)
	if b := c.retry.backoff; b <= d>>k {
		d = b << k
	}
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
		// Both may be ready (a short backoff, a cancel while the predicate
		// ran), and select picks either: the run's end wins.
		return ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

// stageName is the stage's name: the one given with Name, or its kind and
// position (made when needed: most runs never need it).
func (c *config) stageName() string {
	if c.name != "" {
		return c.name
	}
	return c.kind + "#" + strconv.Itoa(int(c.pos))
}

// itemError wraps a failed call's error for the stage's policy.
func (c *config) itemError(idx int, v any, err error) *Error {
	e := &Error{Stage: c.stageName(), Index: idx, Input: v, Attempts: 1, Err: err}
	if r, ok := err.(*retried); ok {
		e.Attempts, e.Err = r.attempts, r.err
	}
	return e
}
