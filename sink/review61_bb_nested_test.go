package sink_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// stage.Handle: "if h returns an error, the run fails with it as with
// FailFast, and the sink returns h's error (one that IsStop would take for a
// stop, such as ErrStop, comes wrapped in an *Error of the item's stage and
// index, so that a callback that returns it from a run of its own fails that
// run too)."
// The inner run is made inside the outer ForEach callback; the callback
// returns the inner run's error: the outer run must fail, not stop.
func TestReview61BBNestedHandleErrStopFailsOuter(t *testing.T) {
	for _, outerW := range []int{1, 3} {
		inner := stage.Map(source.Slice([]int{0, 1, 2, 3}), func(_ context.Context, v int) (int, error) {
			if v == 2 {
				return 0, errR61
			}
			return v, nil
		}, stage.Workers(1), stage.Name("inner"), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
			return stage.ErrStop
		})))
		outer := stage.Map(source.Slice([]int{0, 1, 2}), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(outerW))
		var innerErr error
		calls := 0
		var err error
		runcheck.Run(t, "outer", func() {
			err = sink.ForEach(context.Background(), outer, func(ctx context.Context, v int) error {
				calls++
				innerErr = sink.ForEach(ctx, inner, func(context.Context, int) error { return nil })
				return innerErr
			})
		})
		var ie *stage.Error
		if !errors.As(innerErr, &ie) || ie.Stage != "inner" || ie.Index != 2 || !errors.Is(innerErr, stage.ErrStop) {
			t.Fatalf("inner err = %v; want *Error{inner, 2} wrapping ErrStop", innerErr)
		}
		if stage.IsStop(innerErr) {
			t.Fatalf("IsStop(inner err) = true")
		}
		var oe *stage.Error
		if err == nil || calls != 1 || !errors.As(err, &oe) || oe.Stage != "foreach" || oe.Index != 0 || !errors.Is(err, stage.ErrStop) {
			t.Fatalf("outer err = %v, calls %d; want a foreach *Error at 0 wrapping the inner *Error", err, calls)
		}
		if !errors.Is(err, innerErr) {
			t.Fatalf("outer err %v does not wrap the inner error", err)
		}
	}
}

// Same, with the nested run in a Map stage and Budget policies: the inner
// Budget(0, nil) fails at the first failure with an error that wraps both
// ErrBudget and the item's *Error; the outer Map's function returns it; the
// outer Forward policy sends it downstream. stage.Budget: "the (n+1)th, which
// h does not see, fails the run with an error that wraps both ErrBudget and
// that item's *Error (errors.Is and errors.As find each)".
func TestReview61BBNestedBudgetForwardedOuter(t *testing.T) {
	inner := func(k int) stage.Stream[int] {
		return stage.Map(source.Slice([]int{0, 1, 2, 3}), func(_ context.Context, v int) (int, error) {
			if v == k {
				return 0, errR61
			}
			return v, nil
		}, stage.Workers(1), stage.Name("inner"), stage.Retry(2, 0), stage.OnError(stage.Budget(0, nil)))
	}
	outer := stage.Map(source.Slice([]int{0, 1, 2, 3, 7}), func(ctx context.Context, k int) (int, error) {
		return sink.Count(ctx, inner(k))
	}, stage.Workers(2), stage.Buffer(1), stage.Name("outer"), stage.OnError(stage.Forward))
	var got []int
	var err error
	runcheck.Run(t, "run", func() {
		got, err = sink.Slice(context.Background(), outer)
	})
	var fe *sink.ForwardedError
	if len(got) != 1 || got[0] != 4 || !errors.As(err, &fe) || fe.Count != 4 {
		t.Fatalf("got %v, %v; want [4] and 4 forwarded", got, err)
	}
	for _, e := range fe.Sample {
		var oe *stage.Error
		if !errors.As(e, &oe) || oe.Stage != "outer" {
			t.Fatalf("forwarded %v: want an outer *Error", e)
		}
		k := oe.Input.(int)
		var ie *stage.Error
		if !errors.As(oe.Err, &ie) || ie.Stage != "inner" || ie.Index != k || ie.Attempts != 2 || !errors.Is(e, stage.ErrBudget) || !errors.Is(e, errR61) {
			t.Fatalf("forwarded %v: inner %+v; want inner *Error at %d, Attempts 2, ErrBudget", e, ie, k)
		}
		if oe.Index != k {
			t.Fatalf("outer Index %d want %d (ordered input positions? unordered: position received)", oe.Index, k)
		}
	}
}

// stage.ErrGoexit: "the run fails with ErrGoexit rather than return what it
// has as if complete". Here the Goexit is in the callback of an inner run
// made by an outer Map stage's function that runs on a goroutine of the
// outer stage's own (Buffer(1) keeps them so, see Workers): the inner sink
// does not return, its goroutine (the outer's worker) ends, and the outer run
// must fail with ErrGoexit.
func TestReview61BBNestedGoexitFailsOuter(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, w := range []int{1, 2, 4} {
			outer := stage.Map(source.Slice([]int{0, 1, 2, 3}), func(ctx context.Context, k int) (int, error) {
				err := sink.ForEach(ctx, stage.Map(source.Slice([]int{0, 1}), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2), stage.Buffer(1)),
					func(context.Context, int) error {
						if k == 1 {
							runtime.Goexit()
						}
						return nil
					})
				return k, err
			}, stage.Workers(w), stage.Buffer(1))
			var err error
			n := 0
			runcheck.Run(t, "run", func() {
				n, err = sink.Count(context.Background(), outer)
			})
			if !errors.Is(err, stage.ErrGoexit) {
				t.Fatalf("w%d: Count = %d, %v; want ErrGoexit", w, n, err)
			}
		}
	})
}

// A panic in an inner run's stage, returned by an outer stage's function:
// stage.PanicError: "It reaches the caller wrapped in an *Error"; Error: "errors.Is
// and errors.As see through Error to it". The outer *Error must name the
// outer stage and its item; errors.As must reach the inner *PanicError.
func TestReview61BBNestedPanicSeenThrough(t *testing.T) {
	outer := stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, k int) (int, error) {
		return sink.Reduce(ctx, stage.Map(source.Slice([]int{0, 1, 2}), func(_ context.Context, v int) (int, error) {
			if k == 2 && v == 1 {
				panic(errR61)
			}
			return v, nil
		}, stage.Name("inner")), 0, func(a, v int) int { return a + v })
	}, stage.Workers(1), stage.Name("outer"))
	var got []int
	var err error
	runcheck.Run(t, "run", func() { got, err = sink.Slice(context.Background(), outer) })
	var oe *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &oe) || oe.Stage != "outer" || oe.Index != 2 || !errors.As(err, &pe) || !errors.Is(err, errR61) {
		t.Fatalf("err = %v; want outer *Error at 2 wrapping a PanicError of errR61", err)
	}
	var ie *stage.Error
	if !errors.As(oe.Err, &ie) || ie.Stage != "inner" || ie.Index != 1 {
		t.Fatalf("inner = %+v", ie)
	}
	// Slice: "the values received before it ended": items 0 and 1 (3
	// each) if they reached the sink before item 2's failure ended the run;
	// once the stage's calls prove slow it runs in a goroutine of its own,
	// and an output still queued then is not received.
	if len(got) > 2 || slices.ContainsFunc(got, func(v int) bool { return v != 3 }) {
		t.Fatalf("got %v, want at most two values, each 3", got)
	}
}

// sink.First: "First runs s until its first item arrives, then stops the run
// and returns once every goroutine has exited." Inner runs made with the
// outer stage's ctx are cancelled by that stop; their sinks return a
// cancellation error, which the outer stage's function returns once the run
// is ending: cut short, not a failure (stage.Run: "unless the run was ending
// already ..."), so First returns its value.
func TestReview61BBFirstCancelsInnerRuns(t *testing.T) {
	started := make(chan struct{}, 8)
	var innerErrs atomic.Int32
	outer := stage.Map(source.Slice([]int{0, 1, 2, 3, 4, 5, 6, 7}), func(ctx context.Context, k int) (int, error) {
		if k == 0 {
			// wait until some other inner runs are going on
			for range 2 {
				<-started
			}
			return 100, nil
		}
		_, err := sink.Slice(ctx, stage.Map(source.Func(func(ctx context.Context) (int, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}), func(_ context.Context, v int) (int, error) { return v, nil }))
		if err != nil {
			innerErrs.Add(1)
		}
		return k, err
	}, stage.Workers(4), stage.Buffer(1), stage.Ordered())
	var v int
	var ok bool
	var err error
	runcheck.Run(t, "first", func() { v, ok, err = sink.First(context.Background(), outer) })
	if v != 100 || !ok || err != nil {
		t.Fatalf("First = %d %v %v; want 100 true nil", v, ok, err)
	}
}
