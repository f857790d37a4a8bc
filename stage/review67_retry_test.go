package stage_test

// Retry, RetryIf, Timeout, RateLimit and SharedRateLimit, attacked from
// their doc comments.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r67AttemptErr is the error of attempt n of an item.
type r67AttemptErr struct{ item, n int }

func (e *r67AttemptErr) Error() string { return fmt.Sprintf("item %d attempt %d", e.item, e.n) }

// r67Tries counts calls per item.
type r67Tries struct {
	mu sync.Mutex
	n  map[int]int
}

func (c *r67Tries) add(v int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[int]int{}
	}
	c.n[v]++
	return c.n[v]
}

func (c *r67Tries) get(v int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[v]
}

// "Retry makes the stage call its function up to attempts times for an
// item whose call failed"; "Only the last error reaches the error policy,
// in an *Error whose Attempts field says how many calls were made."
// "Retry(1, 0) means no retry."
func TestReview67RetryCounts(t *testing.T) {
	for _, attempts := range []int{1, 2, 5} {
		for _, w := range []int{1, 3} {
			var tries r67Tries
			m := stage.Map(source.Slice(r67Ints(6)), func(_ context.Context, v int) (int, error) {
				n := tries.add(v)
				if v%2 == 1 {
					return 0, &r67AttemptErr{v, n}
				}
				return v, nil
			}, stage.Retry(attempts, 0), stage.Workers(w), stage.OnError(stage.Forward))
			vals, fwd, err := r67Run(context.Background(), m)
			if err != nil || !r67SameInts(vals, []int{0, 2, 4}) || len(fwd) != 3 {
				t.Fatalf("attempts=%d: %v, %v, %v", attempts, vals, fwd, err)
			}
			for _, e := range fwd {
				var se *stage.Error
				var ae *r67AttemptErr
				if !errors.As(e, &se) || !errors.As(e, &ae) || se.Attempts != attempts || ae.n != attempts || ae.item != se.Input {
					t.Errorf("attempts=%d: forwarded %v (%+v); want the last attempt's error and Attempts %d", attempts, e, se, attempts)
				}
			}
			for v := range 6 {
				want := 1
				if v%2 == 1 {
					want = attempts
				}
				if got := tries.get(v); got != want {
					t.Errorf("attempts=%d: item %d called %d times; want %d", attempts, v, got, want)
				}
			}
		}
	}
}

// "unless the error is a *PanicError (a bug is not cured by trying
// again)": a panicking call is not retried, under Map, Filter, FlatMap
// and Concurrent.
func TestReview67RetryNotOnPanic(t *testing.T) {
	var calls r67Counter
	boom := func() { calls.inc(); panic("r67 bug") }
	streams := map[string]stage.Stream[int]{
		"map":     stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) { boom(); return 0, nil }, stage.Retry(4, 0)),
		"filter":  stage.Filter(source.Slice([]int{1}), func(context.Context, int) (bool, error) { boom(); return true, nil }, stage.Retry(4, 0)),
		"flatmap": stage.FlatMap(source.Slice([]int{1}), func(context.Context, int) ([]int, error) { boom(); return nil, nil }, stage.Retry(4, 0)),
		"concurrent": stage.Concurrent(source.Slice([]func(context.Context) (int, error){func(context.Context) (int, error) {
			boom()
			return 0, nil
		}}), stage.Retry(4, 0)),
	}
	for name, s := range streams {
		before := calls.get()
		_, err := sink.Slice(context.Background(), s)
		var se *stage.Error
		var pe *stage.PanicError
		if !errors.As(err, &se) || !errors.As(err, &pe) || se.Attempts != 1 || pe.Value != "r67 bug" {
			t.Errorf("%s: %v (%+v)", name, err, se)
		}
		if n := calls.get() - before; n != 1 {
			t.Errorf("%s: called %d times; want 1", name, n)
		}
	}
}

// RetryIf: "it sees the error of each failed attempt that another could
// follow (not the last allowed one's), a panic included (as a
// *PanicError, so that a predicate may retry one)."
func TestReview67RetryIfSeesEachButLast(t *testing.T) {
	for _, attempts := range []int{1, 2, 4} {
		var seen []int
		var mu sync.Mutex
		var tries r67Tries
		m := stage.Map(source.Slice([]int{7}), func(_ context.Context, v int) (int, error) {
			return 0, &r67AttemptErr{v, tries.add(v)}
		}, stage.RetryIf(attempts, 0, func(err error) bool {
			var ae *r67AttemptErr
			if !errors.As(err, &ae) {
				t.Errorf("retryable saw %v", err)
				return false
			}
			mu.Lock()
			seen = append(seen, ae.n)
			mu.Unlock()
			return true
		}))
		_, err := sink.Slice(context.Background(), m)
		var se *stage.Error
		if !errors.As(err, &se) || se.Attempts != attempts || tries.get(7) != attempts {
			t.Errorf("attempts=%d: %v, %d calls", attempts, err, tries.get(7))
		}
		want := []int{}
		for i := 1; i < attempts; i++ {
			want = append(want, i)
		}
		if !r67Equal(seen, want) {
			t.Errorf("attempts=%d: retryable saw attempts %v; want %v", attempts, seen, want)
		}
	}

	// A predicate that says no at the 2nd failure: 2 calls, Attempts 2.
	var tries r67Tries
	m := stage.Map(source.Slice([]int{1}), func(_ context.Context, v int) (int, error) {
		return 0, &r67AttemptErr{v, tries.add(v)}
	}, stage.RetryIf(9, 0, func(err error) bool {
		var ae *r67AttemptErr
		return errors.As(err, &ae) && ae.n < 2
	}))
	_, err := sink.Slice(context.Background(), m)
	var se *stage.Error
	if !errors.As(err, &se) || se.Attempts != 2 || tries.get(1) != 2 {
		t.Errorf("no at 2: %v (%+v), %d calls", err, se, tries.get(1))
	}

	// A panic that the predicate retries: the 2nd attempt succeeds.
	var tries2 r67Tries
	var sawPanic atomic.Bool
	m2 := stage.Map(source.Slice([]int{1, 2}), func(_ context.Context, v int) (int, error) {
		if tries2.add(v) == 1 {
			panic(fmt.Sprint("first try of ", v))
		}
		return v, nil
	}, stage.RetryIf(2, 0, func(err error) bool {
		var pe *stage.PanicError
		if errors.As(err, &pe) {
			sawPanic.Store(true)
		}
		return true
	}), stage.Workers(2))
	got, err := sink.Slice(context.Background(), m2)
	if err != nil || !r67SameInts(got, []int{1, 2}) || !sawPanic.Load() {
		t.Errorf("retried panic: %v, %v, predicate saw a *PanicError: %v", got, err, sawPanic.Load())
	}
}

// RetryIf: "if it panics, the item fails at once with that panic's
// *PanicError, not retried."
func TestReview67RetryIfPredicatePanics(t *testing.T) {
	for _, policy := range []string{"failfast", "forward", "handle"} {
		var calls r67Counter
		var handled []*stage.Error
		opts := []stage.Option{stage.RetryIf(5, 0, func(error) bool { panic("r67 predicate") }), stage.Workers(1)}
		switch policy {
		case "forward":
			opts = append(opts, stage.OnError(stage.Forward))
		case "handle":
			opts = append(opts, stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
				handled = append(handled, e)
				return nil
			})))
		}
		m := stage.Map(source.Slice([]int{0, 1}), func(_ context.Context, v int) (int, error) {
			calls.inc()
			if v == 1 {
				return 0, r67Err
			}
			return v, nil
		}, opts...)
		vals, fwd, err := r67Run(context.Background(), m)
		var errs []error
		switch policy {
		case "failfast":
			errs = []error{err}
		case "forward":
			errs = fwd
		case "handle":
			for _, e := range handled {
				errs = append(errs, e)
			}
		}
		if len(errs) != 1 {
			t.Fatalf("%s: got %v, %v, %v, %v", policy, vals, fwd, err, handled)
		}
		var se *stage.Error
		var pe *stage.PanicError
		if !errors.As(errs[0], &se) || !errors.As(errs[0], &pe) || pe.Value != "r67 predicate" || se.Input != 1 || se.Attempts != 1 {
			t.Errorf("%s: error %v (%+v); want item 1's *Error wrapping the predicate's *PanicError", policy, errs[0], se)
		}
		if calls.get() != 2 {
			t.Errorf("%s: %d calls; want 2 (item 1 not retried)", policy, calls.get())
		}
	}
}

// "The wait holds the worker and ends early, without a retry, when the run
// is cancelled." Backoffs of an hour and of the longest durations ("capped
// at 64·backoff and at the longest time.Duration"): after the first
// failure, no retry comes before the cancellation (a backoff that
// overflowed into a short or negative wait would retry at once, or crash),
// and the cancellation ends the wait: the sink returns context.Canceled.
// For a standard ctx and a caller's own context type. Child process.
func TestReview67RetryCancelInBackoff(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, backoff := range []time.Duration{time.Hour, math.MaxInt64 / 64, math.MaxInt64/64 + 1, math.MaxInt64 / 2, math.MaxInt64} {
			for _, kind := range r67CtxKinds {
				name := fmt.Sprintf("backoff=%d/%s", backoff, kind)
				ctx, cancel := r67Parent(kind)
				var calls r67Counter
				failed := make(chan struct{})
				m := stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
					if calls.inc() == 1 {
						defer close(failed)
					}
					return 0, r67Err
				}, stage.Retry(10, backoff), stage.Buffer(1))
				var err error
				r67Guard(t, name, func() {
					go func() {
						<-failed
						time.Sleep(r67Window) // a detector's window: see r67Window
						cancel()
					}()
					_, err = sink.Slice(ctx, m)
				})
				if !errors.Is(err, context.Canceled) || calls.get() != 1 {
					t.Errorf("%s: %v after %d calls; want context.Canceled after 1", name, err, calls.get())
				}
			}
		}
	})
}

// The backoff wait also ends when the run fails elsewhere: item 0 waits an
// hour before its retry, item 1 fails FailFast; the sink returns item 1's
// *Error, and item 0 is not called again.
func TestReview67RetryBackoffEndsOnFailure(t *testing.T) {
	var tries r67Tries
	first := make(chan struct{})
	m := stage.Map(source.Slice([]int{0, 1}), func(_ context.Context, v int) (int, error) {
		n := tries.add(v)
		if v == 0 {
			if n == 1 {
				close(first)
			}
			return 0, r67Err
		}
		<-first
		return 0, &r67AttemptErr{v, n}
	}, stage.RetryIf(3, time.Hour, func(err error) bool { return errors.Is(err, r67Err) }), stage.Workers(2), stage.Buffer(1))
	var err error
	r67Guard(t, "failure", func() { _, err = sink.Slice(context.Background(), m) })
	var se *stage.Error
	var ae *r67AttemptErr
	if !errors.As(err, &se) || !errors.As(err, &ae) || se.Input != 1 || tries.get(0) != 1 {
		t.Errorf("%v, item 0 called %d times; want item 1's *Error, item 0 called once", err, tries.get(0))
	}
}

// Timeout: "gives each call of the stage's function (each attempt, under
// Retry) a context that expires d after the call starts"; "A function that
// honours its ctx then returns an error for which errors.Is(err,
// context.DeadlineExceeded) holds, which is retryable by default. Only that
// call's context expires, not the run's".
func TestReview67TimeoutPerAttempt(t *testing.T) {
	var mu sync.Mutex
	deadlines := map[int][]time.Time{}
	var tries r67Tries
	m := stage.Map(source.Slice(r67Ints(4)), func(ctx context.Context, v int) (int, error) {
		n := tries.add(v)
		dl, ok := ctx.Deadline()
		if !ok {
			t.Errorf("item %d attempt %d: no deadline", v, n)
		}
		mu.Lock()
		deadlines[v] = append(deadlines[v], dl)
		mu.Unlock()
		if v%2 == 1 && n < 3 {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		if v == 2 {
			<-ctx.Done()
			return 0, fmt.Errorf("r67: item 2: %w", ctx.Err())
		}
		return v, nil
	}, stage.Timeout(time.Millisecond), stage.Retry(3, 0), stage.Workers(2), stage.OnError(stage.Forward))
	vals, fwd, err := r67Run(context.Background(), m)
	if err != nil || !r67SameInts(vals, []int{0, 1, 3}) || len(fwd) != 1 {
		t.Fatalf("got %v, %v, %v", vals, fwd, err)
	}
	var se *stage.Error
	if !errors.As(fwd[0], &se) || se.Input != 2 || se.Attempts != 3 || !errors.Is(fwd[0], context.DeadlineExceeded) {
		t.Errorf("forwarded %v (%+v); want item 2's DeadlineExceeded after 3 attempts", fwd[0], se)
	}
	for v, dls := range deadlines {
		for i := 1; i < len(dls); i++ {
			if !dls[i].After(dls[i-1]) {
				t.Errorf("item %d: attempt %d's deadline %v is not after attempt %d's %v", v, i+1, dls[i], i, dls[i-1])
			}
		}
	}
	// Under FailFast the expired call ends the run with its *Error, not as a
	// cancellation of the run.
	_, err = sink.Slice(context.Background(), stage.Map(source.Slice([]int{1}), func(ctx context.Context, v int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Timeout(time.Microsecond)))
	if !errors.As(err, &se) || !errors.Is(err, context.DeadlineExceeded) || se.Attempts != 1 {
		t.Errorf("FailFast: %v", err)
	}
}

// "Timeout cannot stop a function that ignores its ctx: the stage waits
// for it to return ...; what it returns then counts (nil is a success,
// even after the deadline)." Under Filter, FlatMap and Concurrent too.
func TestReview67TimeoutLateSuccess(t *testing.T) {
	wait := func(ctx context.Context) { <-ctx.Done() }
	in := func() stage.Stream[int] { return source.Slice(r67Ints(5)) }
	opt := stage.Timeout(time.Microsecond)
	m, err := sink.Slice(context.Background(), stage.Map(in(), func(ctx context.Context, v int) (int, error) { wait(ctx); return v, nil }, opt))
	if err != nil || !r67SameInts(m, r67Ints(5)) {
		t.Errorf("map: %v, %v", m, err)
	}
	f, err := sink.Slice(context.Background(), stage.Filter(in(), func(ctx context.Context, v int) (bool, error) { wait(ctx); return true, nil }, opt))
	if err != nil || !r67SameInts(f, r67Ints(5)) {
		t.Errorf("filter: %v, %v", f, err)
	}
	fm, err := sink.Slice(context.Background(), stage.FlatMap(in(), func(ctx context.Context, v int) ([]int, error) { wait(ctx); return []int{v}, nil }, opt))
	if err != nil || !r67SameInts(fm, r67Ints(5)) {
		t.Errorf("flatmap: %v, %v", fm, err)
	}
	tasks := stage.Map(in(), func(_ context.Context, v int) (func(context.Context) (int, error), error) {
		return func(ctx context.Context) (int, error) { wait(ctx); return v, nil }, nil
	})
	c, err := sink.Slice(context.Background(), stage.Concurrent(tasks, opt))
	if err != nil || !r67SameInts(c, r67Ints(5)) {
		t.Errorf("concurrent: %v, %v", c, err)
	}
	// A Timeout as long as time.Duration allows: no overflow.
	big, err := sink.Slice(context.Background(), stage.Map(in(), func(ctx context.Context, v int) (int, error) {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return v, nil
	}, stage.Timeout(math.MaxInt64)))
	if err != nil || !r67SameInts(big, r67Ints(5)) {
		t.Errorf("Timeout(MaxInt64): %v, %v", big, err)
	}
}

// r67RateLimit is RateLimit(perSecond, burst), or when shared the same
// limit through SharedRateLimit.
func r67RateLimit(shared bool, perSecond float64, burst int) stage.Option {
	if shared {
		return stage.SharedRateLimit(rate.NewLimiter(rate.Limit(perSecond), burst))
	}
	return stage.RateLimit(perSecond, burst)
}

// r67CancelAtItem runs s into sink.ForEach under r67Guard with a ctx that
// the callback cancels at the n-th item, and returns the sink's error.
func r67CancelAtItem(t *testing.T, label string, s stage.Stream[int], n int) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := 0
	var err error
	r67Guard(t, label, func() {
		err = sink.ForEach(ctx, s, func(context.Context, int) error {
			if seen++; seen == n {
				cancel()
			}
			return nil
		})
	})
	return err
}

// "Each attempt takes a token of l before it starts, as under RateLimit
// (and outside Timeout)". With a limiter whose next token comes long after
// the attempt's Timeout, a wait inside the Timeout's context would fail
// the attempt (rate.Limiter.Wait refuses a wait past a deadline); outside
// it, every item succeeds. Both RateLimit and SharedRateLimit.
func TestReview67RateLimitOutsideTimeout(t *testing.T) {
	for _, shared := range []bool{false, true} {
		rl := r67RateLimit(shared, 50, 1) // a token each 20ms
		m := stage.Map(source.Slice(r67Ints(4)), r67Id, stage.Timeout(time.Millisecond), rl, stage.Workers(2))
		var got []int
		var err error
		r67Guard(t, "outside", func() { got, err = sink.Slice(context.Background(), m) })
		if err != nil || !r67SameInts(got, r67Ints(4)) {
			t.Errorf("shared=%v: %v, %v; want every item", shared, got, err)
		}
	}
}

// "A worker waits for its token as long as it takes, holding its place;
// only the end of the run ends the wait (a deadline on the run's context is
// no reason to fail an item early)." A caller's deadline that comes before
// the token: the run ends with DeadlineExceeded as a cancellation, not as
// an item's *Error (rate.Limiter.Wait would refuse at once).
func TestReview67RateLimitDeadlineNotItemError(t *testing.T) {
	for _, shared := range []bool{false, true} {
		rl := r67RateLimit(shared, 1e-6, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		var got []int
		var err error
		r67Guard(t, "deadline", func() {
			got, err = sink.Slice(ctx, stage.Map(source.Slice(r67Ints(2)), r67Id, rl, stage.Workers(1)))
		})
		cancel()
		var se *stage.Error
		if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &se) || len(got) > 1 || (len(got) == 1 && got[0] != 0) {
			t.Errorf("shared=%v: %v, %v; want at most [0] and a DeadlineExceeded that is not an *Error", shared, got, err)
		}
	}
}

// Cancelling the caller's ctx while a worker waits for a token ends the
// wait: the sink returns context.Canceled. A standard ctx and the caller's
// own context type; the cancel comes from the sink's callback, after the
// one token was spent.
func TestReview67RateLimitCancelInWait(t *testing.T) {
	for _, shared := range []bool{false, true} {
		for _, kind := range r67CtxKinds {
			ctx, cancel := r67Parent(kind)
			rl := stage.RateLimit(math.SmallestNonzeroFloat64, 1)
			if shared {
				rl = stage.SharedRateLimit(rate.NewLimiter(1e-300, 1))
			}
			var calls r67Counter
			m := stage.Map(source.Slice(r67Ints(3)), func(_ context.Context, v int) (int, error) {
				calls.inc()
				return v, nil
			}, rl, stage.Workers(2), stage.Retry(3, 0), stage.Buffer(1))
			var err error
			var seen []int
			r67Guard(t, kind, func() {
				err = sink.ForEach(ctx, m, func(_ context.Context, v int) error {
					seen = append(seen, v)
					cancel()
					return nil
				})
			})
			if !errors.Is(err, context.Canceled) || len(seen) != 1 || calls.get() != 1 {
				t.Errorf("shared=%v/%s: %v, saw %v, %d calls; want Canceled after one item and one call", shared, kind, err, seen, calls.get())
			}
		}
	}
}

// "The bucket is per run and starts full": a burst of 5 at a rate that
// gives no token for ages lets each run's 5 items through at once, run
// after run. And the extreme rates the doc allows (+Inf, the largest
// float) let everything through. Child process: a hang fails this test.
func TestReview67RateLimitPerRunAndExtremes(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		s := stage.Map(source.Slice(r67Ints(5)), r67Id, stage.RateLimit(1e-9, 5), stage.Workers(3))
		for run := range 3 {
			got, err := sink.Slice(context.Background(), s)
			if err != nil || !r67SameInts(got, r67Ints(5)) {
				t.Errorf("run %d: %v, %v", run, got, err)
			}
		}
		for _, r := range []float64{math.Inf(1), math.MaxFloat64, 1e300} {
			for _, burst := range []int{1, math.MaxInt} {
				got, err := sink.Slice(context.Background(), stage.Map(r67Src(300, nil), r67Id, stage.RateLimit(r, burst), stage.Workers(4)))
				if err != nil || !r67SameInts(got, r67Ints(300)) {
					t.Errorf("rate %v burst %d: %d items, %v", r, burst, len(got), err)
				}
			}
		}
		// A tiny rate: the one token of the full bucket is enough for one item.
		got, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{7}), r67Id, stage.RateLimit(math.SmallestNonzeroFloat64, 1)))
		if err != nil || !r67Equal(got, []int{7}) {
			t.Errorf("tiny rate: %v, %v", got, err)
		}
	})
}

// SharedRateLimit: "if l can never give one (its burst is 0 and its limit
// not rate.Inf, or its limit is 0 and its burst spent), the attempt fails
// with ErrNoToken instead of waiting for ever"; the function is not called
// ("A try that failed without calling the function (... a limiter's
// ErrNoToken) counts as one"); the bucket is shared across runs.
func TestReview67SharedRateLimitNoToken(t *testing.T) {
	// Burst 0, finite limit: every attempt fails, f never called.
	var calls r67Counter
	f := func(_ context.Context, v int) (int, error) { calls.inc(); return v, nil }
	m := stage.Map(source.Slice(r67Ints(3)), f, stage.SharedRateLimit(rate.NewLimiter(1000, 0)), stage.OnError(stage.Forward))
	vals, fwd, err := r67Run(context.Background(), m)
	if err != nil || len(vals) != 0 || len(fwd) != 3 || calls.get() != 0 {
		t.Fatalf("burst 0: %v, %v, %v, %d calls", vals, fwd, err, calls.get())
	}
	for _, e := range fwd {
		var se *stage.Error
		if !errors.As(e, &se) || !errors.Is(e, stage.ErrNoToken) || se.Attempts != 1 {
			t.Errorf("burst 0: %v (%+v)", e, se)
		}
	}
	// Burst 0, limit Inf: every item goes through.
	got, err := sink.Slice(context.Background(), stage.Map(source.Slice(r67Ints(3)), r67Id, stage.SharedRateLimit(rate.NewLimiter(rate.Inf, 0))))
	if err != nil || !r67SameInts(got, r67Ints(3)) {
		t.Errorf("Inf/0: %v, %v", got, err)
	}
	// Limit 0, burst 3, shared across runs: run 1 spends 2, run 2 gets 1.
	l := rate.NewLimiter(0, 3)
	s := stage.Map(source.Slice(r67Ints(2)), r67Id, stage.SharedRateLimit(l), stage.OnError(stage.Forward), stage.Workers(1))
	vals, fwd, err = r67Run(context.Background(), s)
	if err != nil || len(vals) != 2 || len(fwd) != 0 {
		t.Errorf("run 1: %v, %v, %v", vals, fwd, err)
	}
	vals, fwd, err = r67Run(context.Background(), s)
	if err != nil || len(vals) != 1 || len(fwd) != 1 || !errors.Is(fwd[0], stage.ErrNoToken) {
		t.Errorf("run 2: %v, %v, %v; want 1 value and 1 ErrNoToken", vals, fwd, err)
	}
	// The limiter is shared by two stages: 4 tokens for 3 + 3 items.
	l2 := rate.NewLimiter(0, 4)
	a := stage.Map(source.Slice(r67Ints(3)), r67Id, stage.SharedRateLimit(l2), stage.OnError(stage.Forward))
	b := stage.Map(a, r67Id, stage.SharedRateLimit(l2), stage.OnError(stage.Forward))
	vals, fwd, err = r67Run(context.Background(), b)
	if err != nil || len(vals)+len(fwd) != 3 || len(vals) > 2 {
		t.Errorf("two stages: %v, %v, %v; want at most 2 values of 3", vals, fwd, err)
	}
}

// "Each attempt under Retry takes a token": with 3 tokens and no refill, an
// item that always fails is called 3 times, then its attempts fail with
// ErrNoToken, the last error, which reaches the policy; ErrNoToken's doc:
// "each refused attempt counts as one", so Attempts is 5.
func TestReview67RetryEachAttemptTakesToken(t *testing.T) {
	var calls r67Counter
	m := stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
		calls.inc()
		return 0, r67Err
	}, stage.SharedRateLimit(rate.NewLimiter(0, 3)), stage.Retry(5, 0))
	_, err := sink.Slice(context.Background(), m)
	var se *stage.Error
	if !errors.As(err, &se) || !errors.Is(err, stage.ErrNoToken) || calls.get() != 3 || se.Attempts != 5 {
		t.Errorf("%v (%+v), %d calls; want ErrNoToken after 3 calls and 5 attempts", err, se, calls.get())
	}
}

// "The last of RateLimit and SharedRateLimit given to a stage wins."
func TestReview67RateLimitLastWins(t *testing.T) {
	never := func() stage.Option { return stage.SharedRateLimit(rate.NewLimiter(1, 0)) }
	free := stage.RateLimit(math.Inf(1), 1)
	got, err := sink.Slice(context.Background(), stage.Map(source.Slice(r67Ints(3)), r67Id, never(), free))
	if err != nil || !r67SameInts(got, r67Ints(3)) {
		t.Errorf("Shared then RateLimit: %v, %v; want every item", got, err)
	}
	_, err = sink.Slice(context.Background(), stage.Map(source.Slice(r67Ints(3)), r67Id, free, never()))
	if !errors.Is(err, stage.ErrNoToken) {
		t.Errorf("RateLimit then Shared: %v; want ErrNoToken", err)
	}
	got, err = sink.Slice(context.Background(), stage.Map(source.Slice(r67Ints(3)), r67Id, never(), stage.SharedRateLimit(rate.NewLimiter(rate.Inf, 0))))
	if err != nil || !r67SameInts(got, r67Ints(3)) {
		t.Errorf("Shared then Shared: %v, %v; want every item", got, err)
	}
}

// "RateLimit lets the stage start at most perSecond calls of its function
// per second on average, with bursts of up to burst calls, across all its
// workers": at a rate that gives no new token for ages, exactly burst
// calls start in a run, however many workers wait. The sink's callback
// cancels after burst items. Buffer(1) keeps the calls (and their waits
// for a token) on the stage's own goroutines: without it the sink's
// goroutine may take a worker's place and wait for a token there, holding
// the outputs other workers finished (see the report's ambiguities).
// Workers(-1) is TestReview67RateLimitNoCallAfterEnd's.
func TestReview67RateLimitBurstAcrossWorkers(t *testing.T) {
	for _, w := range []int{1, 8} {
		for _, burst := range []int{1, 5} {
			for _, shared := range []bool{false, true} {
				name := fmt.Sprintf("w=%d/burst=%d/shared=%v", w, burst, shared)
				rl := r67RateLimit(shared, 1e-9, burst)
				var calls r67Counter
				m := stage.Map(source.Slice(r67Ints(40)), func(_ context.Context, v int) (int, error) {
					calls.inc()
					return v, nil
				}, rl, stage.Workers(w), stage.Buffer(1))
				err := r67CancelAtItem(t, name, m, burst)
				if !errors.Is(err, context.Canceled) || calls.get() != int64(burst) {
					t.Errorf("%s: %v after %d calls; want Canceled after %d", name, err, calls.get(), burst)
				}
			}
		}
	}
}
