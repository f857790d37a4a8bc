package stage_test

// Options combined with each other: Ordered with dropping policies, Retry
// without a backoff under cancellation, wide Tee and Merge.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Ordered with items that leave no output (a Handle or Budget that drops
// them, a key panic handled, a Filter, an empty FlatMap): "With Ordered
// they leave in input order"; a dropped item must not hold the window.
// Within each group of 4 the calls complete in reverse order.
func TestReview67OrderedWithDrops(t *testing.T) {
	const n, g = 40, 4
	drop := func(v int) bool { return v%7 == 3 }
	var want []int
	for v := range n {
		if !drop(v) {
			want = append(want, v)
		}
	}
	handle := stage.Handle(func(context.Context, *stage.Error) error { return nil })
	cases := map[string]func(ch *r67Chain) stage.Stream[int]{
		"map handle": func(ch *r67Chain) stage.Stream[int] {
			return stage.Map(source.Slice(r67Ints(n)), func(_ context.Context, v int) (int, error) {
				ch.wait(v, g)
				defer ch.finish(v)
				if drop(v) {
					return 0, r67Err
				}
				return v, nil
			}, stage.Workers(g), stage.Ordered(), stage.OnError(handle))
		},
		"map budget retry": func(ch *r67Chain) stage.Stream[int] {
			var tries r67Tries
			return stage.Map(source.Slice(r67Ints(n)), func(_ context.Context, v int) (int, error) {
				if tries.add(v) == 2 || !drop(v) {
					ch.wait(v, g)
					defer ch.finish(v)
				}
				if drop(v) {
					return 0, r67Err
				}
				return v, nil
			}, stage.Workers(g), stage.Ordered(), stage.Retry(2, 0), stage.OnError(stage.Budget(n, nil)))
		},
		"keyby key panic handled": func(ch *r67Chain) stage.Stream[int] {
			for v := range n {
				if drop(v) {
					ch.finish(v) // its function is never called
				}
			}
			return stage.Map(source.Slice(r67Ints(n)), func(_ context.Context, v int) (int, error) {
				ch.wait(v, g)
				defer ch.finish(v)
				return v, nil
			}, stage.Workers(g), stage.Ordered(), stage.OnError(handle), stage.KeyBy(func(v int) int {
				if drop(v) {
					panic("r67 key")
				}
				return v
			}))
		},
		"filter": func(ch *r67Chain) stage.Stream[int] {
			return stage.Filter(source.Slice(r67Ints(n)), func(_ context.Context, v int) (bool, error) {
				ch.wait(v, g)
				defer ch.finish(v)
				return !drop(v), nil
			}, stage.Workers(g), stage.Ordered())
		},
		"flatmap": func(ch *r67Chain) stage.Stream[int] {
			return stage.FlatMap(source.Slice(r67Ints(n)), func(_ context.Context, v int) ([]int, error) {
				ch.wait(v, g)
				defer ch.finish(v)
				if drop(v) {
					return []int{}, nil
				}
				return []int{v}, nil
			}, stage.Workers(g), stage.Ordered())
		},
		"concurrent handle": func(ch *r67Chain) stage.Stream[int] {
			tasks := stage.Map(source.Slice(r67Ints(n)), func(_ context.Context, v int) (func(context.Context) (int, error), error) {
				return func(context.Context) (int, error) {
					ch.wait(v, g)
					defer ch.finish(v)
					if drop(v) {
						return 0, r67Err
					}
					return v, nil
				}, nil
			}, stage.Workers(1))
			return stage.Concurrent(tasks, stage.Workers(g), stage.Ordered(), stage.OnError(handle))
		},
	}
	for name, build := range cases {
		var got []int
		var err error
		r67Guard(t, name, func() { got, err = sink.Slice(context.Background(), build(r67NewChain(n))) })
		if err != nil || !r67Equal(got, want) {
			t.Errorf("%s: %v, %v; want %v", name, got, err, want)
		}
	}
}

// Retry without a backoff (or a tiny one) and attempts without end: once
// the run is cancelled, "The wait ... ends early, without a retry": the
// sink returns context.Canceled instead of retrying for ever. Also once
// another item failed FailFast. Child process: a hang fails this test.
func TestReview67RetryEndlessStopsOnCancel(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, backoff := range []time.Duration{0, 1} {
			for _, kind := range r67CtxKinds {
				name := fmt.Sprintf("backoff=%v/%s", backoff, kind)
				ctx, cancel := r67Parent(kind)
				var calls r67Counter
				m := stage.Map(source.Slice([]int{1}), func(fctx context.Context, v int) (int, error) {
					if calls.inc() == 3 {
						cancel()
					}
					if err := fctx.Err(); err != nil {
						return 0, err
					}
					return 0, r67Err
				}, stage.Retry(math.MaxInt, backoff), stage.Buffer(1))
				var err error
				r67Guard(t, name, func() { _, err = sink.Slice(ctx, m) })
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%s: %v after %d calls; want context.Canceled", name, err, calls.get())
				}
				t.Logf("%s: %d calls", name, calls.get())
			}
			// FailFast elsewhere.
			var calls r67Counter
			m := stage.Map(source.Slice([]int{0, 1}), func(fctx context.Context, v int) (int, error) {
				if v == 1 {
					if calls.get() < 3 {
						return 0, r67Err // retried too, until item 0 was tried 3 times
					}
					return 0, r67Fatal
				}
				calls.inc()
				return 0, r67Err
			}, stage.RetryIf(math.MaxInt, backoff, func(err error) bool { return errors.Is(err, r67Err) }), stage.Workers(2), stage.Buffer(1))
			var err error
			r67Guard(t, "failfast", func() { _, err = sink.Slice(context.Background(), m) })
			if !errors.Is(err, r67Fatal) {
				t.Errorf("backoff=%v failfast: %v; want item 1's error", backoff, err)
			}
		}
	})
}

// r67Fatal is the non-retryable error of TestReview67RetryEndlessStopsOnCancel.
const r67Fatal = ctxtest.Error("r67: fatal")

// A wide Tee and a wide Merge: Tee(n) for n = 500 gives every item to
// every branch; Merge of 500 inputs gives every item once.
func TestReview67WideTeeAndMerge(t *testing.T) {
	const n = 500
	bs := stage.Tee(source.Slice(r67Ints(3)), n)
	var got []int
	var err error
	r67Guard(t, "tee", func() { got, err = sink.Slice(context.Background(), stage.Merge(bs...)) })
	if err != nil || len(got) != 3*n {
		t.Errorf("Tee(%d): %d items, %v", n, len(got), err)
	}
	var ins []stage.Stream[int]
	var want []int
	for k := range n {
		ins = append(ins, source.Slice([]int{k}))
		want = append(want, k)
	}
	r67Guard(t, "merge", func() { got, err = sink.Slice(context.Background(), stage.Merge(ins...)) })
	if err != nil || !r67SameInts(got, want) {
		t.Errorf("Merge of %d: %d items, %v", n, len(got), err)
	}
	// First over a wide Tee ends every branch.
	bs = stage.Tee(r67Src(-1, nil), 100)
	r67Guard(t, "tee first", func() {
		_, ok, err := sink.First(context.Background(), stage.Merge(bs...))
		if !ok || err != nil {
			t.Errorf("First: %v, %v", ok, err)
		}
	})
}

// Ordered with a FailFast error while the window holds finished items: no
// hang, the sink returns the *Error, nothing after the failed item's place
// is delivered out of order. Items before the failure may or may not be
// delivered (a run cut short drops items in flight), but only in order.
func TestReview67OrderedFailFastWindow(t *testing.T) {
	ch := r67NewChain(20)
	m := stage.Map(source.Slice(r67Ints(20)), func(ctx context.Context, v int) (int, error) {
		ch.waitCtx(ctx, v, 4)
		defer ch.finish(v)
		if v == 6 {
			return 0, r67Err
		}
		return v, nil
	}, stage.Workers(4), stage.Ordered(), stage.Buffer(2))
	var got []int
	var err error
	r67Guard(t, "ordered failfast", func() {
		err = stage.Run(context.Background(), m, func(_ context.Context, v int, _ error) error {
			got = append(got, v)
			return nil
		})
	})
	var se *stage.Error
	if !errors.As(err, &se) || se.Index != 6 {
		t.Errorf("%v; want item 6's *Error", err)
	}
	if !r67Equal(got, r67Ints(len(got))) || len(got) > 6 {
		t.Errorf("delivered %v; want a prefix of 0..5", got)
	}
}
