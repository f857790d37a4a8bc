package stage_test

// Review 54: 28d13fb put Retry, Timeout and RateLimit behind a pointer
// (config.calls), shared by the runs of a build and copied by forRun for a
// run with a rate limit, and made a plain stage's call go straight to its
// one attempt. These check, through the public API, that each option is
// applied in every engine path (fused, serial, goroutines, ordered,
// unlimited), in any order, and that the rate limits are per run
// (RateLimit) or shared (SharedRateLimit) as documented.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR54Again = errors.New("r54: try again")

// TestReview54RetryAndTimeoutAnyOrder: with Retry(3, 0) and Timeout, given
// in either order, every item's call is made three times (the first two
// fail) and every attempt has a deadline; with Retry(1, 0) and Timeout,
// one attempt, with a deadline.
func TestReview54RetryAndTimeoutAnyOrder(t *testing.T) {
	const n = 40
	orders := []struct {
		name     string
		opts     []stage.Option
		attempts int32
	}{
		{"Retry,Timeout", []stage.Option{stage.Retry(3, 0), stage.Timeout(time.Hour)}, 3},
		{"Timeout,Retry", []stage.Option{stage.Timeout(time.Hour), stage.Retry(3, 0)}, 3},
		{"Retry(1),Timeout", []stage.Option{stage.Retry(1, 0), stage.Timeout(time.Hour)}, 1},
		{"Timeout,Retry(1)", []stage.Option{stage.Timeout(time.Hour), stage.Retry(1, 0)}, 1},
	}
	for _, o := range orders {
		for _, m := range modes {
			t.Run(o.name+"/"+m.String(), func(t *testing.T) {
				var calls [n]atomic.Int32
				var undated atomic.Int32
				f := func(ctx context.Context, v int) (int, error) {
					if _, ok := ctx.Deadline(); !ok {
						undated.Add(1)
					}
					if calls[v].Add(1) < o.attempts {
						return 0, errR54Again
					}
					return v, nil
				}
				got := 0
				err := stage.Run(context.Background(), stage.Map(source.Slice(ints(n)), f, m.opts(o.opts...)...),
					func(_ context.Context, _ int, err error) error { got++; return err })
				if err != nil || got != n {
					t.Fatalf("Run: %v, %d items of %d", err, got, n)
				}
				for i := range calls {
					if c := calls[i].Load(); c != o.attempts {
						t.Fatalf("item %d: %d calls, want %d", i, c, o.attempts)
					}
				}
				if u := undated.Load(); u > 0 {
					t.Fatalf("%d attempts without the Timeout's deadline", u)
				}
			})
		}
	}
}

// TestReview54RetryExhaustedAttempts: the *Error of an item whose every
// attempt failed says how many were made, in each engine path, with the
// Retry given before or after a Timeout.
func TestReview54RetryExhaustedAttempts(t *testing.T) {
	for _, opts := range [][]stage.Option{{stage.Retry(2, 0), stage.Timeout(time.Hour)}, {stage.Timeout(time.Hour), stage.Retry(2, 0)}} {
		for _, m := range modes {
			f := func(context.Context, int) (int, error) { return 0, errR54Again }
			var errs []error
			err := stage.Run(context.Background(), stage.Map(source.Slice(ints(5)), f, m.opts(append(opts, stage.OnError(stage.Forward))...)...),
				func(_ context.Context, _ int, err error) error { errs = append(errs, err); return nil })
			if err != nil || len(errs) != 5 {
				t.Fatalf("%v: Run: %v, %d forwarded errors", m, err, len(errs))
			}
			for _, e := range errs {
				var se *stage.Error
				if !errors.As(e, &se) || se.Attempts != 2 || !errors.Is(e, errR54Again) {
					t.Fatalf("%v: forwarded %v (Attempts %v), want an *Error of 2 attempts", m, e, se)
				}
			}
		}
	}
}

// TestReview54SharedRateLimitAcrossRuns: SharedRateLimit's bucket holds
// across runs and across stages: a limiter of one token and no refill
// gives it to the first run, and the next run of the same build, and a
// run of another stage given it, get none (ErrNoToken: it would wait for
// ever).
func TestReview54SharedRateLimitAcrossRuns(t *testing.T) {
	l := rate.NewLimiter(0, 1)
	built := stage.Map(source.Slice([]int{1}), double, stage.SharedRateLimit(l))
	sink := func(context.Context, int, error) error { return nil }
	if err := stage.Run(context.Background(), built, sink); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if err := stage.Run(context.Background(), built, sink); !errors.Is(err, stage.ErrNoToken) {
		t.Fatalf("second run of the build: %v, want ErrNoToken (the shared bucket is spent)", err)
	}
	other := stage.Map(source.Slice([]int{1}), double, stage.Retry(1, 0), stage.SharedRateLimit(l))
	if err := stage.Run(context.Background(), other, sink); !errors.Is(err, stage.ErrNoToken) {
		t.Fatalf("a run of another stage given the limiter: %v, want ErrNoToken", err)
	}
}

// TestReview54RateLimitPerRun: RateLimit's bucket is per run and starts
// full: a bucket of one token that (practically) never refills gives each
// run of one build its token, one run after another and runs at once. A
// bucket shared by the runs would make all but one wait until the
// watchdog's context ends (a hang detector: no duration is asserted).
func TestReview54RateLimitPerRun(t *testing.T) {
	built := stage.Map(source.Slice([]int{1}), double, stage.RateLimit(1e-9, 1), stage.Timeout(time.Hour))
	run := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), runcheck.Watchdog)
		defer cancel()
		return stage.Run(ctx, built, func(context.Context, int, error) error { return nil })
	}
	for i := range 3 {
		if err := run(); err != nil {
			t.Fatalf("run %d after another: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() { errs[i] = run() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run %d of %d at once: %v", i, len(errs), err)
		}
	}
}

// TestReview54OneBuildManyRunsAtOnce: one build with Retry, Timeout and a
// rate limit (own or shared), run many times at once (under -race: the
// runs share the build's call options, read only), each run delivering
// every item once; half the items fail their first attempt.
func TestReview54OneBuildManyRunsAtOnce(t *testing.T) {
	const n, runs = 60, 6
	shared := rate.NewLimiter(rate.Inf, 1)
	for _, lim := range []struct {
		name string
		opt  stage.Option
	}{{"RateLimit", stage.RateLimit(1e9, 1000)}, {"SharedRateLimit", stage.SharedRateLimit(shared)}} {
		for _, m := range modes {
			t.Run(lim.name+"/"+m.String(), func(t *testing.T) {
				var failed [runs][n]atomic.Bool
				var mu sync.Mutex
				errs := map[int]error{}
				var wg sync.WaitGroup
				// One build over an Indexed source; each run tells its
				// items apart through a value of its context.
				type runKey struct{}
				perRun := stage.Map(stage.Indexed(n, func(i int) int { return i }), func(ctx context.Context, i int) (int, error) {
					k := ctx.Value(runKey{}).(int)
					if _, ok := ctx.Deadline(); !ok {
						return 0, fmt.Errorf("run %d: no deadline", k)
					}
					if i%2 == 1 && !failed[k][i].Swap(true) {
						return 0, errR54Again
					}
					return i, nil
				}, m.opts(stage.Retry(2, 0), stage.Timeout(time.Hour), lim.opt)...)
				for k := range runs {
					wg.Go(func() {
						seen := make([]int, n)
						ctx := context.WithValue(context.Background(), runKey{}, k)
						err := stage.Run(ctx, perRun, func(_ context.Context, v int, err error) error {
							if err != nil {
								return err
							}
							seen[v]++
							return nil
						})
						if err == nil {
							for i, c := range seen {
								if c != 1 {
									err = fmt.Errorf("item %d delivered %d times", i, c)
									break
								}
							}
						}
						mu.Lock()
						errs[k] = err
						mu.Unlock()
					})
				}
				wg.Wait()
				for k, err := range errs {
					if err != nil {
						t.Fatalf("run %d: %v", k, err)
					}
				}
			})
		}
	}
}
