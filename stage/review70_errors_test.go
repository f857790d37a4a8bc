package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Error.Index: "When the stage's input has no defined order (the output of an
// unordered stage with more than one worker, or of Merge), Index is the
// position in which the stage received the item." So every item gets a
// distinct position: the indexes of n failed items are 0..n-1.
func TestReview70IndexIsReceivePosition(t *testing.T) {
	const n = 300
	ups := map[string]func() stage.Stream[int]{
		"unordered-8": func() stage.Stream[int] {
			return stage.Map(source.Slice(ints(n)), double, stage.Workers(8))
		},
		"unordered-unlimited": func() stage.Stream[int] {
			return stage.Map(source.Slice(ints(n)), double, stage.Workers(-1))
		},
		"merge": func() stage.Stream[int] {
			return stage.Merge(source.Slice(ints(n/3)), source.Slice(ints(n/3)), stage.Map(source.Slice(ints(n/3)), double, stage.Workers(4)))
		},
	}
	for name, up := range ups {
		for _, m := range modes {
			t.Run(name+"/"+m.String(), func(t *testing.T) {
				s := stage.Map(up(), func(context.Context, int) (int, error) { return 0, errR70 }, m.opts(stage.Name("all"), stage.OnError(stage.Forward))...)
				o := &r70obs{}
				var idx []int
				for _, err := range sink.All(stage.Observe(context.Background(), o), s) {
					var e *stage.Error
					if !errors.As(err, &e) {
						t.Fatalf("got %v, want forwarded *Error", err)
					}
					idx = append(idx, e.Index)
				}
				var seen []int
				for _, e := range o.byName("all").failedErrs() {
					seen = append(seen, e.Index)
				}
				slices.Sort(idx)
				slices.Sort(seen)
				if !slices.Equal(idx, ints(n)) || !slices.Equal(seen, ints(n)) {
					t.Errorf("indexes are not the positions 0..%d: sink saw %d distinct-sorted %v..., observer %v...", n-1, len(idx), idx[:min(10, len(idx))], seen[:min(10, len(seen))])
				}
			})
		}
	}
}

// Budget: "the (n+1)th, which h does not see, fails the run with an error that
// wraps both ErrBudget and that item's *Error"; Finished gets "the *Error that
// the stage's ErrorPolicy is about to handle" for each failed item, the
// (n+1)th included.
func TestReview70BudgetErrorAsObserved(t *testing.T) {
	var seenByH []int
	s := stage.Map(source.Slice(ints(10)), func(_ context.Context, v int) (int, error) {
		if v%2 == 1 {
			return 0, fmt.Errorf("odd %d", v)
		}
		return v, nil
	}, stage.Name("b"), stage.Workers(1), stage.OnError(stage.Budget(2, func(_ context.Context, e *stage.Error) error {
		seenByH = append(seenByH, e.Index)
		return nil
	})))
	var st stage.Stats
	o := &r70obs{}
	_, err := sink.Slice(stage.Observe(stage.Observe(context.Background(), o), &st), s)
	var e *stage.Error
	if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &e) || e.Index != 5 || e.Stage != "b" || e.Attempts != 1 || e.Input != 5 {
		t.Fatalf("err %v; want ErrBudget and the *Error of item 5", err)
	}
	if !slices.Equal(seenByH, []int{1, 3}) {
		t.Errorf("h saw %v, want [1 3]", seenByH)
	}
	var idx []int
	for _, fe := range o.byName("b").failedErrs() {
		idx = append(idx, fe.Index)
	}
	if !slices.Equal(idx, []int{1, 3, 5}) {
		t.Errorf("Finished got *Errors of %v, want [1 3 5]", idx)
	}
	if c, _ := st.Get("b"); c.Failed != 3 || c.Received != c.Finished {
		t.Errorf("Stats %+v, want 3 failed", c)
	}
}

// Error.Attempts: "A try that failed without calling the function (a nil task
// of Concurrent, a limiter's ErrNoToken) counts as one." ErrNilTask: "Under
// Retry it is an error like any other: each try counts as an attempt."
// Retry: "unless the error is a *PanicError". PanicError: "Value is the value
// passed to panic", "Stack is the stack of the goroutine that panicked",
// "Unwrap returns Value when it is an error".
func TestReview70ConcurrentAndPanicErrorsObserved(t *testing.T) {
	tasks := []func(context.Context) (int, error){
		func(context.Context) (int, error) { return 1, nil },
		nil,
		func(context.Context) (int, error) { panic(io.ErrClosedPipe) },
		func(context.Context) (int, error) { return 0, errR70 },
	}
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			s := stage.Concurrent(source.Slice(tasks), m.opts(stage.Name("c"), stage.Retry(3, 0), stage.OnError(stage.Forward))...)
			o := &r70obs{}
			got, err := sink.Slice(stage.Observe(context.Background(), o), s)
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != 3 || len(got) != 1 {
				t.Fatalf("%v, %v", got, err)
			}
			byIdx := map[int]*stage.Error{}
			for _, e := range o.byName("c").failedErrs() {
				byIdx[e.Index] = e
			}
			if e := byIdx[1]; e == nil || !errors.Is(e.Err, stage.ErrNilTask) || e.Attempts != 3 {
				t.Errorf("nil task: %+v, want ErrNilTask after 3 attempts", e)
			}
			var pe *stage.PanicError
			if e := byIdx[2]; e == nil || e.Attempts != 1 || !errors.As(e.Err, &pe) || pe.Value != io.ErrClosedPipe || len(pe.Stack) == 0 || !errors.Is(e, io.ErrClosedPipe) {
				t.Errorf("panicking task: %+v, want one attempt and a *PanicError of io.ErrClosedPipe", e)
			}
			if e := byIdx[3]; e == nil || e.Err != errR70 || e.Attempts != 3 {
				t.Errorf("failing task: %+v, want errR70 after 3 attempts", e)
			}
		})
	}
}

// Error.Stage: "for a sink callback, the sink's kind ("foreach",
// "reduce")"; Index: "the item's 0-based position in the stage's input";
// Err: "the error the function returned, or a *PanicError".
func TestReview70SinkCallbackError(t *testing.T) {
	cbErr := errors.New("callback failed")
	k := 0
	err := sink.ForEach(context.Background(), stage.Map(source.Slice(ints(10)), double, stage.Workers(1)), func(context.Context, int) error {
		if k++; k == 4 {
			return cbErr
		}
		return nil
	})
	var e *stage.Error
	if !errors.As(err, &e) || e.Stage != "foreach" || e.Err != cbErr || e.Index != 3 || e.Input != 6 {
		t.Errorf("ForEach error %v (%+v); want Stage foreach, Index 3, Input 6, Err the callback's", err, e)
	}
	_, err = sink.Reduce(context.Background(), source.Slice(ints(5)), 0, func(a, v int) int {
		if v == 2 {
			panic("reduce boom")
		}
		return a + v
	})
	var pe *stage.PanicError
	if !errors.As(err, &e) || e.Stage != "reduce" || !errors.As(err, &pe) || pe.Value != "reduce boom" {
		t.Errorf("Reduce error %v; want Stage reduce wrapping the *PanicError", err)
	}
}

// Until: "while every item they already produced goes on through the stages:
// calls in flight finish ... and the sink returns nil": under a drain no call
// is cut short; every call the observer saw received finished ok, and each
// reached the sink.
func TestReview70DrainNothingCut(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			stop, drain := context.WithCancel(context.Background())
			k := 0
			src := source.Func(func(ctx context.Context) (int, error) {
				if k++; k == 12 {
					drain()
				}
				if k >= 12 {
					<-ctx.Done()
					return 0, ctx.Err()
				}
				return k, nil
			})
			s := stage.Map(stage.Until(src, stop), func(ctx context.Context, v int) (int, error) {
				return v, ctx.Err()
			}, m.opts(stage.Name("d"))...)
			o := &r70obs{}
			n, err := sink.Count(stage.Observe(context.Background(), o), s)
			if err != nil || n != 11 {
				t.Fatalf("%d, %v; want 11, nil", n, err)
			}
			w := o.byName("d")
			if w.recv.Load() != 11 || w.kindCount("ok") != 11 {
				t.Errorf("received %d, ok %d, cut %d, failed %d; want 11 ok", w.recv.Load(), w.kindCount("ok"), w.kindCount("cut"), w.kindCount("failed"))
			}
		})
	}
}
