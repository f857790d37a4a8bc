package stage_test

// Review 13: Retry, RetryIf, Timeout, RateLimit, SharedRateLimit, Handle,
// Budget, and cancellation before and during a run.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Doc (RetryIf): "it sees the error of each failed attempt that another could
// follow (not the last allowed one's), a panic included"; Retry: "Only the
// last error reaches the error policy, in an *Error whose Attempts field says
// how many calls were made"; "unless the error is a *PanicError".
func TestReview13RetryCounts(t *testing.T) {
	for _, m := range []string{"w1", "w4", "w4ordered", "unlimited", "keyby"} {
		for _, attempts := range []int{1, 2, 4} {
			t.Run(fmt.Sprintf("%s/%d", m, attempts), func(t *testing.T) {
				const n = 30
				var calls [n]atomic.Int32
				s := stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (int, error) {
					c := calls[v].Add(1)
					switch {
					case v%3 == 0:
						return 0, fmt.Errorf("always fails %d", v)
					case v%3 == 1 && c < 2:
						panic("panics once")
					}
					return v, nil
				}, r13With(m, stage.RetryIf(attempts, 0, func(error) bool {
					return true // panics included: items 1, 4, ... succeed on their 2nd call
				}), stage.OnError(stage.Forward))...)
				var got []int
				var err error
				runcheck.Run(t, "retry", func() { got, err = sink.Slice(context.Background(), s) })
				var fe *sink.ForwardedError
				wantFailed := n / 3
				if attempts == 1 {
					wantFailed = 2 * n / 3
				}
				if !errors.As(err, &fe) || fe.Count != wantFailed || len(got) != n-wantFailed {
					t.Fatalf("err %v, %d values; want %d forwarded", err, len(got), wantFailed)
				}
				for _, e := range fe.Sample {
					var se *stage.Error
					if !errors.As(e, &se) || se.Attempts != attempts {
						t.Errorf("%v: Attempts %d, want %d", e, se.Attempts, attempts)
					}
				}
				for v := range n {
					want := int32(1)
					switch {
					case v%3 == 0:
						want = int32(attempts)
					case v%3 == 1 && attempts > 1:
						want = 2
					}
					if calls[v].Load() != want {
						t.Errorf("item %d: %d calls, want %d", v, calls[v].Load(), want)
					}
				}
			})
		}
	}
}

// Doc (RetryIf): "it sees the error of each failed attempt that another could
// follow (not the last allowed one's)"; "if it panics, the item fails at once
// with that panic's *PanicError, not retried"; Retry: panics are not retried.
func TestReview13RetryPredicateCallsAndPanics(t *testing.T) {
	var preds, calls atomic.Int32
	s := stage.Map(source.Slice(ints(10)), func(_ context.Context, v int) (int, error) {
		calls.Add(1)
		return 0, errors.New("fails")
	}, stage.Workers(3), stage.OnError(stage.Forward), stage.RetryIf(5, 0, func(error) bool {
		if preds.Add(1) > 20 {
			panic("predicate")
		}
		return true
	}))
	var err error
	runcheck.Run(t, "pred", func() { _, err = sink.Slice(context.Background(), s) })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 10 {
		t.Fatalf("err %v", err)
	}
	// 10 items × 4 predicate calls = 40 if none panicked. The first 20
	// predicate calls return true; from the 21st each panics and ends its item.
	// Every item fails; calls = 20 retries + 10 first calls.
	if calls.Load() != 30 {
		t.Errorf("%d calls of f, want 30 (a panicking predicate ends the item at once)", calls.Load())
	}
	panics := 0
	for _, e := range fe.Sample {
		var pe *stage.PanicError
		if errors.As(e, &pe) {
			panics++
			if pe.Value != "predicate" {
				t.Errorf("PanicError value %v", pe.Value)
			}
		}
	}
	if panics == 0 {
		t.Errorf("no sampled error carries the predicate's panic")
	}
	// Retry (not RetryIf): a panic is not retried.
	var pcalls atomic.Int32
	_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(5)), func(context.Context, int) (int, error) {
		pcalls.Add(1)
		panic("bug")
	}, stage.Workers(2), stage.Retry(4, 0), stage.OnError(stage.Forward)))
	if pcalls.Load() != 5 || !errors.As(err, &fe) || fe.Count != 5 {
		t.Fatalf("panicking calls %d (want 5, no retry), err %v", pcalls.Load(), err)
	}
}

// Doc (Retry): "The wait holds the worker and ends early, without a retry,
// when the run is cancelled." Backoff of an hour; the caller cancels after
// the first attempt failed.
func TestReview13RetryBackoffEndsOnCancel(t *testing.T) {
	for _, m := range []string{"w1", "w4", "w4ordered", "unlimited"} {
		t.Run(m, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var calls atomic.Int32
			var err error
			runcheck.Run(t, "backoff", func() {
				_, err = sink.Slice(ctx, stage.Map(source.Slice(ints(1)), func(context.Context, int) (int, error) {
					if calls.Add(1) == 1 {
						defer cancel()
					}
					return 0, errors.New("retry me")
				}, r13With(m, stage.Retry(5, time.Hour))...))
			})
			if !errors.Is(err, context.Canceled) || calls.Load() != 1 {
				t.Fatalf("err %v, %d calls; want Canceled after 1 call", err, calls.Load())
			}
		})
	}
}

// Doc (Timeout): "Timeout cannot stop a function that ignores its ctx: the
// stage waits for it to return ...; what it returns then counts (nil is a
// success, even after the deadline)." "A function that honours its ctx then
// returns an error for which errors.Is(err, context.DeadlineExceeded) holds,
// which is retryable by default. The run goes on".
func TestReview13TimeoutOutcomes(t *testing.T) {
	for _, m := range []string{"w1", "w4", "w4ordered", "unlimited", "keyby"} {
		t.Run(m, func(t *testing.T) {
			var calls atomic.Int32
			var got []int
			var err error
			runcheck.Run(t, "timeout", func() {
				got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(12)), func(ctx context.Context, v int) (int, error) {
					calls.Add(1)
					<-ctx.Done() // each call's own deadline
					if v%2 == 0 {
						return v, nil // late success
					}
					return 0, ctx.Err()
				}, r13With(m, stage.Timeout(time.Microsecond), stage.Retry(3, 0), stage.OnError(stage.Forward))...))
			})
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != 6 || len(got) != 6 {
				t.Fatalf("err %v, %d values; want 6 values and 6 forwarded", err, len(got))
			}
			for _, e := range fe.Sample {
				var se *stage.Error
				if !errors.As(e, &se) || !errors.Is(e, context.DeadlineExceeded) || se.Attempts != 3 {
					t.Errorf("%v: want DeadlineExceeded after 3 attempts", e)
				}
			}
			if calls.Load() != 6+18 {
				t.Errorf("%d calls, want 24", calls.Load())
			}
		})
	}
}

// Doc (RateLimit): "The bucket is per run and starts full": a burst of 3 at a
// rate of one token in ~30 years serves 3 calls per run, in every run.
func TestReview13RateLimitBucketPerRunStartsFull(t *testing.T) {
	s := stage.Map(source.Slice(ints(3)), double, stage.Workers(2), stage.RateLimit(1e-9, 3))
	for run := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // watchdog only
		var got []int
		var err error
		runcheck.Run(t, "bucket", func() { got, err = sink.Slice(ctx, s) })
		cancel()
		if err != nil || len(got) != 3 {
			t.Fatalf("run %d: %v %v: the bucket did not start full", run, got, err)
		}
	}
}

// Doc (RateLimit): "A worker waits for its token as long as it takes, holding
// its place; only the end of the run ends the wait (a deadline on the run's
// context is no reason to fail an item early)." The token would come long
// after the deadline: the item must not fail early; the run ends by its
// deadline, and that is what the sink returns.
func TestReview13RateLimitDeadlineIsNoReasonToFail(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			opt := stage.RateLimit(1e-9, 1)
			if shared {
				opt = stage.SharedRateLimit(rate.NewLimiter(1e-9, 1))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			var got []int
			var err error
			runcheck.Run(t, "deadline", func() {
				got, err = sink.Slice(ctx, stage.Map(source.Slice(ints(2)), double, stage.Workers(1), opt))
			})
			var se *stage.Error
			if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &se) {
				t.Fatalf("got %v, err %v: want the run's deadline, not an item error", got, err)
			}
		})
	}
}

// Doc (SharedRateLimit): "if l can never give one (its burst is 0, or its
// limit is 0 and its burst spent), the attempt fails with ErrNoToken instead
// of waiting for ever."
func TestReview13SharedRateLimitNoToken(t *testing.T) {
	cases := map[string]struct {
		l    *rate.Limiter
		okay int
	}{
		"burst0":         {rate.NewLimiter(10, 0), 0},
		"limit0-burst2":  {rate.NewLimiter(0, 2), 2},
		"limit0-burst0":  {rate.NewLimiter(0, 0), 0},
		"inf-burst0-ok":  {rate.NewLimiter(rate.Inf, 0), 5}, // rate.Inf "allows all events (even if burst is zero)"
		"inf-burst1-any": {rate.NewLimiter(rate.Inf, 1), 5},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // watchdog only
			defer cancel()
			var got []int
			var err error
			runcheck.Run(t, "notoken", func() {
				got, err = sink.Slice(ctx, stage.Map(source.Slice(ints(5)), double, stage.Workers(1),
					stage.SharedRateLimit(c.l), stage.OnError(stage.Forward)))
			})
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("the run waited for a token that can never come")
			}
			if len(got) != c.okay {
				t.Fatalf("%d values (%v), want %d", len(got), err, c.okay)
			}
			if c.okay < 5 {
				var fe *sink.ForwardedError
				if !errors.As(err, &fe) || fe.Count != 5-c.okay || !errors.Is(err, stage.ErrNoToken) {
					t.Fatalf("err %v: want %d ErrNoToken", err, 5-c.okay)
				}
			}
		})
	}
}

// Doc (Handle / Budget): "Calls of h never overlap within one stage of one
// run"; Budget: "the first n failed items of a run are dropped after being
// passed to h, and the (n+1)th, which h does not see, fails the run"; "each
// run starts with a full budget".
func TestReview13HandlerNeverOverlapsAndBudgetExact(t *testing.T) {
	for _, m := range []string{"w4", "w4ordered", "unlimited", "keyby", "huge-workers"} {
		for _, budget := range []int{-1, 0, 3, 17} {
			t.Run(fmt.Sprintf("%s/budget=%d", m, budget), func(t *testing.T) {
				var in, max, seen atomic.Int32
				h := func(_ context.Context, e *stage.Error) error {
					if c := in.Add(1); c > max.Load() {
						max.Store(c)
					}
					seen.Add(1)
					r13Work(e.Index)
					in.Add(-1)
					return nil
				}
				p := stage.Handle(h)
				if budget >= 0 {
					p = stage.Budget(budget, h)
				}
				const n, failing = 200, 40 // every 5th item fails
				s := stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (int, error) {
					r13Work(v)
					if v%5 == 0 {
						return 0, errors.New("bad")
					}
					return v, nil
				}, r13With(m, stage.OnError(p))...)
				for run := range 2 {
					seen.Store(0)
					var got []int
					var err error
					runcheck.Run(t, "handle", func() { got, err = sink.Slice(context.Background(), s) })
					if max.Load() > 1 {
						t.Fatalf("h ran %d times at once", max.Load())
					}
					if budget < 0 {
						if err != nil || len(got) != n-failing || seen.Load() != failing {
							t.Fatalf("run %d: err %v, %d values, h saw %d", run, err, len(got), seen.Load())
						}
						continue
					}
					var se *stage.Error
					if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || se.Input.(int)%5 != 0 || int(seen.Load()) != budget {
						t.Fatalf("run %d: err %v, h saw %d; want ErrBudget with the item's *Error after exactly %d", run, err, seen.Load(), budget)
					}
				}
			})
		}
	}
}

// Doc (README, Cancellation / source package): "A source takes an item from
// the caller's world ... only when a stage, or the sink, is ready to work on
// it, and never after the run was cancelled." With ctx cancelled before the
// sink is called, no item is taken and no function is called, in every shape
// (including a stage over a single item, which runs in its consumer's
// goroutine from the start).
func TestReview13PrecancelledRunTakesNothing(t *testing.T) {
	for _, n := range []int{1, 2, 100} {
		for sname, mk := range map[string]func(n int, taken *atomic.Int32) (stage.Stream[int], func() int){
			"indexed": func(n int, taken *atomic.Int32) (stage.Stream[int], func() int) {
				return stage.Indexed(n, func(i int) int { taken.Add(1); return i }), func() int { return 0 }
			},
			"func": func(n int, taken *atomic.Int32) (stage.Stream[int], func() int) {
				return source.Func(func(context.Context) (int, error) { taken.Add(1); return 1, nil }), func() int { return 0 }
			},
			"neverwaits": func(n int, taken *atomic.Int32) (stage.Stream[int], func() int) {
				return stage.NeverWaits(source.Func(func(context.Context) (int, error) { taken.Add(1); return 1, nil })), func() int { return 0 }
			},
			"chan": func(n int, taken *atomic.Int32) (stage.Stream[int], func() int) {
				ch := make(chan int, n)
				for i := range n {
					ch <- i
				}
				return source.Chan(ch), func() int { return n - len(ch) }
			},
		} {
			for _, mode := range r13Modes() {
				t.Run(fmt.Sprintf("n=%d/%s/%s", n, sname, mode), func(t *testing.T) {
					var taken, called atomic.Int32
					ctx, cancel := context.WithCancel(context.Background())
					cancel()
					src, received := mk(n, &taken)
					s := stage.Map(src, func(_ context.Context, v int) (int, error) { called.Add(1); return v, nil }, r13With(mode)...)
					for sk, run := range map[string]func() error{
						"slice":   func() error { _, err := sink.Slice(ctx, s); return err },
						"first":   func() error { _, _, err := sink.First(ctx, s); return err },
						"foreach": func() error { return sink.ForEach(ctx, s, func(context.Context, int) error { return nil }) },
						"all": func() error {
							for _, err := range sink.All(ctx, s) {
								if err != nil {
									return err
								}
							}
							return nil
						},
					} {
						var err error
						runcheck.Run(t, sk, func() { err = run() })
						if !errors.Is(err, context.Canceled) {
							t.Errorf("%s: err %v, want Canceled", sk, err)
						}
					}
					if taken.Load() != 0 || called.Load() != 0 || received() != 0 {
						t.Fatalf("cancelled before the run: %d items taken, %d received from the channel, %d calls", taken.Load(), received(), called.Load())
					}
				})
			}
		}
	}
}
