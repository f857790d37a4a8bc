package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Apply: "emit returns false, and drops the output, once the run is
// cancelled". An f that has seen its ctx done (the run was cancelled by a
// FailFast error elsewhere, or by the caller) gets false from emit, for a
// first output and for a further one, ordered or not.
func TestReview14EmitFalseOnceCancelled(t *testing.T) {
	for _, c := range []struct {
		ordered bool
		buffer  int
		before  int // outputs emitted before waiting for ctx.Done
		how     string
	}{
		{false, 0, 0, "failfast"}, {false, 0, 3, "failfast"}, {true, 0, 0, "failfast"}, {true, 0, 3, "failfast"},
		{false, 4, 2, "caller"}, {true, 4, 2, "caller"}, {true, 0, 0, "caller"},
	} {
		t.Run(fmt.Sprintf("ordered=%v/buffer=%d/before=%d/%s", c.ordered, c.buffer, c.before, c.how), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan struct{})
			var trueAfter atomic.Int64
			opts := []stage.Option{stage.Workers(3), stage.Buffer(c.buffer)}
			if c.ordered {
				opts = append(opts, stage.Ordered())
			}
			s := stage.Apply(source.Slice(ints(3)), func(ctx context.Context, i int, emit func(int) bool) error {
				switch i {
				case 1, 2:
					// ordered: item 1 is behind item 0 (which never
					// emits), so its outputs wait in memory
					for k := range c.before {
						emit(k)
					}
					if i == 2 {
						close(ready)
					}
					<-ctx.Done()
					for range 5 {
						if emit(99) {
							trueAfter.Add(1)
						}
					}
					return ctx.Err()
				default: // item 0
					<-ready
					if c.how == "failfast" {
						return errR14Fail
					}
					cancel()
					<-ctx.Done()
					return ctx.Err()
				}
			}, opts...)
			var err error
			r14Watchdog(t, func() {
				err = sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
			})
			if c.how == "failfast" && !errors.Is(err, errR14Fail) {
				t.Errorf("sink: %v", err)
			}
			if c.how == "caller" && !errors.Is(err, context.Canceled) {
				t.Errorf("sink: %v", err)
			}
			if n := trueAfter.Load(); n != 0 {
				t.Errorf("emit returned true %d times after f saw its ctx done", n)
			}
		})
	}
}

// Run: an f that returns an error after the run had been cut short by a
// FailFast error (f saw its ctx done) gets the FailFast error from Run: the
// first error wins. The same for ForEach.
func TestReview14SinkErrorAfterFailFastFirstWins(t *testing.T) {
	mk := func() stage.Stream[int] {
		return stage.Map(source.Slice(ints(4)), func(ctx context.Context, i int) (int, error) {
			if i == 0 {
				return 0, nil
			}
			if i == 1 {
				return 0, errR14Fail
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}, stage.Workers(1), stage.Name("first"))
	}
	errMine := errors.New("mine")
	var err error
	r14Watchdog(t, func() {
		err = stage.Run(context.Background(), mk(), func(ctx context.Context, v int, _ error) error {
			<-ctx.Done()
			return errMine
		})
	})
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "first" || errors.Is(err, errMine) {
		t.Errorf("Run: %v; want the FailFast *Error of stage first", err)
	}
	r14Watchdog(t, func() {
		err = sink.ForEach(context.Background(), mk(), func(ctx context.Context, v int) error {
			<-ctx.Done()
			return errMine
		})
	})
	if !errors.As(err, &se) || se.Stage != "first" || errors.Is(err, errMine) {
		t.Errorf("ForEach: %v; want the FailFast *Error of stage first", err)
	}
}

// ForEach with ErrStop after forwarded errors returns the *ForwardedError of
// what was forwarded before the stop, and nothing after it.
func TestReview14ForEachStopAfterForwarded(t *testing.T) {
	for _, w := range []int{1, 4} {
		t.Run(fmt.Sprint(w), func(t *testing.T) {
			m := stage.Map(source.Slice(ints(50)), func(_ context.Context, i int) (int, error) {
				r14Jitter()
				if i%5 == 1 {
					return 0, errR14Fail
				}
				return i, nil
			}, stage.Workers(w), stage.Ordered(), stage.OnError(stage.Forward))
			var err error
			r14Watchdog(t, func() {
				err = sink.ForEach(context.Background(), m, func(_ context.Context, v int) error {
					if v == 12 {
						return fmt.Errorf("done: %w", stage.ErrStop)
					}
					return nil
				})
			})
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != 3 || len(fe.Sample) != 3 {
				t.Fatalf("ForEach: %v; want a *ForwardedError of the 3 errors before value 12", err)
			}
			if errors.Is(err, stage.ErrStop) {
				t.Errorf("ForEach: %v; the stop is not an error", err)
			}
			for k, e := range fe.Sample {
				var se *stage.Error
				if !errors.As(e, &se) || se.Index != 5*k+1 {
					t.Errorf("sample %d: %v", k, e)
				}
			}
		})
	}
}

// sink.Slice: "Without any value it returns a nil slice", also when the
// stream's length was known (and room could have been made).
func TestReview14SliceNilWithoutValues(t *testing.T) {
	drop := stage.Map(source.Slice(ints(10)), func(context.Context, int) (int, error) { return 0, errR14Fail },
		stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	fwd := stage.Map(source.Slice(ints(10)), func(context.Context, int) (int, error) { return 0, errR14Fail },
		stage.OnError(stage.Forward), stage.Workers(2))
	fail := stage.Map(source.Slice(ints(10)), func(context.Context, int) (int, error) { return 0, errR14Fail }, stage.Workers(1))
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		name string
		ctx  context.Context
		s    stage.Stream[int]
	}{
		{"all-dropped", context.Background(), drop},
		{"all-forwarded", context.Background(), fwd},
		{"failfast-first", context.Background(), fail},
		{"cancelled", cctx, stage.Map(source.Slice(ints(10)), double)},
		{"empty", context.Background(), stage.Map(source.Slice([]int{}), double)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []int
			r14Watchdog(t, func() { got, _ = sink.Slice(c.ctx, c.s) })
			if got != nil {
				t.Errorf("got %#v (len %d cap %d); want a nil slice", got, len(got), cap(got))
			}
		})
	}
}

// Reduce returns the accumulator as it stands when the run ends, with a
// panic in f: the folds before the panicking call.
func TestReview14ReducePanicKeepsAccumulator(t *testing.T) {
	m := stage.Map(source.Slice(ints(10)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Workers(1))
	var acc int
	var err error
	r14Watchdog(t, func() {
		acc, err = sink.Reduce(context.Background(), m, 0, func(a, v int) int {
			if v == 5 {
				panic("fold")
			}
			return a + v
		})
	})
	var se *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &se) || se.Stage != "reduce" || !errors.As(err, &pe) {
		t.Errorf("Reduce: %v", err)
	}
	if acc != 0+1+2+3+4 {
		t.Errorf("acc %d; want 10", acc)
	}
}

// Tee: each branch holds at most one item its consumer has not taken, so a
// branch whose consumer is stuck stops the source after a few items.
func TestReview14TeeSlowBranchBoundsSource(t *testing.T) {
	var taken atomic.Int64
	src := stage.Source(func(ctx context.Context) (func(ctx context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
			i++
			taken.Add(1)
			return i, nil
		}, nil
	})
	br := stage.Tee(src, 2)
	gate := make(chan struct{})
	stuck := stage.Map(br[0], func(ctx context.Context, v int) (int, error) {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return v, ctx.Err()
	}, stage.Workers(1))
	fast := stage.Map(br[1], double, stage.Workers(1))
	var maxSeen int64
	var err error
	r14Watchdog(t, func() {
		err = sink.ForEach(context.Background(), stage.Merge(stuck, fast), func(ctx context.Context, v int) error {
			maxSeen = max(maxSeen, taken.Load())
			if v == 2 { // fast branch's first item (1*2)
				for range 50 {
					time.Sleep(2 * time.Millisecond)
					maxSeen = max(maxSeen, taken.Load())
				}
				close(gate)
				return stage.ErrStop
			}
			return nil
		})
	})
	if err != nil {
		t.Errorf("sink: %v", err)
	}
	// stuck: 1 in its call; Tee: 1 held per branch, 1 in its goroutine; the
	// fast branch: 1 in a call, 1 in Merge, 1 in the sink. Generous bound.
	if maxSeen > 8 {
		t.Errorf("the source gave %d items while one branch was stuck", maxSeen)
	}
}
