package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// RateLimit: "A worker waits for its token as long as it takes ... only the
// end of the run ends the wait (a deadline on the run's context is no reason
// to fail an item early)." A token that comes long after the run's deadline
// must not fail the item early: the run ends at the deadline with
// DeadlineExceeded, and no item is forwarded with a rate error.
func TestReview14RateLimitDeadlineIsNoReasonToFailEarly(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			// The deadline is only the trigger: if it passed before the
			// first call (a slow machine), no item was seen to wait for
			// its token, and the run goes again with a deadline twice as
			// long (and a fresh bucket). Only one past 30 s fails for want
			// of a call.
			for d := 300 * time.Millisecond; ; d *= 2 {
				var opt stage.Option
				if shared {
					opt = stage.SharedRateLimit(rate.NewLimiter(rate.Limit(0.001), 1))
				} else {
					opt = stage.RateLimit(0.001, 1) // one token per 1000 s
				}
				var calls atomic.Int64
				s := stage.Map(source.Slice(ints(3)), func(_ context.Context, i int) (int, error) {
					calls.Add(1)
					return i, nil
				}, stage.Workers(1), opt, stage.OnError(stage.Forward))
				ctx, cancel := context.WithTimeout(context.Background(), d)
				var got []int
				var err error
				r14Watchdog(t, func() { got, err = sink.Slice(ctx, s) })
				cancel()
				var fe *sink.ForwardedError
				if errors.As(err, &fe) {
					t.Errorf("items were forwarded as failures: %v", fe)
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("sink: %v; want DeadlineExceeded", err)
				}
				if calls.Load() == 0 && len(got) == 0 && d < 30*time.Second {
					t.Logf("the deadline (%v) passed before the first call: again with a longer one", d)
					continue
				}
				if calls.Load() != 1 || len(got) > 1 {
					t.Errorf("calls %d, got %v; want 1 call", calls.Load(), got)
				}
				return
			}
		})
	}
}

// SharedRateLimit: ErrNoToken only when l can never give a token. A limiter
// of rate.Inf gives every token whatever its burst; a limit of 0 with a burst
// of 2 gives two tokens, then ErrNoToken instead of waiting for ever.
func TestReview14SharedRateLimitNoTokenEdges(t *testing.T) {
	t.Run("inf-burst0", func(t *testing.T) {
		s := stage.Map(source.Slice(ints(5)), double, stage.Workers(2), stage.SharedRateLimit(rate.NewLimiter(rate.Inf, 0)))
		var got []int
		var err error
		r14Watchdog(t, func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil || len(got) != 5 {
			t.Errorf("got %v, %v; an infinite limiter can always give a token", got, err)
		}
	})
	t.Run("zero-limit-burst2", func(t *testing.T) {
		s := stage.Map(source.Slice(ints(5)), double, stage.Workers(1), stage.Retry(3, 0),
			stage.SharedRateLimit(rate.NewLimiter(0, 2)), stage.OnError(stage.Forward))
		var vals []int
		var errs []error
		r14Watchdog(t, func() {
			for v, err := range sink.All(context.Background(), s) {
				if err != nil {
					errs = append(errs, err)
				} else {
					vals = append(vals, v)
				}
			}
		})
		if len(vals) != 2 || len(errs) != 3 {
			t.Fatalf("values %v, errors %v; want 2 values and 3 ErrNoToken", vals, errs)
		}
		for _, e := range errs {
			var se *stage.Error
			if !errors.Is(e, stage.ErrNoToken) || !errors.As(e, &se) {
				t.Errorf("error %v; want an *Error wrapping ErrNoToken", e)
			}
		}
	})
	t.Run("burst0-finite", func(t *testing.T) {
		s := stage.Map(source.Slice(ints(2)), double, stage.Workers(1),
			stage.SharedRateLimit(rate.NewLimiter(10, 0)))
		var err error
		r14Watchdog(t, func() { _, err = sink.Slice(context.Background(), s) })
		if !errors.Is(err, stage.ErrNoToken) {
			t.Errorf("sink: %v; want ErrNoToken", err)
		}
	})
}

// Timeout + Retry: each attempt gets its own Timeout; a deadline is retryable
// by default; a call that ignores its ctx and returns nil after its deadline
// is a success.
func TestReview14TimeoutPerAttemptAndLateSuccess(t *testing.T) {
	t.Run("retry-after-deadline", func(t *testing.T) {
		var attempts, firstDeadline sync.Map
		s := stage.Map(source.Slice(ints(4)), func(ctx context.Context, i int) (int, error) {
			v, _ := attempts.LoadOrStore(i, new(atomic.Int64))
			a := v.(*atomic.Int64).Add(1)
			dl, ok := ctx.Deadline()
			if !ok {
				return 0, fmt.Errorf("attempt %d without a deadline", a)
			}
			if a == 1 {
				firstDeadline.Store(i, dl)
				<-ctx.Done()
				return 0, ctx.Err()
			}
			// A fresh Timeout: attempt 1's deadline had passed when it
			// returned, so this one's comes later. (Not ctx.Err() == nil:
			// on a loaded machine a fresh 5 ms may pass before the call
			// gets a processor.)
			if first, _ := firstDeadline.Load(i); !dl.After(first.(time.Time)) {
				return 0, fmt.Errorf("attempt %d's deadline %v is not after attempt 1's %v: not a Timeout of its own", a, dl, first)
			}
			return i, nil
		}, stage.Workers(2), stage.Ordered(), stage.Timeout(5*time.Millisecond), stage.Retry(2, 0))
		var got []int
		var err error
		r14Watchdog(t, func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil || fmt.Sprint(got) != "[0 1 2 3]" {
			t.Errorf("got %v, %v", got, err)
		}
	})
	t.Run("late-nil-is-success", func(t *testing.T) {
		w := &r14CountingObserver{}
		s := stage.Map(source.Slice(ints(3)), func(ctx context.Context, i int) (int, error) {
			<-ctx.Done() // ignore it, and then succeed
			return i + 100, nil
		}, stage.Workers(3), stage.Timeout(time.Millisecond))
		var got []int
		var err error
		r14Watchdog(t, func() { got, err = sink.Slice(stage.Observe(context.Background(), w), s) })
		if err != nil || len(got) != 3 {
			t.Errorf("got %v, %v; a nil after the deadline is a success", got, err)
		}
		if w.failed.Load() != 0 || w.finished.Load() != 3 {
			t.Errorf("watcher: finished %d failed %d; want 3, 0", w.finished.Load(), w.failed.Load())
		}
	})
}

type r14CountingObserver struct {
	received, finished, failed, canceled, closed atomic.Int64
	badErr                                       atomic.Value
}

func (o *r14CountingObserver) Stage(stage.Info) stage.Watcher { return o }
func (o *r14CountingObserver) Received()                      { o.received.Add(1) }
func (o *r14CountingObserver) Finished(_ time.Duration, err error) {
	o.finished.Add(1)
	if err == nil {
		return
	}
	var se *stage.Error
	if errors.As(err, &se) {
		if _, ok := err.(*stage.Error); !ok {
			o.badErr.Store(fmt.Sprintf("wrapped *Error: %v", err))
		}
		o.failed.Add(1)
		return
	}
	if errors.Is(err, context.Canceled) {
		o.canceled.Add(1)
		return
	}
	o.badErr.Store(fmt.Sprintf("neither *Error nor Canceled: %v", err))
}
func (o *r14CountingObserver) Closed() { o.closed.Add(1) }

// Retry's backoff "ends early, without a retry, when the run is cancelled",
// behind a Batch, by the caller's cancellation or by a FailFast error
// elsewhere; the watcher sees the interrupted call as neither success nor
// failure (Canceled).
func TestReview14RetryBackoffEndsOnCancelBehindBatch(t *testing.T) {
	for _, how := range []string{"caller", "failfast"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			obs := &r14CountingObserver{}
			var calls atomic.Int64
			failedOnce := make(chan struct{})
			var once sync.Once
			src := stage.Map(source.Slice(ints(6)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Workers(1), stage.Name("pre"))
			b := stage.Batch(src, 3, 0)
			m := stage.Map(b, func(ctx context.Context, batch []int) (int, error) {
				if batch[0] == 0 {
					calls.Add(1)
					once.Do(func() { close(failedOnce) })
					return 0, errR14Fail // retried after a long backoff
				}
				// the second batch: wait for the first batch's failure, then
				// end the run
				<-failedOnce
				if how == "failfast" {
					return 0, errors.New("boom")
				}
				cancel()
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Workers(2), stage.Retry(5, time.Hour), stage.RetryIf(5, time.Hour, func(err error) bool {
				return errors.Is(err, errR14Fail)
			}), stage.Name("batches"))
			var err error
			r14Watchdog(t, func() {
				err = sink.ForEach(stage.Observe(ctx, obs), m, func(context.Context, int) error { return nil })
			})
			if how == "caller" && !errors.Is(err, context.Canceled) {
				t.Errorf("sink: %v; want Canceled", err)
			}
			if how == "failfast" {
				var se *stage.Error
				if !errors.As(err, &se) || se.Stage != "batches" || se.Index != 1 {
					t.Errorf("sink: %v; want the boom *Error at index 1", err)
				}
			}
			if calls.Load() != 1 {
				t.Errorf("the first batch was called %d times; want 1 (no retry once the run ended)", calls.Load())
			}
			if v := obs.badErr.Load(); v != nil {
				t.Errorf("watcher: %v", v)
			}
		})
	}
}

// Apply + Retry + Ordered: outputs that a failed attempt emitted stay emitted,
// in order, before the next attempt's, and items keep their input order.
func TestReview14ApplyRetryOutputsStayOrdered(t *testing.T) {
	var mu sync.Mutex
	attempts := map[int]int{}
	s := stage.Apply(source.Slice(ints(40)), func(ctx context.Context, i int, emit func(string) bool) error {
		mu.Lock()
		attempts[i]++
		a := attempts[i]
		mu.Unlock()
		r14Jitter()
		emit(fmt.Sprintf("%d.%d", i, a))
		if i%3 == 0 && a < 3 {
			return errR14Fail
		}
		return nil
	}, stage.Workers(4), stage.Ordered(), stage.Retry(3, 0))
	var got []string
	var err error
	r14Watchdog(t, func() { got, err = sink.Slice(context.Background(), s) })
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 40 {
		n := 1
		if i%3 == 0 {
			n = 3
		}
		for a := 1; a <= n; a++ {
			want = append(want, fmt.Sprintf("%d.%d", i, a))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}
