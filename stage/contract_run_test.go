package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// rvFailingSource yields 0..n-1 and then errSrc; srcFailed is closed just
// before next returns the error.
func rvFailingSource(n int, errSrc error, srcFailed chan struct{}) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				close(srcFailed)
				return 0, errSrc
			}
			i++
			return i - 1, nil
		}, nil
	})
}

// TestContractRunSourceErrorAfterEverything: the *SourceError is returned only
// once every item produced before the failure was delivered, even when one of
// them is still in a stage when the source fails.
func TestContractRunSourceErrorAfterEverything(t *testing.T) {
	errSrc := errors.New("source broke")
	const n = 6
	type shape struct {
		name  string
		build func(s stage.Stream[int], slow func(context.Context, int), m mode) stage.Stream[int]
		want  []int
	}
	slowMap := func(s stage.Stream[int], slow func(context.Context, int), m mode) stage.Stream[int] {
		return stage.Map(s, func(ctx context.Context, x int) (int, error) { slow(ctx, x); return x, nil }, m.opts()...)
	}
	shapes := []shape{
		{"map", slowMap, ints(n)},
		{"apply3", func(s stage.Stream[int], slow func(context.Context, int), m mode) stage.Stream[int] {
			return stage.Apply(s, func(ctx context.Context, x int, emit func(int) bool) error {
				emit(x * 3)
				slow(ctx, x)
				emit(x*3 + 1)
				emit(x*3 + 2)
				return nil
			}, m.opts()...)
		}, ints(3 * n)},
		{"keyby", func(s stage.Stream[int], slow func(context.Context, int), m mode) stage.Stream[int] {
			return stage.Map(s, func(ctx context.Context, x int) (int, error) { slow(ctx, x); return x, nil }, m.opts(stage.KeyBy(func(x int) int { return x % 2 }))...)
		}, ints(n)},
		{"batch-unbatch", func(s stage.Stream[int], slow func(context.Context, int), m mode) stage.Stream[int] {
			return stage.Unbatch(stage.Batch(slowMap(s, slow, m), 4, 0))
		}, ints(n)},
		{"tee-merge", func(s stage.Stream[int], slow func(context.Context, int), m mode) stage.Stream[int] {
			b := stage.Tee(s, 2)
			return stage.Merge(slowMap(b[0], slow, m), stage.Map(b[1], func(_ context.Context, x int) (int, error) { return x + 100, nil }, m.opts()...))
		}, append(ints(n), 100, 101, 102, 103, 104, 105)},
		{"until", func(s stage.Stream[int], slow func(context.Context, int), m mode) stage.Stream[int] {
			return slowMap(stage.Until(s, context.Background()), slow, m)
		}, ints(n)},
	}
	for _, sh := range shapes {
		for _, m := range modes {
			if m.workers == 1 {
				continue // item 2 could not be in flight when the source fails
			}
			t.Run(sh.name+"/"+m.String(), func(t *testing.T) {
				failed := make(chan struct{})
				src := rvFailingSource(n, errSrc, failed)
				slow := func(ctx context.Context, x int) {
					if x == 2 {
						rvWait(failed) // item 2 finishes only after the source failed
					}
				}
				var got []int
				var err error
				rvRun(t, func() {
					err = stage.Run(context.Background(), sh.build(src, slow, m), func(_ context.Context, v int, e error) error {
						if e != nil {
							t.Errorf("forwarded %v", e)
						}
						got = append(got, v)
						return nil
					})
				})
				var se *stage.SourceError
				if !errors.As(err, &se) || !errors.Is(err, errSrc) {
					t.Errorf("Run = %v, want the *SourceError", err)
				}
				if !slices.Equal(rvSorted(got), rvSorted(sh.want)) {
					t.Errorf("delivered %v before the SourceError, want %v", got, sh.want)
				}
			})
		}
	}
}

// TestContractRunFailFastBeforeSourceError: a FailFast error at an item
// produced before the source failed cuts the run short: the result is the
// *Error, never the *SourceError (not everything was delivered).
func TestContractRunFailFastBeforeSourceError(t *testing.T) {
	errSrc := errors.New("source broke")
	errX := errors.New("x")
	for _, m := range modes {
		if m.workers == 1 {
			continue
		}
		t.Run(m.String(), func(t *testing.T) {
			failed := make(chan struct{})
			s := stage.Map(rvFailingSource(3, errSrc, failed), func(_ context.Context, x int) (int, error) {
				if x == 1 {
					rvWait(failed)
					return 0, errX
				}
				return x, nil
			}, m.opts()...)
			var err error
			rvRun(t, func() {
				err = stage.Run(context.Background(), s, func(context.Context, int, error) error { return nil })
			})
			var ie *stage.Error
			if !errors.As(err, &ie) || !errors.Is(err, errX) {
				t.Errorf("Run = %v, want the FailFast *Error", err)
			}
		})
	}
}

// TestContractRunErrStopWins: f returns ErrStop after the caller cancelled ctx,
// after a FailFast error elsewhere, after the source failed: nil each time.
func TestContractRunErrStopWins(t *testing.T) {
	errX := errors.New("x")
	t.Run("after-caller-cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var err error
		rvRun(t, func() {
			err = stage.Run(ctx, stage.Map(source.Slice(ints(10)), double), func(context.Context, int, error) error {
				cancel()
				return stage.ErrStop
			})
		})
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	t.Run("after-failfast", func(t *testing.T) {
		inCb := make(chan struct{})
		s := stage.Map(source.Slice(ints(2)), func(_ context.Context, x int) (int, error) {
			if x == 1 {
				rvWait(inCb)
				return 0, errX
			}
			return 0, nil
		}, stage.Workers(2))
		var err error
		rvRun(t, func() {
			err = stage.Run(context.Background(), s, func(ctx context.Context, _ int, _ error) error {
				close(inCb)
				<-ctx.Done()
				return stage.ErrStop
			})
		})
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	t.Run("after-source-error", func(t *testing.T) {
		failed := make(chan struct{})
		s := stage.Map(rvFailingSource(2, errors.New("src"), failed), func(ctx context.Context, x int) (int, error) {
			if x == 0 {
				select {
				case <-failed:
				case <-ctx.Done():
				}
			}
			return x, nil
		}, stage.Workers(2))
		var err error
		rvRun(t, func() {
			err = stage.Run(context.Background(), s, func(context.Context, int, error) error { return stage.ErrStop })
		})
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

// TestContractRunReturnsFsError: "the error f returned": Run returns it.
func TestContractRunReturnsFsError(t *testing.T) {
	errF := errors.New("f says no")
	var err error
	rvRun(t, func() {
		err = stage.Run(context.Background(), stage.Map(source.Slice(ints(10)), double), func(_ context.Context, v int, _ error) error {
			if v == 6 {
				return errF
			}
			return nil
		})
	})
	if !errors.Is(err, errF) {
		t.Fatalf("Run = %v, want errF", err)
	}
	if err != errF {
		t.Logf("note: Run returns %T %q, not f's error itself", err, err)
	}
}

// TestContractRunForwardedNotReturned: forwarded errors are f's; Run returns nil.
func TestContractRunForwardedNotReturned(t *testing.T) {
	var errs int
	var err error
	rvRun(t, func() {
		err = stage.Run(context.Background(), stage.Map(source.Slice(ints(10)), func(_ context.Context, x int) (int, error) {
			return 0, fmt.Errorf("fail %d", x)
		}, stage.OnError(stage.Forward)), func(_ context.Context, _ int, e error) error {
			if e != nil {
				errs++
			}
			return nil
		})
	})
	if err != nil || errs != 10 {
		t.Fatalf("Run = %v after %d forwarded errors, want nil after 10", err, errs)
	}
}

// TestContractRunPanicInF: a panic in f is not recovered: Run cancels the run,
// waits for it (the source's stop has run, no user function runs), and the
// panic continues.
func TestContractRunPanicInF(t *testing.T) {
	var stopped, running atomic.Int32
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) { i++; return i, nil }, func() { stopped.Add(1) }
	})
	s := stage.Map(src, func(ctx context.Context, x int) (int, error) {
		running.Add(1)
		defer running.Add(-1)
		if x > 3 {
			<-ctx.Done()
		}
		return x, nil
	}, stage.Workers(4))
	var recovered any
	rvRun(t, func() {
		defer func() { recovered = recover() }()
		_ = stage.Run(context.Background(), s, func(_ context.Context, v int, _ error) error {
			if v == 3 {
				panic("boom")
			}
			return nil
		})
	})
	if recovered != "boom" {
		t.Fatalf("recovered %v, want the panic", recovered)
	}
	if stopped.Load() != 1 || running.Load() != 0 {
		t.Fatalf("after the panic: stop called %d times, %d calls running", stopped.Load(), running.Load())
	}
}

// TestContractSourceOpenStopPerRun: open once per run and stop once, also when
// a run fails before it starts (unconsumed Tee branch).
func TestContractSourceOpenStopPerRun(t *testing.T) {
	var opens, stops, nexts atomic.Int32
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		opens.Add(1)
		i := 0
		return func(context.Context) (int, error) {
			nexts.Add(1)
			if i == 5 {
				return 0, io.EOF
			}
			i++
			return i, nil
		}, func() { stops.Add(1) }
	})
	var calls atomic.Int32
	b := stage.Tee(stage.Map(src, func(_ context.Context, x int) (int, error) { calls.Add(1); return x, nil }), 3)
	var err error
	rvRun(t, func() { _, err = sink.Count(context.Background(), stage.Merge(b[0], b[2])) })
	if !errors.Is(err, stage.ErrUnconsumedBranch) {
		t.Fatalf("err = %v, want ErrUnconsumedBranch", err)
	}
	t.Logf("unconsumed: err %q; opens %d stops %d nexts %d calls %d", err, opens.Load(), stops.Load(), nexts.Load(), calls.Load())
	if nexts.Load() != 0 || calls.Load() != 0 {
		t.Errorf("an item was taken (%d next calls, %d function calls)", nexts.Load(), calls.Load())
	}
	if opens.Load() != stops.Load() {
		t.Errorf("open called %d times, stop %d times", opens.Load(), stops.Load())
	}
	if !containsBranch(err, 1) {
		t.Errorf("the error %q does not name the missing branch 1", err)
	}
	// First and All report the same.
	var v int
	var ok bool
	rvRun(t, func() { v, ok, err = sink.First(context.Background(), stage.Merge(b[0], b[2])) })
	if ok || !errors.Is(err, stage.ErrUnconsumedBranch) {
		t.Errorf("First = %v %v %v", v, ok, err)
	}
	var pairs int
	rvRun(t, func() {
		for _, e := range sink.All(context.Background(), b[1]) {
			pairs++
			err = e
		}
	})
	if pairs != 1 || !errors.Is(err, stage.ErrUnconsumedBranch) {
		t.Errorf("All: %d pairs, last err %v", pairs, err)
	}
}

func containsBranch(err error, i int) bool {
	return err != nil && (contains(err.Error(), fmt.Sprintf("branch %d", i)) || contains(err.Error(), fmt.Sprintf("[%d]", i)))
}

func contains(s, sub string) bool { return len(sub) <= len(s) && (s == sub || indexOf(s, sub) >= 0) }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestContractZeroPolicyIsFailFast: OnError(ErrorPolicy{}) behaves as FailFast.
func TestContractZeroPolicyIsFailFast(t *testing.T) {
	errX := errors.New("x")
	var zero stage.ErrorPolicy
	if zero.String() != "FailFast" {
		t.Errorf("zero policy String() = %q", zero.String())
	}
	var err error
	var seen int
	rvRun(t, func() {
		err = stage.Run(context.Background(), stage.Map(source.Slice(ints(10)), func(_ context.Context, x int) (int, error) {
			if x == 3 {
				return 0, errX
			}
			return x, nil
		}, stage.Workers(1), stage.OnError(zero)), func(_ context.Context, _ int, e error) error {
			if e != nil {
				seen++
			}
			return nil
		})
	})
	if !errors.Is(err, errX) || seen != 0 {
		t.Fatalf("Run = %v with %d forwarded errors, want the FailFast error", err, seen)
	}
}

// TestContractSeveralSinksAtOnce: one Stream run by several sinks at the same
// time: each run has its own stage state (Ordered window, KeyBy, Batch,
// Budget per run, Tee), a Source's open per run, source.Chan shares values.
func TestContractSeveralSinksAtOnce(t *testing.T) {
	const n, runs = 300, 4
	errX := errors.New("x")
	var opens atomic.Int32
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		opens.Add(1)
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, io.EOF
			}
			i++
			return i - 1, nil
		}, nil
	})
	m := stage.Map(src, func(_ context.Context, x int) (int, error) {
		if x%100 == 7 {
			return 0, errX
		}
		return x, nil
	}, stage.Workers(3), stage.Ordered(), stage.OnError(stage.Budget(3, nil)))
	k := stage.Map(m, double, stage.Workers(3), stage.KeyBy(func(x int) int { return x % 5 }))
	bt := stage.Unbatch(stage.Batch(k, 7, 0))
	b := stage.Tee(bt, 2)
	out := stage.Merge(b[0], stage.Map(b[1], func(_ context.Context, x int) (int, error) { return -x - 1, nil }))
	var stats stage.Stats
	ctx := stage.Observe(context.Background(), &stats)
	var wg sync.WaitGroup
	results := make([][]int, runs)
	errs := make([]error, runs)
	rvRun(t, func() {
		for r := range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[r], errs[r] = sink.Slice(ctx, out)
			}()
		}
		wg.Wait()
	})
	var want []int
	for x := range n {
		if x%100 != 7 {
			want = append(want, 2*x, -2*x-1)
		}
	}
	want = rvSorted(want)
	for r := range runs {
		if errs[r] != nil {
			t.Errorf("run %d: %v (Budget is per run)", r, errs[r])
		}
		if !slices.Equal(rvSorted(results[r]), want) {
			t.Errorf("run %d: %d items, want %d", r, len(results[r]), len(want))
		}
	}
	if opens.Load() != runs {
		t.Errorf("open called %d times for %d runs", opens.Load(), runs)
	}
	for _, c := range stats.Snapshot() {
		if c.Running != 0 {
			t.Errorf("stats %s: Running = %d after every run ended", c.Name, c.Running)
		}
	}

	// source.Chan: each value goes to one run.
	ch := make(chan int, 1000)
	for i := range 1000 {
		ch <- i
	}
	close(ch)
	cs := stage.Map(source.Chan(ch), double, stage.Workers(2))
	var all []int
	var mu sync.Mutex
	rvRun(t, func() {
		for range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := sink.Slice(context.Background(), cs)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				all = append(all, got...)
				mu.Unlock()
			}()
		}
		wg.Wait()
	})
	if len(all) != 1000 {
		t.Errorf("chan shared by %d runs: %d values in all, want 1000", runs, len(all))
	}
}
