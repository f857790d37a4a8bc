package stage_test

// Adversarial tests, written from the documentation only, for how stages call
// user functions (Retry, RetryIf, Timeout, RateLimit, Workers, Concurrent) and
// handle their failures (FailFast, Forward, Handle, Budget, Error,
// PanicError, ErrBudget, ErrNilTask). Durations are used only as watchdogs,
// as lower bounds the documentation promises, or as windows in which an
// event the documentation forbids must not happen.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/acktest"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// rcAttemptErr is an error that says which item and which attempt made it.
type rcAttemptErr struct{ item, attempt int }

func (e *rcAttemptErr) Error() string { return fmt.Sprintf("item %d attempt %d", e.item, e.attempt) }

// rcCounter counts calls per item.
type rcCounter struct {
	mu    sync.Mutex
	calls map[int]int
}

func (c *rcCounter) add(x int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[int]int{}
	}
	c.calls[x]++
	return c.calls[x]
}

func (c *rcCounter) get(x int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[x]
}

// rcAll runs s with sink.All and returns the values and the errors in
// arrival order (the errors include the run's own error, if any).
func rcAll[T any](t *testing.T, ctx context.Context, s stage.Stream[T]) (vals []T, errs []error) {
	t.Helper()
	hangGuard(t, func() {
		for v, err := range sink.All(ctx, s) {
			if err != nil {
				errs = append(errs, err)
			} else {
				vals = append(vals, v)
			}
		}
	})
	return vals, errs
}

// Attempts is the number of calls made, also when RetryIf stops before the
// attempts run out; the policy sees the last attempt's error.
func TestReviewCallsAttemptsCountsCallsWhenRetryIfStops(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var c rcCounter
			fn := func(_ context.Context, x int) (int, error) {
				return 0, &rcAttemptErr{x, c.add(x)}
			}
			retryable := func(err error) bool {
				var ae *rcAttemptErr
				return errors.As(err, &ae) && ae.attempt < 2
			}
			s := stage.Map(source.Slice(ints(20)), fn, m.opts(stage.RetryIf(5, 0, retryable), stage.OnError(stage.Forward))...)
			vals, errs := rcAll(t, context.Background(), s)
			if len(vals) != 0 || len(errs) != 20 {
				t.Fatalf("%d values and %d errors, want 0 and 20", len(vals), len(errs))
			}
			for _, err := range errs {
				var se *stage.Error
				var ae *rcAttemptErr
				if !errors.As(err, &se) || !errors.As(err, &ae) {
					t.Fatalf("err = %v, want a *stage.Error of an attempt", err)
				}
				x := se.Input.(int)
				if se.Attempts != 2 || c.get(x) != 2 || ae.attempt != 2 || ae.item != x || se.Index != x {
					t.Fatalf("item %d: Attempts %d after %d calls, error of attempt %d (item %d), index %d; want 2, 2, 2, %d, %d",
						x, se.Attempts, c.get(x), ae.attempt, ae.item, se.Index, x, x)
				}
			}
		})
	}
}

// Under Retry, a Handle policy is called once per failed item (not per
// attempt), after the retries are spent, with the last attempt's error.
func TestReviewCallsHandleOncePerItemAfterRetries(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var c rcCounter
			fn := func(_ context.Context, x int) (int, error) {
				n := c.add(x)
				if x%2 == 0 {
					return 0, &rcAttemptErr{x, n}
				}
				return x, nil
			}
			seen := map[int]int{} // no lock: calls of h never overlap
			h := func(_ context.Context, e *stage.Error) error {
				var ae *rcAttemptErr
				x := e.Input.(int)
				seen[x]++
				if !errors.As(e, &ae) || ae.attempt != 3 || e.Attempts != 3 || c.get(x) != 3 || e.Index != x {
					t.Errorf("h got %+v (%v) after %d calls, want the 3rd attempt's error, Attempts 3, index %d", e, e.Err, c.get(x), x)
				}
				return nil
			}
			got, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(20)), fn, m.opts(stage.Retry(3, 0), stage.OnError(stage.Handle(h)))...))
			slices.Sort(got)
			if err != nil || len(got) != 10 {
				t.Fatalf("got %v, %v; want the 10 odd items, nil", got, err)
			}
			for x := range 20 {
				want := 0
				if x%2 == 0 {
					want = 1
				}
				if seen[x] != want {
					t.Fatalf("h saw item %d %d times, want %d", x, seen[x], want)
				}
			}
		})
	}
}

// Retry never retries a panic, even when the panic's value is an error that
// Retry would retry if returned (a deadline); errors.Is still finds the value.
func TestReviewCallsRetryNeverRetriesAPanicOfARetryableError(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var calls atomic.Int64
			fn := func(_ context.Context, x int) (int, error) {
				calls.Add(1)
				panic(context.DeadlineExceeded)
			}
			_, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{5}), fn, m.opts(stage.Retry(4, 0))...))
			var se *stage.Error
			var pe *stage.PanicError
			if !errors.As(err, &se) || !errors.As(err, &pe) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want a *stage.Error wrapping a *stage.PanicError of DeadlineExceeded", err)
			}
			if calls.Load() != 1 || se.Attempts != 1 || se.Input != 5 || se.Index != 0 {
				t.Fatalf("%d calls, Attempts %d, input %v, index %d; want 1, 1, 5, 0", calls.Load(), se.Attempts, se.Input, se.Index)
			}
		})
	}
}

// RetryIf's predicate sees a panic as a *PanicError through which errors.Is
// finds the panic's error value; a panicking predicate fails the item at
// once, with its own panic, not retried.
func TestReviewCallsRetryIfPredicateSeesAndPanics(t *testing.T) {
	errSentinel := errors.New("sentinel")
	t.Run("sees the panic", func(t *testing.T) {
		var calls, preds atomic.Int64
		fn := func(_ context.Context, x int) (int, error) {
			calls.Add(1)
			panic(errSentinel)
		}
		retryable := func(err error) bool {
			preds.Add(1)
			var pe *stage.PanicError
			if !errors.As(err, &pe) || !errors.Is(err, errSentinel) || pe.Value != errSentinel {
				t.Errorf("predicate got %v, want a *PanicError of the sentinel", err)
			}
			return false
		}
		_, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{1}), fn, stage.RetryIf(3, 0, retryable)))
		var se *stage.Error
		if !errors.As(err, &se) || !errors.Is(err, errSentinel) || se.Attempts != 1 || calls.Load() != 1 || preds.Load() != 1 {
			t.Fatalf("err = %v after %d calls and %d predicate calls; want the sentinel's *Error, 1 attempt, 1 call, 1 predicate call", err, calls.Load(), preds.Load())
		}
	})
	t.Run("predicate panics", func(t *testing.T) {
		var calls atomic.Int64
		fn := func(_ context.Context, x int) (int, error) {
			calls.Add(1)
			return 0, errBoom
		}
		retryable := func(error) bool { panic("predicate bug") }
		for _, pol := range []stage.ErrorPolicy{stage.FailFast, stage.Forward} {
			calls.Store(0)
			_, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{1}), fn, stage.RetryIf(3, 0, retryable), stage.OnError(pol)))
			var se *stage.Error
			var pe *stage.PanicError
			if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "predicate bug" {
				t.Fatalf("%v: err = %v, want a *stage.Error wrapping the predicate's *PanicError", pol, err)
			}
			if calls.Load() != 1 || se.Attempts != 1 {
				t.Fatalf("%v: %d calls, Attempts %d; want 1 and 1 (not retried)", pol, calls.Load(), se.Attempts)
			}
		}
	})
}

// Before the n-th retry the worker waits at least d/2, d = backoff·2^(n-1):
// a lower bound only.
func TestReviewCallsRetryBackoffLowerBound(t *testing.T) {
	const backoff = 8 * time.Millisecond
	var mu sync.Mutex
	var starts, ends []time.Time
	fn := func(_ context.Context, x int) (int, error) {
		mu.Lock()
		starts = append(starts, time.Now())
		mu.Unlock()
		defer func() {
			mu.Lock()
			ends = append(ends, time.Now())
			mu.Unlock()
		}()
		return 0, errBoom
	}
	var err error
	hangGuard(t, func() {
		_, err = sink.Slice(context.Background(), stage.Map(source.Slice([]int{1}), fn, stage.Workers(1), stage.Retry(4, backoff)))
	})
	var se *stage.Error
	if !errors.As(err, &se) || se.Attempts != 4 || len(starts) != 4 {
		t.Fatalf("err = %v after %d calls, want a *stage.Error of 4 attempts", err, len(starts))
	}
	for n := 1; n < 4; n++ {
		d := backoff << (n - 1)
		if gap := starts[n].Sub(ends[n-1]); gap < d/2 {
			t.Fatalf("retry %d started %v after the failed call, want at least %v", n, gap, d/2)
		}
	}
}

// A backoff is abandoned, without a retry, when a FailFast error of another
// item cancels the run; the sink reports that other item's error.
func TestReviewCallsBackoffCutByAnotherItemsFailure(t *testing.T) {
	errFatal := errors.New("fatal")
	for _, ordered := range []bool{false, true} {
		var c rcCounter
		zeroFailed := make(chan struct{})
		fn := func(_ context.Context, x int) (int, error) {
			switch x {
			case 0:
				if c.add(0) == 1 {
					close(zeroFailed)
				}
				return 0, errBoom
			case 1:
				<-zeroFailed
				return 0, errFatal
			}
			return x, nil
		}
		retryable := func(err error) bool { return errors.Is(err, errBoom) }
		opts := []stage.Option{stage.Workers(2), stage.RetryIf(3, time.Hour, retryable)}
		if ordered {
			opts = append(opts, stage.Ordered())
		}
		var err error
		hangGuard(t, func() {
			_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(2)), fn, opts...))
		})
		var se *stage.Error
		if !errors.As(err, &se) || !errors.Is(err, errFatal) || se.Input != 1 || se.Index != 1 {
			t.Fatalf("ordered=%v: err = %v, want item 1's *stage.Error (errFatal)", ordered, err)
		}
		if c.get(0) != 1 {
			t.Fatalf("ordered=%v: item 0 was called %d times, want 1 (its backoff ended with the run)", ordered, c.get(0))
		}
	}
}

// Each attempt gets its own Timeout: a fresh deadline per call, in a context
// that is not done when the call starts.
func TestReviewCallsTimeoutFreshDeadlinePerAttempt(t *testing.T) {
	var mu sync.Mutex
	var deadlines []time.Time
	fn := func(ctx context.Context, x int) (int, error) {
		dl, ok := ctx.Deadline()
		if !ok || ctx.Err() != nil {
			return 0, fmt.Errorf("attempt ctx: deadline %v, err %v", ok, ctx.Err())
		}
		mu.Lock()
		deadlines = append(deadlines, dl)
		n := len(deadlines)
		mu.Unlock()
		if n < 3 {
			return 0, errBoom
		}
		return x, nil
	}
	got, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{9}), fn, stage.Workers(1), stage.Timeout(time.Hour), stage.Retry(3, 4*time.Millisecond)))
	if err != nil || !slices.Equal(got, []int{9}) || len(deadlines) != 3 {
		t.Fatalf("got %v, %v after %d calls; want [9], nil after 3", got, err, len(deadlines))
	}
	for i := 1; i < 3; i++ {
		if !deadlines[i].After(deadlines[i-1]) {
			t.Fatalf("attempt %d's deadline %v is not after attempt %d's %v: the timeout is not per attempt", i+1, deadlines[i], i, deadlines[i-1])
		}
	}
}

// A call that ignores its ctx under Timeout: the stage waits for it and what
// it returns counts: nil is a success (not retried), an error reaches the
// policy unchanged (not replaced by the deadline).
func TestReviewCallsTimeoutIgnoredResultCounts(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var calls atomic.Int64
			late := func(ctx context.Context, x int) (int, error) {
				calls.Add(1)
				<-ctx.Done() // past the deadline, then ignore it
				return x + 100, nil
			}
			got, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(3)), late, m.opts(stage.Timeout(time.Millisecond), stage.Retry(3, 0))...))
			slices.Sort(got)
			if err != nil || !slices.Equal(got, []int{100, 101, 102}) || calls.Load() != 3 {
				t.Fatalf("got %v, %v after %d calls; want [100 101 102], nil after 3 (a late nil is a success)", got, err, calls.Load())
			}

			lateErr := func(ctx context.Context, x int) (int, error) {
				<-ctx.Done()
				return 0, errBoom
			}
			_, err = sink.Slice(context.Background(), stage.Map(source.Slice([]int{4}), lateErr, m.opts(stage.Timeout(time.Millisecond))...))
			var se *stage.Error
			if !errors.As(err, &se) || se.Err != errBoom || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want a *stage.Error whose Err is the function's own error, unchanged", err)
			}
		})
	}
}

// A Timeout expires one call's context only: the run goes on, and a Handle
// policy's h gets the run's context (not the expired attempt's).
func TestReviewCallsTimeoutEndsOnlyThatCall(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			fn := func(ctx context.Context, x int) (int, error) {
				if x == 3 {
					<-ctx.Done()
					return 0, ctx.Err()
				}
				return x, nil
			}
			var handled []int
			h := func(ctx context.Context, e *stage.Error) error {
				if ctx.Err() != nil {
					t.Errorf("h's ctx is done (%v), want the run's context", context.Cause(ctx))
				}
				if !errors.Is(e, context.DeadlineExceeded) || e.Attempts != 2 || e.Index != 3 {
					t.Errorf("h got %+v, want DeadlineExceeded (retryable by default) after 2 attempts, index 3", e)
				}
				handled = append(handled, e.Input.(int))
				return nil
			}
			var got []int
			var err error
			hangGuard(t, func() {
				got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(8)), fn, m.opts(stage.Timeout(2*time.Millisecond), stage.Retry(2, 0), stage.OnError(stage.Handle(h)))...))
			})
			slices.Sort(got)
			if err != nil || !slices.Equal(got, []int{0, 1, 2, 4, 5, 6, 7}) || !slices.Equal(handled, []int{3}) {
				t.Fatalf("got %v, %v, handled %v; want every item but 3, nil, [3]", got, err, handled)
			}
		})
	}
}

// Each attempt under Retry takes a RateLimit token: with a burst of 2 and no
// refill in sight, an item that always fails is called twice, and its third
// attempt waits until the run is cancelled.
func TestReviewCallsRateLimitEachAttemptTakesAToken(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	second := make(chan struct{})
	third := make(chan struct{})
	fn := func(_ context.Context, x int) (int, error) {
		switch calls.Add(1) {
		case 2:
			close(second)
		case 3:
			close(third)
		}
		return 0, errBoom
	}
	go func() {
		<-second
		select { // a window in which a third call must not come
		case <-third:
		case <-time.After(300 * time.Millisecond):
		}
		cancel()
	}()
	var err error
	hangGuard(t, func() {
		_, err = sink.Slice(ctx, stage.Map(source.Slice([]int{1}), fn, stage.Workers(1), stage.RateLimit(0.001, 2), stage.Retry(5, 0)))
	})
	if calls.Load() != 2 || !errors.Is(err, context.Canceled) {
		t.Fatalf("%d calls, err %v; want 2 calls (the burst) and context.Canceled", calls.Load(), err)
	}
}

// RateLimit lets a whole burst start at once (the burst calls block until all
// have started) and no more than the burst, across all workers.
func TestReviewCallsRateLimitBurstAtOnceAndNoMore(t *testing.T) {
	for _, m := range []mode{{8, false}, {8, true}, {-1, false}} {
		t.Run(m.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var started atomic.Int64
			burst := make(chan struct{})
			extra := make(chan struct{})
			fn := func(ctx context.Context, x int) (int, error) {
				switch started.Add(1) {
				case 3:
					close(burst)
				case 4:
					close(extra)
				}
				<-burst
				return x, nil
			}
			go func() {
				<-burst
				select {
				case <-extra:
				case <-time.After(300 * time.Millisecond):
				}
				cancel()
			}()
			var err error
			hangGuard(t, func() {
				_, err = sink.Slice(ctx, stage.Map(source.Slice(ints(20)), fn, m.opts(stage.RateLimit(0.001, 3))...))
			})
			if started.Load() != 3 || !errors.Is(err, context.Canceled) {
				t.Fatalf("%d calls started, err %v; want 3 (the burst) and context.Canceled", started.Load(), err)
			}
		})
	}
}

// Workers(n): at most n calls at once and, with n items ready and calls that
// block until n have started, exactly n, for every kind of stage.
func TestReviewCallsWorkersExactForEveryKind(t *testing.T) {
	const n, items = 3, 24
	type call func(x int) // the user function's body, shared by every kind
	kinds := map[string]func(opts []stage.Option, body call) stage.Stream[int]{
		"filter": func(opts []stage.Option, body call) stage.Stream[int] {
			return stage.Filter(source.Slice(ints(items)), func(_ context.Context, x int) (bool, error) { body(x); return true, nil }, opts...)
		},
		"flatmap": func(opts []stage.Option, body call) stage.Stream[int] {
			return stage.FlatMap(source.Slice(ints(items)), func(_ context.Context, x int) ([]int, error) { body(x); return []int{x}, nil }, opts...)
		},
		"apply": func(opts []stage.Option, body call) stage.Stream[int] {
			return stage.Apply(source.Slice(ints(items)), func(_ context.Context, x int, emit func(int) bool) error { body(x); emit(x); return nil }, opts...)
		},
		"concurrent": func(opts []stage.Option, body call) stage.Stream[int] {
			tasks := make([]func(context.Context) (int, error), items)
			for i := range tasks {
				tasks[i] = func(context.Context) (int, error) { body(i); return i, nil }
			}
			return stage.Concurrent(source.Slice(tasks), opts...)
		},
		"map+retry": func(opts []stage.Option, body call) stage.Stream[int] {
			var c rcCounter
			return stage.Map(source.Slice(ints(items)), func(_ context.Context, x int) (int, error) {
				body(x)
				if c.add(x) == 1 {
					return 0, errBoom
				}
				return x, nil
			}, append(opts, stage.Retry(2, 0))...)
		},
	}
	for name, build := range kinds {
		for _, ordered := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/ordered=%v", name, ordered), func(t *testing.T) {
				var g gauge
				var started atomic.Int64
				gate := make(chan struct{})
				body := func(int) {
					g.enter()
					defer g.leave()
					if started.Add(1) == n {
						close(gate)
					}
					<-gate
				}
				opts := []stage.Option{stage.Workers(n)}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				hangGuard(t, func() {
					got, err := sink.Count(context.Background(), build(opts, body))
					if err != nil || got != items {
						t.Errorf("%d items, %v; want %d, nil", got, err, items)
					}
				})
				if g.max != n {
					t.Fatalf("at most %d calls at once, want exactly %d", g.max, n)
				}
			})
		}
	}
}

// Handle's h runs in a worker and holds it: calls and h together never
// exceed Workers(n).
func TestReviewCallsHandlerHoldsAWorker(t *testing.T) {
	for _, m := range []mode{{2, false}, {2, true}} {
		t.Run(m.String(), func(t *testing.T) {
			var g gauge
			var done atomic.Int64
			fiveDone := make(chan struct{})
			fn := func(_ context.Context, x int) (int, error) {
				g.enter()
				defer g.leave()
				if x == 0 {
					return 0, errBoom
				}
				if done.Add(1) == 5 {
					close(fiveDone)
				}
				return x, nil
			}
			h := func(context.Context, *stage.Error) error {
				g.enter()
				defer g.leave()
				<-fiveDone // other items go on meanwhile, on the other worker
				return nil
			}
			hangGuard(t, func() {
				got, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(30)), fn, m.opts(stage.Buffer(8), stage.OnError(stage.Handle(h)))...))
				if err != nil || got != 29 {
					t.Errorf("%d items, %v; want 29, nil", got, err)
				}
			})
			if g.max > 2 {
				t.Fatalf("%d calls and handlers at once, want at most 2 (h holds a worker)", g.max)
			}
		})
	}
}

// Concurrent: a task's error, a panic, a nil task and a task that succeeds
// after a retry, each under the stage's options; results in task order with
// Ordered.
func TestReviewCallsConcurrentTasks(t *testing.T) {
	var retried atomic.Int64
	tasks := []func(context.Context) (int, error){
		func(context.Context) (int, error) { return 0, nil },
		func(context.Context) (int, error) { return 0, errBoom },
		nil,
		func(context.Context) (int, error) { panic("task bug") },
		func(ctx context.Context) (int, error) {
			if _, ok := ctx.Deadline(); !ok {
				return 0, errors.New("no Timeout deadline in a task's ctx")
			}
			return 4, nil
		},
		func(context.Context) (int, error) {
			if retried.Add(1) == 1 {
				return 0, errors.New("transient")
			}
			return 5, nil
		},
		func(context.Context) (int, error) { return 6, nil },
	}
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			retried.Store(0)
			var dead []*stage.Error
			h := func(_ context.Context, e *stage.Error) error { dead = append(dead, e); return nil }
			retryable := func(err error) bool { return err.Error() == "transient" }
			s := stage.Concurrent(source.Slice(tasks), m.opts(stage.Timeout(time.Hour), stage.RetryIf(2, 0, retryable), stage.OnError(stage.Handle(h)))...)
			got, err := sink.Slice(context.Background(), s)
			if err != nil {
				t.Fatalf("err = %v, want nil", err)
			}
			if !m.ordered && m.workers != 1 {
				slices.Sort(got)
			}
			if !slices.Equal(got, []int{0, 4, 5, 6}) {
				t.Fatalf("got %v, want [0 4 5 6] (in task order when ordered)", got)
			}
			slices.SortFunc(dead, func(a, b *stage.Error) int { return a.Index - b.Index })
			if len(dead) != 3 {
				t.Fatalf("h saw %d failed tasks, want 3", len(dead))
			}
			var pe *stage.PanicError
			switch {
			case dead[0].Index != 1 || dead[0].Err != errBoom:
				t.Fatalf("first failure %+v, want task 1's own error", dead[0])
			case dead[1].Index != 2 || !errors.Is(dead[1], stage.ErrNilTask):
				t.Fatalf("second failure %+v, want task 2 wrapping ErrNilTask", dead[1])
			case dead[2].Index != 3 || !errors.As(dead[2], &pe) || pe.Value != "task bug" || dead[2].Attempts != 1:
				t.Fatalf("third failure %+v, want task 3's *PanicError after 1 attempt", dead[2])
			}
			for _, e := range dead {
				if e.Stage != "concurrent#1" {
					t.Fatalf("failure of stage %q, want concurrent#1", e.Stage)
				}
			}
			if retried.Load() != 2 {
				t.Fatalf("task 5 ran %d times, want 2 (one retry)", retried.Load())
			}
		})
	}
}

// A nil task under FailFast ends the run with an *Error wrapping ErrNilTask.
func TestReviewCallsNilTaskFailFast(t *testing.T) {
	tasks := []func(context.Context) (string, error){
		func(context.Context) (string, error) { return "a", nil },
		nil,
	}
	_, err := sink.Slice(context.Background(), stage.Concurrent(source.Slice(tasks), stage.Workers(1), stage.Name("tasks")))
	var se *stage.Error
	if !errors.As(err, &se) || !errors.Is(err, stage.ErrNilTask) || se.Stage != "tasks" || se.Index != 1 {
		t.Fatalf("err = %v, want the *stage.Error of task 1 (stage tasks) wrapping ErrNilTask", err)
	}
}

// A Handle error ends the run as FailFast does: calls in flight see the run's
// context cancelled with a cause that is h's error, no new item starts, and
// the sink returns h's error.
func TestReviewCallsHandleErrorEndsTheRun(t *testing.T) {
	errDLQ := errors.New("dead-letter queue down")
	t.Run("one worker", func(t *testing.T) {
		var calls atomic.Int64
		fn := func(_ context.Context, x int) (int, error) {
			calls.Add(1)
			return 0, errBoom
		}
		h := func(context.Context, *stage.Error) error { return errDLQ }
		_, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(50)), fn, stage.Workers(1), stage.OnError(stage.Handle(h))))
		if !errors.Is(err, errDLQ) || calls.Load() != 1 {
			t.Fatalf("err = %v after %d calls; want h's error after 1 call", err, calls.Load())
		}
	})
	t.Run("in flight", func(t *testing.T) {
		for _, ordered := range []bool{false, true} {
			var calls atomic.Int64
			inFlight := make(chan struct{})
			var cause error
			fn := func(ctx context.Context, x int) (int, error) {
				calls.Add(1)
				if x == 0 {
					<-inFlight
					return 0, errBoom
				}
				close(inFlight)
				<-ctx.Done()
				cause = context.Cause(ctx)
				return 0, ctx.Err()
			}
			h := func(context.Context, *stage.Error) error { return errDLQ }
			opts := []stage.Option{stage.Workers(2), stage.OnError(stage.Handle(h))}
			if ordered {
				opts = append(opts, stage.Ordered())
			}
			var err error
			hangGuard(t, func() {
				_, err = sink.Count(context.Background(), stage.Map(source.Slice(ints(50)), fn, opts...))
			})
			if !errors.Is(err, errDLQ) || !errors.Is(cause, errDLQ) || calls.Load() != 2 {
				t.Fatalf("ordered=%v: err = %v, cause in flight %v, %d calls; want h's error, h's error, 2", ordered, err, cause, calls.Load())
			}
		}
	})
}

// Budget(n): the first n failures go to h and are dropped, the (n+1)th fails
// the run with ErrBudget and that item's *Error, and no new item starts.
// Item 4 fails only once item 3 was committed (its Ack told nil): outputs
// still on their way when the run fails may be dropped (no item is
// delivered once the run is cancelled), so without the gate the sink could
// hold any prefix of [1 3].
func TestReviewCallsBudget(t *testing.T) {
	t.Run("n+1th", func(t *testing.T) {
		src, committed := acktest.CommitGated(20, 3)
		var calls atomic.Int64
		fn := func(_ context.Context, x int) (int, error) {
			calls.Add(1)
			if x == 4 {
				<-committed()
			}
			if x%2 == 0 {
				return 0, &rcAttemptErr{x, 1}
			}
			return x, nil
		}
		var seen []int
		pol := stage.Budget(2, func(_ context.Context, e *stage.Error) error { seen = append(seen, e.Input.(int)); return nil })
		var got []int
		var err error
		// Buffer(1): item 4's call waits for its consumer to take item 3
		// (see stage.Workers).
		hangGuard(t, func() {
			got, err = sink.Slice(context.Background(), stage.Map(src, fn, stage.Workers(1), stage.Buffer(1), stage.Name("b"), stage.OnError(pol)))
		})
		var se *stage.Error
		var ae *rcAttemptErr
		if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || !errors.As(err, &ae) {
			t.Fatalf("err = %v, want ErrBudget and the item's *stage.Error", err)
		}
		if se.Input != 4 || se.Index != 4 || se.Stage != "b" || ae.item != 4 {
			t.Fatalf("the failing *Error is %+v, want item 4 of stage b", se)
		}
		if !slices.Equal(seen, []int{0, 2}) || !slices.Equal(got, []int{1, 3}) || calls.Load() != 5 {
			t.Fatalf("h saw %v, got %v after %d calls; want [0 2], [1 3] after 5", seen, got, calls.Load())
		}
	})
	t.Run("zero and nil h", func(t *testing.T) {
		_, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(10)), failMultiplesOf3, stage.OnError(stage.Budget(0, nil))))
		var se *stage.Error
		if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || !errors.Is(err, errBoom) {
			t.Fatalf("err = %v, want ErrBudget with the first failure's *stage.Error", err)
		}
	})
	t.Run("h error", func(t *testing.T) {
		errH := errors.New("h failed")
		_, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(10)), failMultiplesOf3, stage.OnError(stage.Budget(5, func(context.Context, *stage.Error) error { return errH }))))
		if !errors.Is(err, errH) {
			t.Fatalf("err = %v, want h's error", err)
		}
	})
	t.Run("per stage", func(t *testing.T) {
		// One policy value for two stages: each stage has its own count.
		pol := stage.Budget(1, nil)
		failOne := func(bad int) func(context.Context, int) (int, error) {
			return func(_ context.Context, x int) (int, error) {
				if x == bad {
					return 0, errBoom
				}
				return x, nil
			}
		}
		s := stage.Map(source.Slice(ints(10)), failOne(2), stage.OnError(pol))
		s = stage.Map(s, failOne(5), stage.OnError(pol))
		for run := range 2 {
			n, err := sink.Count(context.Background(), s)
			if err != nil || n != 8 {
				t.Fatalf("run %d: %d, %v; want 8, nil (one failure per stage, budget 1 each)", run, n, err)
			}
		}
	})
	t.Run("h never overlaps", func(t *testing.T) {
		var g gauge
		h := func(context.Context, *stage.Error) error {
			g.enter()
			defer g.leave()
			for range 1000 {
				time.Sleep(0) // yields; lets another handler call overlap if it can
			}
			return nil
		}
		fail := func(context.Context, int) (int, error) { return 0, errBoom }
		_, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(64)), fail, stage.Workers(8), stage.OnError(stage.Budget(64, h))))
		if err != nil || g.max != 1 {
			t.Fatalf("err = %v, %d handler calls at once; want nil, 1", err, g.max)
		}
	})
	t.Run("negative panics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("Budget(-1, nil) did not panic")
			}
		}()
		stage.Budget(-1, nil)
	})
}

// Error.Index and Input name the item, on every path a stage may take (the
// consumer's goroutines for cheap calls over a slice included); downstream of
// an unordered multi-worker stage, Index is the receiving position, so the
// indexes are 0..n-1, each once, forwarded errors counting.
func TestReviewCallsErrorIndexAndInput(t *testing.T) {
	const items = 2000
	failSevens := func(_ context.Context, x int) (int, error) {
		if x%7 == 0 {
			return 0, errBoom
		}
		return x, nil
	}
	for _, m := range append(modes, mode{0, false}, mode{0, true}) {
		t.Run(m.String(), func(t *testing.T) {
			s := stage.Map(source.Slice(ints(items)), failSevens, m.opts(stage.OnError(stage.Forward))...)
			vals, errs := rcAll(t, context.Background(), s)
			if len(vals)+len(errs) != items || len(errs) != (items+6)/7 {
				t.Fatalf("%d values and %d errors, want %d and %d", len(vals), len(errs), items-(items+6)/7, (items+6)/7)
			}
			for _, err := range errs {
				var se *stage.Error
				if !errors.As(err, &se) || se.Err != errBoom || se.Stage != "map#1" || se.Attempts != 1 {
					t.Fatalf("err = %+v, want a map#1 *stage.Error of errBoom after 1 attempt", err)
				}
				if x, ok := se.Input.(int); !ok || x != se.Index || x%7 != 0 {
					t.Fatalf("Input %v (%T), Index %d; want a multiple of 7 equal to the index", se.Input, se.Input, se.Index)
				}
			}
		})
	}
	t.Run("ordered places", func(t *testing.T) {
		// With Ordered, a forwarded error leaves in its input position.
		s := stage.Map(source.Slice(ints(100)), failSevens, stage.Workers(4), stage.Ordered(), stage.OnError(stage.Forward))
		pos := 0
		hangGuard(t, func() {
			for v, err := range sink.All(context.Background(), s) {
				var se *stage.Error
				if err != nil && (!errors.As(err, &se) || se.Index != pos) {
					t.Errorf("position %d: error %v, want the *stage.Error of item %d", pos, err, pos)
				} else if err == nil && v != pos {
					t.Errorf("position %d: value %d", pos, v)
				}
				pos++
			}
		})
	})
	t.Run("receiving position downstream", func(t *testing.T) {
		s := stage.Map(source.Slice(ints(200)), failSevens, stage.Workers(4), stage.OnError(stage.Forward))
		s = stage.Map(s, func(_ context.Context, x int) (int, error) { return 0, errBoom }, stage.Workers(4), stage.OnError(stage.Forward))
		_, errs := rcAll(t, context.Background(), s)
		var idx []int
		for _, err := range errs {
			var se *stage.Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *stage.Error", err)
			}
			if se.Stage == "map#2" {
				idx = append(idx, se.Index)
				if x := se.Input.(int); x%7 == 0 {
					t.Fatalf("map#2 was called with %d, whose error map#1 forwarded", x)
				}
			}
		}
		slices.Sort(idx)
		if len(errs) != 200 || len(idx) != 200-(200+6)/7 {
			t.Fatalf("%d errors, %d of map#2; want 200 and %d", len(errs), len(idx), 200-(200+6)/7)
		}
		// Index counts the forwarded errors too, so the map#2 indexes are a
		// subset of 0..199 without repeats.
		for i := 1; i < len(idx); i++ {
			if idx[i] == idx[i-1] || idx[i] < 0 || idx[i] >= 200 {
				t.Fatalf("map#2 indexes %v: repeated or out of 0..199", idx)
			}
		}
	})
}

// Error and PanicError: messages, Unwrap, errors.Is through both to a panic
// value that is an error, and a stack that shows the panicking function.
func TestReviewCallsErrorTypes(t *testing.T) {
	errValue := errors.New("the panic's value")
	_, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(4)), rcPanicsOnTwo(errValue), stage.Workers(1), stage.Name("parse")))
	var se *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) || !errors.Is(err, errValue) {
		t.Fatalf("err = %v, want a *stage.Error wrapping a *stage.PanicError of the value", err)
	}
	if se.Unwrap() != se.Err || se.Err != error(pe) || pe.Unwrap() != errValue || pe.Value != errValue {
		t.Fatalf("Unwrap chain: %v -> %v -> %v, want *Error -> *PanicError -> the value", se, se.Unwrap(), pe.Unwrap())
	}
	msg := se.Error()
	if !strings.Contains(msg, "parse") || !strings.Contains(msg, "2") || !strings.Contains(msg, errValue.Error()) {
		t.Fatalf("Error() = %q, want the stage, the index and the cause", msg)
	}
	if !strings.Contains(pe.Error(), errValue.Error()) {
		t.Fatalf("PanicError.Error() = %q, want the panic's value", pe.Error())
	}
	if !bytes.Contains(pe.Stack, []byte("rcPanicsOnTwo")) {
		t.Fatalf("the stack does not show the panicking function:\n%s", pe.Stack)
	}
	// A panic value that is not an error unwraps to nil.
	if (&stage.PanicError{Value: 42}).Unwrap() != nil {
		t.Fatal("PanicError{Value: 42}.Unwrap() is not nil")
	}
}

func rcPanicsOnTwo(v error) func(context.Context, int) (int, error) {
	return func(_ context.Context, x int) (int, error) {
		if x == 2 {
			panic(v)
		}
		return x, nil
	}
}

// Apply: outputs a failed attempt emitted stay emitted, with Retry and with a
// Handle policy that drops the item.
func TestReviewCallsApplyKeepsOutputsOfFailedAttempts(t *testing.T) {
	var c rcCounter
	f := func(_ context.Context, x int, emit func(string) bool) error {
		n := c.add(x)
		emit(fmt.Sprintf("%d/%d", x, n))
		if x == 0 || n == 1 {
			return errBoom // item 0 always fails; item 1 fails once
		}
		return nil
	}
	var handled []int
	h := func(_ context.Context, e *stage.Error) error { handled = append(handled, e.Input.(int)); return nil }
	got, err := sink.Slice(context.Background(), stage.Apply(source.Slice(ints(2)), f, stage.Workers(1), stage.Retry(2, 0), stage.OnError(stage.Handle(h))))
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"0/1", "0/2", "1/1", "1/2"}) || !slices.Equal(handled, []int{0}) {
		t.Fatalf("got %v, %v, handled %v; want every attempt's output, nil, [0]", got, err, handled)
	}
}

// Budget counts failed items, not attempts; the first n failures all reach h
// and no more, whatever the concurrency.
func TestReviewCallsBudgetCountsItemsNotAttempts(t *testing.T) {
	var calls atomic.Int64
	fail := func(context.Context, int) (int, error) { calls.Add(1); return 0, errBoom }
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			calls.Store(0)
			// One failing item, three attempts: within a budget of 1.
			n, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(1)), fail, m.opts(stage.Retry(3, 0), stage.OnError(stage.Budget(1, nil)))...))
			if err != nil || n != 0 || calls.Load() != 3 {
				t.Fatalf("%d, %v after %d calls; want 0, nil after 3 (one failed item)", n, err, calls.Load())
			}
			// Every item fails: h sees exactly the first 3, the 4th fails the run.
			var seen int
			h := func(context.Context, *stage.Error) error { seen++; return nil }
			_, err = sink.Count(context.Background(), stage.Map(source.Slice(ints(40)), fail, m.opts(stage.Retry(2, 0), stage.OnError(stage.Budget(3, h)))...))
			var se *stage.Error
			if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || se.Attempts != 2 || seen != 3 {
				t.Fatalf("err = %v, h saw %d; want ErrBudget with a *stage.Error of 2 attempts, and 3", err, seen)
			}
		})
	}
}

// A call ended by the run's cancellation is not retried: the backoff wait
// ends at once without a retry.
func TestReviewCallsNoRetryAfterCancellation(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var calls atomic.Int64
			fn := func(ctx context.Context, x int) (int, error) {
				calls.Add(1)
				cancel()
				<-ctx.Done()
				return 0, ctx.Err()
			}
			var err error
			hangGuard(t, func() {
				_, err = sink.Count(ctx, stage.Map(source.Slice(ints(1)), fn, m.opts(stage.Retry(5, time.Millisecond))...))
			})
			if !errors.Is(err, context.Canceled) || calls.Load() != 1 {
				t.Fatalf("err = %v after %d calls; want context.Canceled after 1", err, calls.Load())
			}
		})
	}
}

// Index and Input on the other kinds' paths (cheap calls over a slice may run
// in the consumer's goroutines).
func TestReviewCallsErrorIndexOtherKinds(t *testing.T) {
	const items = 2000
	check := func(t *testing.T, errs []error, kind string) {
		t.Helper()
		if len(errs) != (items+6)/7 {
			t.Fatalf("%d errors, want %d", len(errs), (items+6)/7)
		}
		for _, err := range errs {
			var se *stage.Error
			if !errors.As(err, &se) || se.Stage != kind+"#1" || !errors.Is(err, errBoom) {
				t.Fatalf("err = %v, want a %s#1 *stage.Error of errBoom", err, kind)
			}
			if x, ok := se.Input.(int); !ok || x != se.Index || x%7 != 0 {
				t.Fatalf("Input %v, Index %d; want a multiple of 7 equal to the index", se.Input, se.Index)
			}
		}
	}
	for _, m := range []mode{{0, false}, {4, false}, {4, true}} {
		t.Run(m.String(), func(t *testing.T) {
			_, errs := rcAll(t, context.Background(), stage.Filter(source.Slice(ints(items)), func(_ context.Context, x int) (bool, error) {
				if x%7 == 0 {
					return false, errBoom
				}
				return true, nil
			}, m.opts(stage.OnError(stage.Forward))...))
			check(t, errs, "filter")
			_, errs = rcAll(t, context.Background(), stage.FlatMap(source.Slice(ints(items)), func(_ context.Context, x int) ([]int, error) {
				if x%7 == 0 {
					return nil, errBoom
				}
				return []int{x, x}, nil
			}, m.opts(stage.OnError(stage.Forward))...))
			check(t, errs, "flatmap")
		})
	}
}

// Forwarded errors pass through a later stage without a call: they take no
// RateLimit token and no retry, and keep their place with Ordered.
func TestReviewCallsForwardedErrorsTakeNoTokenNorCall(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a watchdog only
			defer cancel()
			s := stage.Map(source.Slice(ints(5)), func(_ context.Context, x int) (int, error) {
				if x < 4 {
					return 0, errBoom
				}
				return x, nil
			}, m.opts(stage.OnError(stage.Forward))...)
			var calls atomic.Int64
			s = stage.Map(s, func(_ context.Context, x int) (int, error) { calls.Add(1); return x, nil },
				m.opts(stage.RateLimit(0.001, 1), stage.Retry(3, 0))...)
			vals, errs := rcAll(t, ctx, s)
			if !slices.Equal(vals, []int{4}) || len(errs) != 4 || calls.Load() != 1 {
				t.Fatalf("values %v, %d errors (%v), %d calls; want [4], the 4 forwarded errors, 1 call", vals, len(errs), errors.Join(errs...), calls.Load())
			}
			for i, err := range errs {
				var se *stage.Error
				if !errors.As(err, &se) || se.Stage != "map#1" || (m.ordered && se.Index != i) {
					t.Fatalf("error %d: %v, want map#1's *stage.Error (in input order when ordered)", i, err)
				}
			}
		})
	}
}
