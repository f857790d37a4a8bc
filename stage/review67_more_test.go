package stage_test

// More combinations: Batch's timeout flush while the input waits, policies
// and forwarded errors from upstream, and the fates of items (Ack) through
// the combinators in runs that complete.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "A batch leaves when it is full, when timeout has passed since its first
// item arrived ...": with an input that waits for ever after a few items,
// the partial batch still leaves (it is not held until the input ends), and
// so does each later partial batch (the timer starts again at its first
// item). No duration is asserted: the test only waits for the batches.
// Child process: a batch that never leaves hangs the run.
func TestReview67BatchTimeoutFlushesWhileInputWaits(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, timeout := range []time.Duration{time.Nanosecond, time.Millisecond} {
			ch := make(chan int)
			go func() {
				ch <- 0
				ch <- 1
			}()
			var got [][]int
			r67Guard(t, "flush", func() {
				for b, err := range sink.All(context.Background(), stage.Batch(source.Chan(ch), 10, timeout)) {
					if err != nil {
						t.Errorf("timeout=%v: %v", timeout, err)
						return
					}
					got = append(got, b)
					var total int
					for _, g := range got {
						total += len(g)
					}
					switch total {
					case 2:
						go func() { ch <- 2 }() // the next batch, after the first left
					case 3:
						return
					}
				}
			})
			var flat []int
			for _, b := range got {
				flat = append(flat, b...)
			}
			if !r67Equal(flat, []int{0, 1, 2}) {
				t.Errorf("timeout=%v: batches %v; want the items 0, 1, 2 in order", timeout, got)
			}
		}
	})
}

// Forwarded errors from upstream are not failures of a later stage: they
// "pass through without a call", so a Handle's h does not see them, and a
// Budget of that stage does not count them ("the first n failed items").
func TestReview67PoliciesIgnoreForwarded(t *testing.T) {
	up := func() stage.Stream[int] {
		return stage.Map(source.Slice(r67Ints(10)), func(_ context.Context, v int) (int, error) {
			if v%2 == 0 {
				return 0, r67Err
			}
			return v, nil
		}, stage.OnError(stage.Forward), stage.Name("up"))
	}
	var hCalls r67Counter
	h := func(context.Context, *stage.Error) error { hCalls.inc(); return nil }
	for name, p := range map[string]stage.ErrorPolicy{
		"handle":   stage.Handle(h),
		"budget 0": stage.Budget(0, h),
		"budget 1": stage.Budget(1, h),
		"failfast": stage.FailFast,
	} {
		vals, fwd, err := r67Run(context.Background(), stage.Map(up(), r67Id, stage.OnError(p)))
		if err != nil || !r67SameInts(vals, []int{1, 3, 5, 7, 9}) || len(fwd) != 5 {
			t.Errorf("%s: %v, %v, %v; want the 5 values and the 5 forwarded errors", name, vals, fwd, err)
		}
		for _, e := range fwd {
			var se *stage.Error
			if !errors.As(e, &se) || se.Stage != "up" {
				t.Errorf("%s: forwarded %v", name, e)
			}
		}
	}
	if hCalls.get() != 0 {
		t.Errorf("h was called %d times for forwarded errors", hCalls.get())
	}
}

// r67Fates checks that each of the n items was told exactly once, nil or
// an error wrapping r67Err as want says.
func r67Fates(t *testing.T, name string, rec *r67AckRec, n int, failed func(int) bool) {
	t.Helper()
	calls := rec.snapshot()
	for i := range n {
		c := calls[i]
		switch {
		case len(c) != 1:
			t.Errorf("%s: item %d told %d times (%v); want once", name, i, len(c), c)
		case failed(i) && !errors.Is(c[0], r67Err):
			t.Errorf("%s: item %d told %v; want its failure", name, i, c[0])
		case !failed(i) && c[0] != nil:
			t.Errorf("%s: item %d told %v; want nil", name, i, c[0])
		}
	}
}

// Ack through the combinators, in runs that complete: "An item that fans
// out (FlatMap, Tee) is done when all its outputs are; an item in a Batch
// is done when its batch is"; dropped on purpose (Filter, an empty
// FlatMap, an accepted Handle) is Done(nil); "Done(err) as soon as its way
// failed, with the first error: a forwarded *Error it led to reached the
// sink". Done is called at most once per item.
func TestReview67AckThroughCombinators(t *testing.T) {
	const n = 12
	bad := func(v int) bool { return v%5 == 2 }
	fail := func(_ context.Context, v int) (int, error) {
		if bad(v) {
			return 0, r67Err
		}
		return v, nil
	}
	cases := map[string]struct {
		build  func(in stage.Stream[int]) stage.Stream[int]
		failed func(int) bool
	}{
		"tee forward on one branch": {func(in stage.Stream[int]) stage.Stream[int] {
			bs := stage.Tee(in, 3)
			return stage.Merge(bs[0], stage.Map(bs[1], fail, stage.OnError(stage.Forward)), stage.Map(bs[2], r67Id, stage.Workers(2)))
		}, bad},
		"flatmap fan-out and empty": {func(in stage.Stream[int]) stage.Stream[int] {
			return stage.FlatMap(in, func(_ context.Context, v int) ([]int, error) {
				if bad(v) {
					return nil, nil
				}
				return []int{v, v, v}, nil
			}, stage.Workers(3))
		}, func(int) bool { return false }},
		"filter and handle": {func(in stage.Stream[int]) stage.Stream[int] {
			f := stage.Filter(in, func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil }, stage.Workers(2))
			return stage.Map(f, fail, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
		}, func(int) bool { return false }},
		"batch with a forwarded error": {func(in stage.Stream[int]) stage.Stream[int] {
			m := stage.Map(in, fail, stage.OnError(stage.Forward), stage.Workers(1))
			return stage.Unbatch(stage.Map(stage.Batch(m, 3, 0), func(_ context.Context, b []int) ([]int, error) { return b, nil }))
		}, bad},
		"merge of ordered keyed": {func(in stage.Stream[int]) stage.Stream[int] {
			bs := stage.Tee(in, 2)
			a := stage.Map(bs[0], fail, stage.OnError(stage.Forward), stage.Ordered(), stage.Workers(3), stage.KeyBy(func(v int) int { return v % 2 }))
			b := stage.Filter(bs[1], func(context.Context, int) (bool, error) { return false, nil })
			return stage.Merge(a, b)
		}, bad},
		"budget within": {func(in stage.Stream[int]) stage.Stream[int] {
			return stage.Map(in, fail, stage.OnError(stage.Budget(n, nil)), stage.Retry(2, 0), stage.Workers(4))
		}, func(int) bool { return false }},
	}
	for name, c := range cases {
		rec := &r67AckRec{calls: map[int][]error{}}
		var err error
		r67Guard(t, name, func() { _, _, err = r67Run(context.Background(), c.build(r67AckSrc(n, rec))) })
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		r67Fates(t, name, rec, n, c.failed)
	}
}

// Budget exceeded at an item: "Done(err) as soon as its way failed ...:
// its stage's policy ended the run at it (FailFast, a Handle or Budget
// error)". With one worker, the items before it were dropped by the budget
// (told nil) and the one that exceeded it is told its error.
func TestReview67AckBudgetExceeded(t *testing.T) {
	rec := &r67AckRec{calls: map[int][]error{}}
	m := stage.Map(r67AckSrc(10, rec), func(_ context.Context, v int) (int, error) {
		if v < 3 {
			return 0, r67Err
		}
		return v, nil
	}, stage.OnError(stage.Budget(2, nil)), stage.Workers(1), stage.Buffer(1))
	var err error
	r67Guard(t, "budget", func() { _, err = sink.Slice(context.Background(), m) })
	if !errors.Is(err, stage.ErrBudget) {
		t.Fatalf("%v", err)
	}
	calls := rec.snapshot()
	want := fmt.Sprint([]error{nil}, []error{nil})
	if got := fmt.Sprint(calls[0], calls[1]); got != want || len(calls[2]) != 1 || !errors.Is(calls[2][0], r67Err) {
		t.Errorf("Done calls %v; want items 0 and 1 told nil, item 2 its error", calls)
	}
}
