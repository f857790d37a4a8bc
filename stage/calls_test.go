package stage_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// flaky fails each item's first fails calls, then returns the item.
type flaky struct {
	fails int
	mu    sync.Mutex
	calls map[int]int
}

func (f *flaky) call(_ context.Context, x int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[int]int{}
	}
	f.calls[x]++
	if f.calls[x] <= f.fails {
		return 0, errBoom
	}
	return x, nil
}

func TestRetryCallsAgainUntilSuccess(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := &flaky{fails: 2}
			got, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(30)), f.call, m.opts(stage.Retry(3, 0))...))
			if err != nil {
				t.Fatalf("err = %v, want nil", err)
			}
			slices.Sort(got)
			if !slices.Equal(got, ints(30)) {
				t.Fatalf("got %v, want 0..29", got)
			}
			for x, n := range f.calls {
				if n != 3 {
					t.Fatalf("item %d: %d calls, want 3", x, n)
				}
			}
		})
	}
}

func TestRetryReportsAttempts(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := &flaky{fails: 5}
			_, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(1)), f.call, m.opts(stage.Retry(4, time.Microsecond))...))
			var se *stage.Error
			if !errors.As(err, &se) || !errors.Is(err, errBoom) {
				t.Fatalf("err = %v, want a *stage.Error wrapping errBoom", err)
			}
			if se.Attempts != 4 || f.calls[0] != 4 {
				t.Fatalf("Attempts = %d after %d calls, want 4 and 4", se.Attempts, f.calls[0])
			}
		})
	}
}

func TestRetryIfAndPanicsAreNotRetried(t *testing.T) {
	errPermanent := errors.New("permanent")
	var calls atomic.Int64
	fn := func(_ context.Context, x int) (int, error) {
		calls.Add(1)
		if x == 0 {
			return 0, errPermanent
		}
		panic("bug")
	}
	retryable := func(err error) bool {
		var pe *stage.PanicError
		return !errors.Is(err, errPermanent) && !errors.As(err, &pe)
	}
	for _, x := range []int{0, 1} {
		calls.Store(0)
		_, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{x}), fn, stage.RetryIf(5, 0, retryable)))
		var se *stage.Error
		if !errors.As(err, &se) || se.Attempts != 1 || calls.Load() != 1 {
			t.Fatalf("item %d: err = %v after %d calls, want a *stage.Error of 1 attempt", x, err, calls.Load())
		}
	}
	// The default predicate does not retry a panic either.
	calls.Store(0)
	_, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{1}), fn, stage.Retry(5, 0)))
	var pe *stage.PanicError
	if !errors.As(err, &pe) || calls.Load() != 1 {
		t.Fatalf("err = %v after %d calls, want a PanicError after 1 call", err, calls.Load())
	}
}

// RetryIf's predicate sees a panic as a *PanicError, and may retry it.
func TestRetryIfMayRetryAPanic(t *testing.T) {
	var calls atomic.Int64
	fn := func(_ context.Context, x int) (int, error) {
		if calls.Add(1) < 3 {
			panic("flaky")
		}
		return x, nil
	}
	var seen []error
	retryable := func(err error) bool {
		seen = append(seen, err) // one worker: calls never overlap
		var pe *stage.PanicError
		return errors.As(err, &pe)
	}
	got, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{7}), fn, stage.Workers(1), stage.RetryIf(3, 0, retryable)))
	if err != nil || len(got) != 1 || got[0] != 7 || calls.Load() != 3 || len(seen) != 2 {
		t.Fatalf("got %v, %v after %d calls and %d predicate calls; want [7], nil after 3 and 2", got, err, calls.Load(), len(seen))
	}
}

func TestRetryBackoffEndsWithTheRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	failed := make(chan struct{})
	fn := func(context.Context, int) (int, error) {
		close(failed)
		return 0, errBoom
	}
	go func() { <-failed; cancel() }()
	hangGuard(t, func() {
		_, err := sink.Slice(ctx, stage.Map(source.Slice([]int{1}), fn, stage.Retry(2, time.Hour)))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestTimeoutPerAttempt(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			f := &flaky{}
			fn := func(ctx context.Context, x int) (int, error) {
				if _, ok := ctx.Deadline(); !ok {
					return 0, errors.New("no deadline")
				}
				f.mu.Lock()
				f.fails++
				first := f.fails%2 == 1
				f.mu.Unlock()
				if first {
					<-ctx.Done() // the first attempt times out
					return 0, ctx.Err()
				}
				return x, nil
			}
			// One worker at a time keeps the attempts of an item adjacent.
			opts := []stage.Option{stage.Workers(1), stage.Timeout(time.Millisecond), stage.Retry(2, 0)}
			if m.ordered {
				opts = append(opts, stage.Ordered())
			}
			var got []int
			var err error
			hangGuard(t, func() { got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(5)), fn, opts...)) })
			if err != nil || !slices.Equal(got, ints(5)) {
				t.Fatalf("got %v, %v; want 0..4, nil", got, err)
			}
		})
	}
	fn := func(ctx context.Context, x int) (int, error) { <-ctx.Done(); return 0, ctx.Err() }
	// A Timeout that did not reach the call would leave it waiting for
	// ever: the guard fails this test instead of the whole suite's run.
	var err error
	hangGuard(t, func() {
		_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(3)), fn, stage.Timeout(time.Millisecond)))
	})
	var se *stage.Error
	if !errors.As(err, &se) || !errors.Is(err, context.DeadlineExceeded) || se.Attempts != 1 {
		t.Fatalf("err = %v, want a *stage.Error wrapping DeadlineExceeded", err)
	}
}

func TestRateLimitHoldsCallsPastTheBurst(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			// One token per thousand seconds: the burst of 2 passes, the
			// third call waits until the run is cancelled (by the second
			// call: with Ordered and unlimited workers, the first two calls
			// need not be the first two items).
			var calls atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fn := func(_ context.Context, x int) (int, error) {
				if calls.Add(1) == 2 {
					cancel()
				}
				return x, nil
			}
			hangGuard(t, func() {
				_, err := sink.Slice(ctx, stage.Map(source.Slice(ints(10)), fn, m.opts(stage.RateLimit(0.001, 2))...))
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want context.Canceled", err)
				}
			})
			if calls.Load() != 2 {
				t.Fatalf("%d calls, want 2 (the burst)", calls.Load())
			}
		})
	}
}

func TestRateLimitBucketIsPerRun(t *testing.T) {
	s := stage.Map(source.Slice(ints(2)), double, stage.RateLimit(0.001, 2))
	for run := range 3 {
		n, err := sink.Count(context.Background(), s)
		if n != 2 || err != nil {
			t.Fatalf("run %d: %d, %v; want 2, nil", run, n, err)
		}
	}
}

// TestSharedRateLimitHoldsAcrossRunsAndStages: every attempt of every
// stage and run given one limiter takes its token from it (a per-run
// bucket would leave it full). (How a call waits for its token is
// RateLimit's, tested above.)
func TestSharedRateLimitHoldsAcrossRunsAndStages(t *testing.T) {
	l := rate.NewLimiter(1e-6, 3) // refills one token in 11 days: none during the test
	a := stage.Map(source.Slice(ints(2)), double, stage.SharedRateLimit(l))
	b := stage.Filter(source.Slice(ints(1)), func(context.Context, int) (bool, error) { return true, nil },
		stage.SharedRateLimit(l))
	if n, err := sink.Count(context.Background(), a); n != 2 || err != nil {
		t.Fatalf("first run: %d, %v", n, err)
	}
	if tokens := l.Tokens(); tokens < 0.99 || tokens > 1.01 {
		t.Fatalf("%.3f tokens left after 2 calls from a bucket of 3", tokens)
	}
	if n, err := sink.Count(context.Background(), b); n != 1 || err != nil {
		t.Fatalf("another stage's run: %d, %v", n, err)
	}
	if tokens := l.Tokens(); tokens > 0.01 {
		t.Fatalf("%.3f tokens left after 3 calls from a bucket of 3", tokens)
	}
	// The last rate option given wins: a RateLimit after it takes no token of l.
	l = rate.NewLimiter(1e-6, 3)
	c := stage.Map(source.Slice(ints(2)), double, stage.SharedRateLimit(l), stage.RateLimit(1000, 10))
	if n, err := sink.Count(context.Background(), c); n != 2 || err != nil {
		t.Fatalf("RateLimit after SharedRateLimit: %d, %v", n, err)
	}
	if tokens := l.Tokens(); tokens < 2.99 {
		t.Fatalf("%.3f tokens left: the RateLimit given last took them from the shared bucket", tokens)
	}
}

// TestSharedRateLimitTokenPerAttemptOutsideTimeout: each attempt under
// Retry takes a token of the shared bucket, and the wait for one is not
// part of the attempt's Timeout (a wait of about a second under a 10 ms
// timeout: the call itself ignores its ctx, so only a wait inside the
// timeout could fail it).
func TestSharedRateLimitTokenPerAttemptOutsideTimeout(t *testing.T) {
	l := rate.NewLimiter(1e-6, 5)
	calls := 0
	flakyTwice := func(_ context.Context, x int) (int, error) {
		if calls++; calls <= 2 {
			return 0, errors.New("again")
		}
		return x, nil
	}
	if n, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(1)), flakyTwice,
		stage.Workers(1), stage.Retry(3, 0), stage.SharedRateLimit(l))); n != 1 || err != nil {
		t.Fatalf("%d, %v", n, err)
	}
	if tokens := l.Tokens(); tokens < 1.99 || tokens > 2.01 {
		t.Fatalf("%.3f tokens left after 3 attempts from a bucket of 5, want 2", tokens)
	}
	slow := rate.NewLimiter(1, 1)
	slow.Reserve() // the next token comes in a second
	hangGuard(t, func() {
		n, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(1)), double,
			stage.Timeout(10*time.Millisecond), stage.SharedRateLimit(slow)))
		if n != 1 || err != nil {
			t.Errorf("a call whose token came after its timeout's length: %d, %v; want it to succeed", n, err)
		}
	})
}

// TestSharedRateLimitThatCanGiveNoToken: a limiter that can never give a
// token fails the attempt with ErrNoToken instead of waiting for ever
// (hangGuard fails the test if the run hangs).
func TestSharedRateLimitThatCanGiveNoToken(t *testing.T) {
	for _, l := range []*rate.Limiter{rate.NewLimiter(10, 0), rate.NewLimiter(0, 1)} {
		hangGuard(t, func() {
			n, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(3)), double,
				stage.Workers(1), stage.SharedRateLimit(l), stage.OnError(stage.Forward)))
			want := 3 - min(l.Burst(), 3)
			var fe *sink.ForwardedError
			if !errors.Is(err, stage.ErrNoToken) || !errors.As(err, &fe) || fe.Count != want || n != 3-want {
				t.Errorf("limit %v, burst %d: %d items, %v; want %d failed with ErrNoToken", l.Limit(), l.Burst(), n, err, want)
			}
		})
	}
}
