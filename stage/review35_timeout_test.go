package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Doc: "A function that honours its ctx then returns an error for which
// errors.Is(err, context.DeadlineExceeded) holds ... The run goes on: only
// that call's context expires." Also with a caller ctx that has a deadline of
// its own (the run is not ending).
func TestReview35TimeoutError(t *testing.T) {
	for _, callerDeadline := range []bool{false, true} {
		ctx := context.Background()
		if callerDeadline {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Hour)
			defer cancel()
		}
		m := stage.Map(source.Slice(ints(5)), func(ctx context.Context, x int) (int, error) {
			if x == 2 {
				<-ctx.Done()
				return 0, ctx.Err()
			}
			return x, nil
		}, stage.Workers(1), stage.Timeout(time.Millisecond), stage.OnError(stage.Forward))
		var vals []int
		var errs []error
		var final error
		r35Run(t, func() {
			final = stage.Run(ctx, m, func(_ context.Context, v int, err error) error {
				if err != nil {
					errs = append(errs, err)
				} else {
					vals = append(vals, v)
				}
				return nil
			})
		})
		if final != nil {
			t.Errorf("deadline=%v: run err %v, want nil (the run goes on)", callerDeadline, final)
		}
		if fmt.Sprint(vals) != "[0 1 3 4]" {
			t.Errorf("deadline=%v: values %v, want [0 1 3 4]", callerDeadline, vals)
		}
		var e *stage.Error
		if len(errs) != 1 || !errors.As(errs[0], &e) || !errors.Is(errs[0], context.DeadlineExceeded) || e.Index != 2 || e.Attempts != 1 || e.Input != 2 || e.Stage != "map#1" {
			t.Errorf("deadline=%v: forwarded %v (%+v), want one *Error idx 2, attempts 1, DeadlineExceeded", callerDeadline, errs, e)
		}
	}
}

// FailFast: the sink returns the *Error wrapping DeadlineExceeded.
func TestReview35TimeoutFailFast(t *testing.T) {
	m := stage.Map(source.Slice(ints(1)), func(ctx context.Context, x int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Timeout(time.Millisecond))
	var err error
	r35Run(t, func() { _, err = sink.Slice(context.Background(), m) })
	var e *stage.Error
	if !errors.As(err, &e) || !errors.Is(err, context.DeadlineExceeded) || e.Attempts != 1 {
		t.Errorf("err = %v, want *Error of 1 attempt wrapping DeadlineExceeded", err)
	}
}

// Doc: "Timeout gives each call ... (each attempt, under Retry) a context that
// expires d after the call starts"; Retry: "Each attempt gets its own Timeout";
// "which is retryable by default"; Attempts says how many calls were made.
func TestReview35TimeoutRetry(t *testing.T) {
	const d = 5 * time.Millisecond
	var mu sync.Mutex
	var deadlines []time.Time
	var ends []time.Time
	m := stage.Map(source.Slice(ints(1)), func(ctx context.Context, x int) (int, error) {
		dl, ok := ctx.Deadline()
		mu.Lock()
		if !ok {
			t.Error("attempt without a deadline")
		}
		deadlines = append(deadlines, dl)
		mu.Unlock()
		<-ctx.Done()
		mu.Lock()
		ends = append(ends, time.Now())
		mu.Unlock()
		return 0, ctx.Err()
	}, stage.Timeout(d), stage.Retry(3, 20*time.Millisecond))
	var err error
	r35Run(t, func() { _, err = sink.Slice(context.Background(), m) })
	var e *stage.Error
	if !errors.As(err, &e) || !errors.Is(err, context.DeadlineExceeded) || e.Attempts != 3 {
		t.Fatalf("err = %v (%+v), want *Error of 3 attempts wrapping DeadlineExceeded", err, e)
	}
	for k := 1; k < len(deadlines); k++ {
		// attempt k starts after attempt k-1 ended and its backoff (>= 10ms) passed.
		start := deadlines[k].Add(-d)
		if start.Before(ends[k-1].Add(10 * time.Millisecond)) {
			t.Errorf("attempt %d: its timeout started %v before the backoff after attempt %d ended (doc: d after the call starts)", k+1, ends[k-1].Add(10*time.Millisecond).Sub(start), k)
		}
	}
}

func TestReview35TimeoutRetrySucceeds(t *testing.T) {
	n := 0
	m := stage.Map(source.Slice(ints(1)), func(ctx context.Context, x int) (int, error) {
		n++
		if n == 1 {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return 7, nil
	}, stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.Workers(1))
	var got []int
	var err error
	r35Run(t, func() { got, err = sink.Slice(context.Background(), m) })
	if err != nil || fmt.Sprint(got) != "[7]" || n != 2 {
		t.Errorf("got %v, %v after %d calls; want [7], nil after 2", got, err, n)
	}
}

// Doc: "Timeout cannot stop a function that ignores its ctx: the stage waits
// for it to return ... what it returns then counts (nil is a success, even
// after the deadline)."
func TestReview35TimeoutIgnoredCtx(t *testing.T) {
	own := errors.New("own")
	for _, ret := range []error{nil, own} {
		for _, m := range modes {
			w := &r35Watch{}
			s := stage.Map(source.Slice(ints(3)), func(ctx context.Context, x int) (int, error) {
				if x == 1 {
					<-ctx.Done() // past the deadline, then answer anyway
					return 10, ret
				}
				return x, nil
			}, m.opts(stage.Timeout(time.Millisecond), stage.OnError(stage.Forward))...)
			var vals []int
			var errs []error
			r35Run(t, func() {
				err := stage.Run(stage.Observe(context.Background(), w), s, func(_ context.Context, v int, err error) error {
					if err != nil {
						errs = append(errs, err)
					} else {
						vals = append(vals, v)
					}
					return nil
				})
				if err != nil {
					t.Errorf("%v: %v", m, err)
				}
			})
			if ret == nil {
				if len(errs) != 0 || len(vals) != 3 || !r35Contains(vals, 10) {
					t.Errorf("%v: vals %v errs %v, want the late nil to count as a success", m, vals, errs)
				}
			} else {
				if len(errs) != 1 || !errors.Is(errs[0], own) || errors.Is(errs[0], context.DeadlineExceeded) {
					t.Errorf("%v: errs %v, want the function's own error", m, errs)
				}
			}
			if f := w.failed(); (ret == nil && f != 0) || (ret != nil && f != 1) {
				t.Errorf("%v ret=%v: watcher saw %d failures", m, ret, f)
			}
		}
	}
}

func r35Contains(xs []int, v int) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}

// r35Watch counts Finished with a *Error, and cut-short ones.
type r35Watch struct {
	mu            sync.Mutex
	fails, cut, n int
}

func (o *r35Watch) Stage(stage.Info) stage.Watcher { return o }
func (o *r35Watch) Received()                      {}
func (o *r35Watch) Finished(_ time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n++
	var e *stage.Error
	if errors.As(err, &e) {
		o.fails++
	} else if err != nil {
		o.cut++
	}
}
func (o *r35Watch) Closed() {}
func (o *r35Watch) failed() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fails
}

// Doc (SharedRateLimit): "Each attempt takes a token of l before it starts,
// as under RateLimit (and outside Timeout)". The second token comes 200ms
// after the first; the call's timeout must start after it.
func TestReview35TimeoutOutsideRateLimit(t *testing.T) {
	const d = time.Hour
	for _, shared := range []bool{false, true} {
		lim := stage.RateLimit(5, 1)
		if shared {
			lim = stage.SharedRateLimit(rate.NewLimiter(5, 1))
		}
		t0 := time.Now()
		var mu sync.Mutex
		var starts []time.Time
		m := stage.Map(source.Slice(ints(2)), func(ctx context.Context, x int) (int, error) {
			dl, _ := ctx.Deadline()
			mu.Lock()
			starts = append(starts, dl.Add(-d))
			mu.Unlock()
			return x, nil
		}, stage.Workers(2), stage.Buffer(1), lim, stage.Timeout(d))
		r35Run(t, func() {
			if _, err := sink.Slice(context.Background(), m); err != nil {
				t.Error(err)
			}
		})
		if len(starts) != 2 {
			t.Fatalf("calls: %d", len(starts))
		}
		last := starts[0]
		if starts[1].After(last) {
			last = starts[1]
		}
		if last.Before(t0.Add(200 * time.Millisecond)) {
			t.Errorf("shared=%v: a call's timeout started %v after the run began, before its token could exist (200ms): it counts the rate-limit wait", shared, last.Sub(t0))
		}
	}
}

// Doc: the context "expires d after the call starts": the deadline is at
// most d after the function is entered, on every path (fused, ordered,
// KeyBy, a one-item input) and for every kind of stage.
func TestReview35TimeoutEveryPath(t *testing.T) {
	const d = time.Hour
	check := func(t *testing.T, ctx context.Context) {
		now := time.Now()
		dl, ok := ctx.Deadline()
		if !ok {
			t.Error("a call without a deadline under Timeout")
			return
		}
		if dl.After(now.Add(d)) {
			t.Errorf("deadline %v after entering the call + d", dl.Sub(now.Add(d)))
		}
	}
	for _, n := range []int{1, 300} {
		for _, m := range modes {
			for _, kb := range []bool{false, true} {
				opts := m.opts(stage.Timeout(d))
				if kb {
					opts = append(opts, stage.KeyBy(func(x int) int { return x % 3 }))
				}
				name := fmt.Sprintf("n=%d/%v/keyby=%v", n, m, kb)
				t.Run(name, func(t *testing.T) {
					var streams []stage.Stream[int]
					streams = append(streams, stage.Map(source.Slice(ints(n)), func(ctx context.Context, x int) (int, error) { check(t, ctx); return x, nil }, opts...))
					streams = append(streams, stage.Filter(source.Slice(ints(n)), func(ctx context.Context, x int) (bool, error) { check(t, ctx); return true, nil }, opts...))
					streams = append(streams, stage.FlatMap(source.Slice(ints(n)), func(ctx context.Context, x int) ([]int, error) { check(t, ctx); return []int{x}, nil }, opts...))
					streams = append(streams, stage.Apply(source.Slice(ints(n)), func(ctx context.Context, x int, emit func(int) bool) error {
						check(t, ctx)
						emit(x)
						return nil
					}, opts...))
					for i, s := range streams {
						r35Run(t, func() {
							c, err := sink.Count(context.Background(), s)
							if err != nil || c != n {
								t.Errorf("stream %d: %d %v", i, c, err)
							}
						})
					}
				})
			}
		}
	}
	// Concurrent
	tasks := make([]func(context.Context) (int, error), 300)
	for i := range tasks {
		tasks[i] = func(ctx context.Context) (int, error) { check(t, ctx); return i, nil }
	}
	r35Run(t, func() {
		if c, err := sink.Count(context.Background(), stage.Concurrent(source.Slice(tasks), stage.Timeout(d))); err != nil || c != 300 {
			t.Error(c, err)
		}
	})
}

// The call's context comes from the run's: it carries the caller's values,
// and the run's cancellation reaches it as context.Canceled.
type r35Key struct{}

func TestReview35TimeoutCtxFromRun(t *testing.T) {
	ctx := context.WithValue(context.Background(), r35Key{}, "v")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sawValue bool
	var callErr error
	m := stage.Map(source.Slice(ints(1)), func(c context.Context, x int) (int, error) {
		sawValue = c.Value(r35Key{}) == "v"
		cancel()
		<-c.Done()
		callErr = c.Err()
		return 0, c.Err()
	}, stage.Timeout(time.Hour))
	var err error
	r35Run(t, func() { _, err = sink.Slice(ctx, m) })
	if !sawValue {
		t.Error("the call's context lost the caller's values")
	}
	if !errors.Is(callErr, context.Canceled) || !errors.Is(err, context.Canceled) {
		t.Errorf("call saw %v, sink %v; want Canceled", callErr, err)
	}
	var e *stage.Error
	if errors.As(err, &e) {
		t.Errorf("a cancelled run reported an item error %v", err)
	}
}

// Doc: "Timeout panics if d <= 0."
func TestReview35TimeoutPanics(t *testing.T) {
	for _, d := range []time.Duration{0, -1, -time.Hour} {
		if r35Panics(func() { stage.Timeout(d) }) == nil {
			t.Errorf("Timeout(%v) did not panic", d)
		}
	}
	if v := r35Panics(func() { stage.Timeout(1<<63 - 1) }); v != nil {
		t.Errorf("Timeout(max) panicked: %v", v)
	}
}

// A huge Timeout must not expire at once (overflow of start+d).
func TestReview35TimeoutHuge(t *testing.T) {
	m := stage.Map(source.Slice(ints(3)), func(ctx context.Context, x int) (int, error) {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("ctx already done: %w", ctx.Err())
		}
		return x, nil
	}, stage.Timeout(1<<63-1))
	r35Run(t, func() {
		if _, err := sink.Slice(context.Background(), m); err != nil {
			t.Error(err)
		}
	})
}
