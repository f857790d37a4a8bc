package stage_test

// KeyBy, attacked from its doc comment, alone and with Retry, Ordered,
// Workers and the error policies.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "items for which key returns the same value are processed one at a time,
// in the order the stage takes them from its input, while items of
// different keys run in parallel"; "with Ordered, the outputs follow the
// input order across keys too". One worker's input order is the source's.
func TestReview67KeyByOneAtATimeInOrder(t *testing.T) {
	for _, w := range []int{2, 6, -1} {
		for _, ordered := range []bool{false, true} {
			for _, srcKind := range []string{"slice", "source"} {
				name := fmt.Sprintf("w=%d/ordered=%v/%s", w, ordered, srcKind)
				const n, keys = 120, 5
				in := source.Slice(r67Ints(n))
				if srcKind == "source" {
					in = r67Src(n, nil)
				}
				var mu sync.Mutex
				busy := map[int]bool{}
				last := map[int]int{}
				for k := range keys {
					last[k] = -1
				}
				opts := []stage.Option{stage.Workers(w), stage.KeyBy(func(v int) int { return v % keys })}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				m := stage.Map(in, func(_ context.Context, v int) (int, error) {
					k := v % keys
					mu.Lock()
					if busy[k] {
						t.Errorf("%s: key %d: item %d started while another of its key ran", name, k, v)
					}
					if v < last[k] {
						t.Errorf("%s: key %d: item %d after item %d", name, k, v, last[k])
					}
					busy[k], last[k] = true, v
					mu.Unlock()
					runtime.Gosched()
					mu.Lock()
					busy[k] = false
					mu.Unlock()
					return v, nil
				}, opts...)
				var got []int
				var err error
				r67Guard(t, name, func() { got, err = sink.Slice(context.Background(), m) })
				if err != nil || !r67SameInts(got, r67Ints(n)) || (ordered && !r67Equal(got, r67Ints(n))) {
					t.Errorf("%s: got %v, %v", name, got, err)
				}
			}
		}
	}
}

// "items of different keys run in parallel"; "a key that is not equal to
// itself (a float NaN, or a key holding one) matches no other, so its item
// runs as if its key were its own." Item 0 waits for item 1 to start: with
// different keys (or NaN keys) both must run at once. Child process: a
// deadlock fails this test only.
func TestReview67KeyByParallelAndNaN(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		type pair struct {
			name string
			opt  stage.Option
		}
		type nanKey struct {
			f float64
			s string
		}
		cases := []pair{
			{"different ints", stage.KeyBy(func(v int) int { return v })},
			{"NaN", stage.KeyBy(func(int) float64 { return math.NaN() })},
			{"struct holding NaN", stage.KeyBy(func(int) nanKey { return nanKey{math.NaN(), "k"} })},
			{"interface holding NaN", stage.KeyBy(func(int) any { return math.NaN() })},
		}
		for _, c := range cases {
			for _, ordered := range []bool{false, true} {
				started1 := make(chan struct{})
				opts := []stage.Option{stage.Workers(2), c.opt}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				m := stage.Map(source.Slice([]int{0, 1}), func(_ context.Context, v int) (int, error) {
					if v == 1 {
						close(started1)
					} else {
						<-started1
					}
					return v, nil
				}, opts...)
				var got []int
				var err error
				r67Guard(t, c.name, func() { got, err = sink.Slice(context.Background(), m) })
				if err != nil || !r67SameInts(got, []int{0, 1}) {
					t.Errorf("%s ordered=%v: %v, %v", c.name, ordered, got, err)
				}
			}
		}
	})
}

// "key is called once per item" (not per attempt under Retry); "Forwarded
// errors pass through without a key."
func TestReview67KeyByCalledOncePerItem(t *testing.T) {
	var keys r67Counter
	up := stage.Map(source.Slice(r67Ints(20)), func(_ context.Context, v int) (int, error) {
		if v%4 == 0 {
			return 0, r67Err
		}
		return v, nil
	}, stage.OnError(stage.Forward))
	var tries r67Tries
	m := stage.Map(up, func(_ context.Context, v int) (int, error) {
		if tries.add(v) < 3 {
			return 0, r67Err
		}
		return v, nil
	}, stage.KeyBy(func(v int) int { keys.inc(); return v % 3 }), stage.Retry(3, 0), stage.Workers(4))
	vals, fwd, err := r67Run(context.Background(), m)
	if err != nil || len(vals) != 15 || len(fwd) != 5 {
		t.Fatalf("%v, %v, %v", vals, fwd, err)
	}
	if keys.get() != 15 {
		t.Errorf("key called %d times; want 15 (once per value, none for the 5 forwarded errors)", keys.get())
	}
}

// "A panic in key fails the item as a panic in the stage's function does:
// an *Error wrapping a *PanicError goes to the stage's policy (the item's
// function is not called)"; Attempts: "0 when its KeyBy key function
// panicked, so that it was never tried". Not retried under Retry or
// RetryIf (the predicate is not asked: the item was never tried).
func TestReview67KeyByKeyPanics(t *testing.T) {
	for _, policy := range []string{"failfast", "forward", "handle", "budget"} {
		var calls, preds r67Counter
		var handled []*stage.Error
		var mu sync.Mutex
		h := func(_ context.Context, e *stage.Error) error {
			mu.Lock()
			handled = append(handled, e)
			mu.Unlock()
			return nil
		}
		opts := []stage.Option{
			stage.KeyBy(func(v int) int {
				if v == 3 {
					panic("r67 key")
				}
				return v % 2
			}),
			stage.RetryIf(4, 0, func(error) bool { preds.inc(); return true }),
			stage.Workers(3),
		}
		switch policy {
		case "forward":
			opts = append(opts, stage.OnError(stage.Forward))
		case "handle":
			opts = append(opts, stage.OnError(stage.Handle(h)))
		case "budget":
			opts = append(opts, stage.OnError(stage.Budget(1, h)))
		}
		m := stage.Map(source.Slice(r67Ints(6)), func(_ context.Context, v int) (int, error) {
			if v == 3 {
				calls.inc()
			}
			return v, nil
		}, opts...)
		vals, fwd, err := r67Run(context.Background(), m)
		var e error
		switch policy {
		case "failfast":
			e = err
		case "forward":
			if err != nil || len(fwd) != 1 || !r67SameInts(vals, []int{0, 1, 2, 4, 5}) {
				t.Errorf("%s: %v, %v, %v", policy, vals, fwd, err)
			}
			if len(fwd) > 0 {
				e = fwd[0]
			}
		default:
			if err != nil || len(handled) != 1 || !r67SameInts(vals, []int{0, 1, 2, 4, 5}) {
				t.Errorf("%s: %v, %v, %v", policy, vals, handled, err)
			}
			if len(handled) > 0 {
				e = handled[0]
			}
		}
		var se *stage.Error
		var pe *stage.PanicError
		if !errors.As(e, &se) || !errors.As(e, &pe) || se.Attempts != 0 || se.Input != 3 || pe.Value != "r67 key" {
			t.Errorf("%s: error %v (%+v); want item 3's *Error of Attempts 0 wrapping the key's *PanicError", policy, e, se)
		}
		if calls.get() != 0 || preds.get() != 0 {
			t.Errorf("%s: the function was called %d times and the predicate %d times for item 3; want 0", policy, calls.get(), preds.get())
		}
	}
}

// Per-key order across Retry: an item being retried is still being
// processed, so the next item of its key does not start between its
// attempts. Item 0 (key 0) fails twice with a backoff; item 1 (key 0) is
// taken meanwhile by another worker and must wait for item 0's last
// attempt. (A backoff gives a wrong implementation a window to show it;
// a right one passes whatever the timing.)
func TestReview67KeyByHoldsKeyAcrossRetries(t *testing.T) {
	var mu sync.Mutex
	var seq []string
	var tries r67Tries
	m := stage.Map(source.Slice(r67Ints(4)), func(_ context.Context, v int) (int, error) {
		n := tries.add(v)
		mu.Lock()
		seq = append(seq, fmt.Sprintf("%d.%d", v, n))
		mu.Unlock()
		if v == 0 && n < 3 {
			return 0, r67Err
		}
		return v, nil
	}, stage.KeyBy(func(v int) int { return v / 2 }), stage.Retry(3, 20*time.Millisecond), stage.Workers(4))
	var got []int
	var err error
	r67Guard(t, "retry", func() { got, err = sink.Slice(context.Background(), m) })
	if err != nil || !r67SameInts(got, r67Ints(4)) {
		t.Fatalf("%v, %v", got, err)
	}
	// Key 0's calls in order: 0.1 0.2 0.3 1.1.
	var key0 []string
	for _, s := range seq {
		if s[0] == '0' || s[0] == '1' {
			key0 = append(key0, s)
		}
	}
	if fmt.Sprint(key0) != "[0.1 0.2 0.3 1.1]" {
		t.Errorf("key 0's calls: %v; want [0.1 0.2 0.3 1.1] (all calls: %v)", key0, seq)
	}
}

// A FailFast error or a cancellation while items wait for their key: the
// run ends (no hang, no goroutine left) and the sink returns the error.
func TestReview67KeyByEndsWhileWaiting(t *testing.T) {
	for _, kind := range r67CtxKinds {
		ctx, cancel := r67Parent(kind)
		entered := make(chan struct{})
		m := stage.Map(r67Src(-1, nil), func(fctx context.Context, v int) (int, error) {
			if v == 0 {
				close(entered)
				<-fctx.Done()
				return 0, fctx.Err()
			}
			return v, nil
		}, stage.KeyBy(func(int) int { return 0 }), stage.Workers(4), stage.Buffer(3))
		var err error
		var got []int
		r67Guard(t, kind, func() {
			go func() { <-entered; cancel() }()
			got, err = sink.Slice(ctx, m)
		})
		if !errors.Is(err, context.Canceled) || len(got) != 0 {
			t.Errorf("%s: %v, %v; want nothing and context.Canceled", kind, got, err)
		}
	}
	// FailFast: item 0 of the only key fails; the items waiting are dropped.
	var calls atomic.Int64
	m := stage.Map(r67Src(-1, nil), func(_ context.Context, v int) (int, error) {
		calls.Add(1)
		if v == 0 {
			return 0, r67Err
		}
		return v, nil
	}, stage.KeyBy(func(int) int { return 0 }), stage.Workers(4))
	var err error
	r67Guard(t, "failfast", func() { _, err = sink.Slice(context.Background(), m) })
	var se *stage.Error
	if !errors.As(err, &se) || se.Index != 0 || calls.Load() != 1 {
		t.Errorf("failfast: %v, %d calls; want item 0's *Error after 1 call (no new item starts)", err, calls.Load())
	}
}
