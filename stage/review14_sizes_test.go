package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func r14FuncSource(n int) stage.Stream[int] {
	var i atomic.Int64
	return source.Func(func(context.Context) (int, error) {
		v := int(i.Add(1) - 1)
		if v >= n {
			return 0, errEOF
		}
		return v, nil
	})
}

// Hostile sizes: Workers and Buffer at math.MaxInt (workers+buffer and
// 2×workers+buffer overflow an int), a Batch of math.MaxInt (size+1
// overflows). "a large n over a small input costs neither goroutines nor
// memory"; "The buffer costs memory only for the items it holds"; "a large
// size costs memory only when batches fill up". Run in a child process: a
// huge allocation would kill it.
func TestReview14HugeSizes(t *testing.T) {
	if os.Getenv("R14_CHILD_HUGE") == "1" {
		r14HugeSizesChild(t)
		return
	}
	r14RunChild(t, "TestReview14HugeSizes", "R14_CHILD_HUGE=1")
}

func r14HugeSizesChild(t *testing.T) {
	const n = 100
	for _, c := range []struct {
		name string
		opts []stage.Option
	}{
		{"workers-max", []stage.Option{stage.Workers(math.MaxInt)}},
		{"workers-max-ordered", []stage.Option{stage.Workers(math.MaxInt), stage.Ordered()}},
		{"buffer-max", []stage.Option{stage.Workers(2), stage.Buffer(math.MaxInt)}},
		{"buffer-max-ordered", []stage.Option{stage.Workers(2), stage.Buffer(math.MaxInt), stage.Ordered()}},
		{"both-max", []stage.Option{stage.Workers(math.MaxInt), stage.Buffer(math.MaxInt)}},
		{"both-max-ordered", []stage.Option{stage.Workers(math.MaxInt), stage.Buffer(math.MaxInt), stage.Ordered()}},
		{"both-max-keyby", []stage.Option{stage.Workers(math.MaxInt), stage.Buffer(math.MaxInt), stage.KeyBy(func(i int) int { return i % 3 })}},
		{"workers-max-keyby-ordered", []stage.Option{stage.Workers(math.MaxInt), stage.Ordered(), stage.KeyBy(func(i int) int { return i % 3 })}},
	} {
		for _, src := range []string{"func", "slice"} {
			t.Run(c.name+"/"+src, func(t *testing.T) {
				var in stage.Stream[int]
				if src == "func" {
					in = r14FuncSource(n)
				} else {
					in = source.Slice(ints(n))
				}
				m := stage.Map(in, double, c.opts...)
				var got []int
				var err error
				func() {
					defer func() {
						if r := recover(); r != nil {
							err = fmt.Errorf("panic: %v", r)
						}
					}()
					r14Watchdog(t, func() { got, err = sink.Slice(context.Background(), m) })
				}()
				if err != nil || len(got) != n {
					t.Errorf("got %d items, %v", len(got), err)
				}
			})
		}
	}
	t.Run("batch-max", func(t *testing.T) {
		var got [][]int
		var err error
		r14Watchdog(t, func() { got, err = sink.Slice(context.Background(), stage.Batch(r14FuncSource(n), math.MaxInt, 0)) })
		if err != nil || len(got) != 1 || len(got[0]) != n {
			t.Errorf("got %d batches, %v", len(got), err)
		}
	})
	t.Run("batch-max-timeout-max", func(t *testing.T) {
		var got [][]int
		var err error
		r14Watchdog(t, func() {
			got, err = sink.Slice(context.Background(), stage.Batch(r14FuncSource(n), math.MaxInt, time.Duration(math.MaxInt64)))
		})
		if err != nil || len(got) != 1 || len(got[0]) != n {
			t.Errorf("got %d batches, %v", len(got), err)
		}
	})
	t.Run("timeout-max", func(t *testing.T) {
		m := stage.Map(source.Slice(ints(3)), func(ctx context.Context, i int) (int, error) {
			if ctx.Err() != nil {
				return 0, fmt.Errorf("ctx done at the start of the call: %w", ctx.Err())
			}
			return i, nil
		}, stage.Timeout(time.Duration(math.MaxInt64)))
		var err error
		r14Watchdog(t, func() { _, err = sink.Slice(context.Background(), m) })
		if err != nil {
			t.Error(err)
		}
	})
	t.Run("ratelimit-huge", func(t *testing.T) {
		m := stage.Map(source.Slice(ints(50)), double, stage.RateLimit(math.MaxFloat64, math.MaxInt), stage.Workers(4))
		var err error
		r14Watchdog(t, func() { _, err = sink.Slice(context.Background(), m) })
		if err != nil {
			t.Error(err)
		}
	})
}

// Retry with a huge backoff: the wait before the first retry is between
// backoff/2 and backoff (capped at 64·backoff, which overflows here): far in
// the future, so no retry happens before the run is cancelled, and the
// cancellation ends the wait.
func TestReview14RetryHugeBackoffNoOverflow(t *testing.T) {
	// 1<<56 (64·backoff = 2^62) is a control that does not overflow; the
	// others do (64·backoff > MaxInt64).
	for _, backoff := range []time.Duration{1 << 56, time.Duration(math.MaxInt64/64 + 1), 1 << 58, time.Duration(math.MaxInt64 / 4), time.Duration(math.MaxInt64)} {
		t.Run(fmt.Sprint(int64(backoff)), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var calls atomic.Int64
			failed := make(chan struct{})
			m := stage.Map(source.Slice([]int{0}), func(context.Context, int) (int, error) {
				if calls.Add(1) == 1 {
					close(failed)
				}
				return 0, errR14Fail
			}, stage.Retry(3, backoff), stage.Workers(1))
			go func() {
				<-failed
				time.Sleep(100 * time.Millisecond) // room for a wrong, immediate retry
				cancel()
			}()
			var err error
			r14Watchdog(t, func() { _, err = sink.Slice(ctx, m) })
			if c := calls.Load(); c != 1 {
				t.Errorf("%d calls; a backoff of %v should not retry before the cancellation (%v)", c, backoff, err)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("sink: %v; want Canceled", err)
			}
		})
	}
}

// Options: "an invalid one panics there, never during a run". A NaN rate is
// no valid rate: it must panic when made, or the run must work.
func TestReview14RateLimitNaN(t *testing.T) {
	if os.Getenv("R14_CHILD_NAN") == "1" {
		var opt stage.Option
		made := false
		func() {
			defer func() { _ = recover() }()
			opt = stage.RateLimit(math.NaN(), 1)
			made = true
		}()
		if !made {
			return // panicked when made: fine
		}
		var err error
		r14Watchdog(t, func() {
			_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(5)), double, opt, stage.Workers(2)))
		})
		if err != nil {
			t.Errorf("a RateLimit(NaN) that did not panic when made failed the run: %v", err)
		}
		return
	}
	r14RunChild(t, "TestReview14RateLimitNaN", "R14_CHILD_NAN=1")
}

// Budget(math.MaxInt, h): the (n+1)th failed item never comes; n+1 must not
// overflow into failing the run at the first failure.
func TestReview14BudgetMaxInt(t *testing.T) {
	var seen atomic.Int64
	m := stage.Map(source.Slice(ints(10)), func(_ context.Context, i int) (int, error) {
		if i%3 == 0 {
			return 0, errR14Fail
		}
		return i, nil
	}, stage.Workers(2), stage.OnError(stage.Budget(math.MaxInt, func(context.Context, *stage.Error) error { seen.Add(1); return nil })))
	var got []int
	var err error
	r14Watchdog(t, func() { got, err = sink.Slice(context.Background(), m) })
	if err != nil || len(got) != 6 || seen.Load() != 4 {
		t.Errorf("got %v, %v, h saw %d; want 6 values, nil, 4", got, err, seen.Load())
	}
}
