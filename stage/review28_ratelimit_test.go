package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview28RetryNotAfterCancel: an attempt that fails once the run is
// cancelled is not retried, even with a backoff of 0 (the wait before a
// retry ends early, without a retry, when the run is cancelled).
func TestReview28RetryNotAfterCancel(t *testing.T) {
	for _, opt := range []struct {
		name string
		o    stage.Option
	}{
		{"Retry0", stage.Retry(5, 0)},
		{"Retry1ns", stage.Retry(5, time.Nanosecond)},
		{"RetryIf0", stage.RetryIf(5, 0, func(error) bool { return true })},
	} {
		for _, trig := range []string{"self", "mergeFailFast"} {
			for _, w := range []int{1, 4} {
				t.Run(fmt.Sprintf("%s/%s/w=%d", opt.name, trig, w), func(t *testing.T) {
					var attempts atomic.Int64
					fire := make(chan struct{})
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					m := stage.Map(source.Slice([]int{0}), func(ctx context.Context, v int) (int, error) {
						attempts.Add(1)
						if trig == "self" {
							cancel()
						} else {
							close(fire)
							<-ctx.Done()
						}
						return 0, errR28 // not the context's error: only the run's end says it was cut short
					}, stage.Workers(w), opt.o)
					s := m
					if trig == "mergeFailFast" {
						s = stage.Merge(m, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
							<-fire
							return 0, errors.New("other branch")
						}))
					}
					var err error
					done := r28Go(func() { _, err = sink.Count(ctx, s) })
					r28Wait(t, done, "the sink")
					if n := attempts.Load(); n != 1 {
						t.Errorf("%d attempts, want 1: a retry started after the run was cancelled", n)
					}
					if errors.Is(err, errR28) {
						t.Errorf("err = %v: a call cut short by the run's end was reported as the item's failure", err)
					}
				})
			}
		}
	}
}

// r28Rates are rates so small that the next token is further away than a
// time.Duration reaches, or nearly.
var r28Rates = []float64{math.SmallestNonzeroFloat64, 1e-300, 1e-12, 1e-9}

// TestReview28RateLimitWaitNotStartAfterCancel: a worker waiting for a
// token when the run is cancelled (by the other item's FailFast, or the
// caller) never calls its function.
func TestReview28RateLimitWaitNotStartAfterCancel(t *testing.T) {
	for _, r := range r28Rates {
		for _, trig := range []string{"failFast", "ctx"} {
			for _, shared := range []bool{false, true} {
				t.Run(fmt.Sprintf("rate=%g/%s/shared=%v", r, trig, shared), func(t *testing.T) {
					var received atomic.Int64
					twoIn := make(chan struct{})
					var calls r28Calls
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					ctx = stage.Observe(ctx, &r28Obs{received: func(stage.Info) {
						if received.Add(1) == 2 {
							close(twoIn)
						}
					}})
					lim := stage.RateLimit(r, 1)
					if shared {
						lim = stage.SharedRateLimit(rate.NewLimiter(rate.Limit(r), 1))
					}
					s := stage.Map(source.Slice(ints(4)), func(ctx context.Context, v int) (int, error) {
						calls.add(v)
						<-twoIn // the other item waits for its token now
						if trig == "ctx" {
							cancel()
							return v, nil
						}
						return v, errR28
					}, stage.Workers(2), lim)
					var err error
					done := r28Go(func() { _, err = sink.Count(ctx, s) })
					r28Wait(t, done, "the sink")
					if got := calls.list(); len(got) != 1 {
						t.Errorf("calls = %v: a call started after the run was cancelled, or before its token", got)
					}
					if trig == "failFast" && !errors.Is(err, errR28) {
						t.Errorf("err = %v, want errR28", err)
					}
					if trig == "ctx" && !errors.Is(err, context.Canceled) {
						t.Errorf("err = %v, want Canceled", err)
					}
				})
			}
		}
	}
}

// TestReview28RateLimitTinyRateWaits: a worker waits for its token as long
// as it takes, however tiny the rate and even under a deadline on the run's
// context: the item neither fails early nor starts early; only the run's end
// (here the caller's cancel) ends the wait, as a cut-short call.
func TestReview28RateLimitTinyRateWaits(t *testing.T) {
	for _, r := range r28Rates {
		for _, shared := range []bool{false, true} {
			for _, deadline := range []bool{false, true} {
				t.Run(fmt.Sprintf("rate=%g/shared=%v/deadline=%v", r, shared, deadline), func(t *testing.T) {
					var received atomic.Int64
					twoIn := make(chan struct{})
					var calls r28Calls
					var finishedErrs atomic.Int64
					base := context.Background()
					if deadline {
						var c context.CancelFunc
						base, c = context.WithTimeout(base, time.Hour)
						defer c()
					}
					ctx, cancel := context.WithCancel(base)
					defer cancel()
					ctx = stage.Observe(ctx, &r28Obs{
						received: func(stage.Info) {
							if received.Add(1) == 2 {
								close(twoIn)
							}
						},
						finished: func(_ stage.Info, err error) {
							var se *stage.Error
							if errors.As(err, &se) {
								finishedErrs.Add(1)
							}
						},
					})
					lim := stage.RateLimit(r, 1)
					if shared {
						lim = stage.SharedRateLimit(rate.NewLimiter(rate.Limit(r), 1))
					}
					s := stage.Map(source.Slice(ints(2)), func(ctx context.Context, v int) (int, error) {
						calls.add(v)
						return v, nil
					}, stage.Workers(1), lim, stage.OnError(stage.Forward))
					var err error
					var got []int
					done := r28Go(func() { got, err = sink.Slice(ctx, s) })
					r28Wait(t, twoIn, "item 1's Received")
					time.Sleep(50 * time.Millisecond) // widen: a wait that fails early fails now
					select {
					case <-done:
						t.Fatalf("the run ended before its cancel: got %v, err %v", got, err)
					default:
					}
					cancel()
					r28Wait(t, done, "the sink after cancel")
					if c := calls.list(); len(c) != 1 {
						t.Errorf("calls = %v, want [0]: item 1 started without its token", c)
					}
					if !errors.Is(err, context.Canceled) {
						t.Errorf("err = %v, want Canceled", err)
					}
					var fe *sink.ForwardedError
					if errors.As(err, &fe) || finishedErrs.Load() > 0 {
						t.Errorf("the waiting item failed (err %v): a wait cut short by the run's end is no failure", err)
					}
				})
			}
		}
	}
}

// TestReview28SharedRateLimitNoToken: a limiter that can never give a token
// fails each attempt with ErrNoToken at once (Attempts 1, no call); one of
// limit 0 gives its burst first; a spent one stays spent across runs.
func TestReview28SharedRateLimitNoToken(t *testing.T) {
	run := func(t *testing.T, l *rate.Limiter, n int, more ...stage.Option) (calls int64, errs []*stage.Error, err error) {
		t.Helper()
		var c atomic.Int64
		var herrs []*stage.Error
		opts := append([]stage.Option{stage.SharedRateLimit(l), stage.Workers(3),
			stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
				herrs = append(herrs, e)
				return nil
			}))}, more...)
		s := stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (int, error) {
			c.Add(1)
			return v, nil
		}, opts...)
		done := r28Go(func() { _, err = sink.Count(context.Background(), s) })
		r28Wait(t, done, "the sink (a limiter that can never give a token must not wait)")
		return c.Load(), herrs, err
	}
	check := func(t *testing.T, errs []*stage.Error, want int) {
		t.Helper()
		if len(errs) != want {
			t.Errorf("%d failed items, want %d", len(errs), want)
		}
		for _, e := range errs {
			if !errors.Is(e, stage.ErrNoToken) || e.Attempts != 1 {
				t.Errorf("error %v: Attempts %d, want ErrNoToken of Attempts 1", e, e.Attempts)
			}
		}
	}
	t.Run("limit0burst0", func(t *testing.T) {
		calls, errs, err := run(t, rate.NewLimiter(0, 0), 5)
		if calls != 0 || err != nil {
			t.Errorf("calls %d, err %v", calls, err)
		}
		check(t, errs, 5)
	})
	t.Run("tinyBurst0", func(t *testing.T) {
		calls, errs, err := run(t, rate.NewLimiter(1e-300, 0), 5)
		if calls != 0 || err != nil {
			t.Errorf("calls %d, err %v", calls, err)
		}
		check(t, errs, 5)
	})
	t.Run("limit0burst2AcrossRuns", func(t *testing.T) {
		l := rate.NewLimiter(0, 2)
		calls, errs, err := run(t, l, 5)
		if calls != 2 || err != nil {
			t.Errorf("calls %d, err %v", calls, err)
		}
		check(t, errs, 3)
		calls, errs, err = run(t, l, 4)
		if calls != 0 || err != nil {
			t.Errorf("second run: calls %d, err %v", calls, err)
		}
		check(t, errs, 4)
	})
	t.Run("limit0Retry", func(t *testing.T) {
		calls, errs, err := run(t, rate.NewLimiter(0, 0), 3, stage.Retry(4, 0))
		if calls != 0 || err != nil {
			t.Errorf("calls %d, err %v", calls, err)
		}
		for _, e := range errs {
			if !errors.Is(e, stage.ErrNoToken) || e.Attempts < 1 || e.Attempts > 4 {
				t.Errorf("error %v: Attempts %d", e, e.Attempts)
			}
		}
		if len(errs) > 0 {
			t.Logf("note: ErrNoToken under Retry(4, 0): Attempts %d", errs[0].Attempts)
		}
	})
	t.Run("infBurst0", func(t *testing.T) {
		// A limiter of rate.Inf allows every event, even with burst 0.
		calls, errs, err := run(t, rate.NewLimiter(rate.Inf, 0), 3)
		t.Logf("note: rate.Inf, burst 0: %d calls, %d ErrNoToken items, err %v", calls, len(errs), err)
	})
}

// TestReview28NilTaskAttempts: a nil task of Concurrent fails with
// ErrNilTask, Attempts 1, under every policy that shows the *Error.
func TestReview28NilTaskAttempts(t *testing.T) {
	for _, w := range []int{1, 3, -1} {
		t.Run(fmt.Sprint(w), func(t *testing.T) {
			var errs []*stage.Error
			tasks := []func(context.Context) (int, error){nil, func(context.Context) (int, error) { return 1, nil }, nil}
			n, err := sink.Count(context.Background(), stage.Concurrent(source.Slice(tasks), stage.Workers(w),
				stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
					errs = append(errs, e)
					return nil
				}))))
			if n != 1 || err != nil || len(errs) != 2 {
				t.Fatalf("n %d, err %v, errs %v", n, err, errs)
			}
			for _, e := range errs {
				if !errors.Is(e, stage.ErrNilTask) || e.Attempts != 1 {
					t.Errorf("%v: Attempts %d, want 1", e, e.Attempts)
				}
			}
		})
	}
}
