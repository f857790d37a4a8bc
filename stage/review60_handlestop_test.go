package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review60StopShapes builds, for each path a handler's error can take, a
// pipeline whose stage named "h" fails at item bad and passes the failure to
// policy. Every other item passes.
func review60StopShapes(policy stage.ErrorPolicy, bad int) map[string]stage.Stream[int] {
	items := make([]int, 300)
	for i := range items {
		items[i] = i
	}
	f := func(_ context.Context, x int) (int, error) {
		if x == bad {
			return 0, errors.New("review60: bad item")
		}
		return x, nil
	}
	keep := func(_ context.Context, x int) (bool, error) {
		_, err := f(context.Background(), x)
		return true, err
	}
	flat := func(_ context.Context, x int) ([]int, error) {
		v, err := f(context.Background(), x)
		return []int{v}, err
	}
	on := stage.OnError(policy)
	name := stage.Name("h")
	return map[string]stage.Stream[int]{
		"map1":       stage.Map(source.Slice(items), f, on, name, stage.Workers(1)),
		"map4":       stage.Map(source.Slice(items), f, on, name, stage.Workers(4)),
		"fused":      stage.Map(stage.Map(source.Slice(items), f, on, name, stage.Workers(4)), review60Cheap, stage.Workers(4)),
		"unlimited":  stage.Map(source.Slice(items), f, on, name, stage.Workers(-1)),
		"ordered":    stage.Map(source.Slice(items), f, on, name, stage.Workers(4), stage.Ordered()),
		"buffered":   stage.Map(source.Slice(items), f, on, name, stage.Workers(4), stage.Buffer(1)),
		"keyby":      stage.Map(source.Slice(items), f, on, name, stage.Workers(4), stage.KeyBy(func(x int) int { return x % 7 })),
		"retry":      stage.Map(source.Slice(items), f, on, name, stage.Workers(4), stage.Retry(3, 0)),
		"filter":     stage.Filter(source.Slice(items), keep, on, name, stage.Workers(4)),
		"flatmap":    stage.FlatMap(source.Slice(items), flat, on, name, stage.Workers(4)),
		"chan":       stage.Map(source.Chan(review60Filled(items)), f, on, name, stage.Workers(4)),
		"downstream": stage.Map(stage.Map(source.Slice(items), review60Cheap, stage.Workers(3)), f, on, name, stage.Workers(2)),
	}
}

// review60Filled returns a closed channel holding items.
func review60Filled(items []int) chan int {
	ch := make(chan int, len(items))
	for _, x := range items {
		ch <- x
	}
	close(ch)
	return ch
}

// 8b77508: Handle's doc: "the sink returns h's error (one that IsStop would
// take for a stop, such as ErrStop, comes wrapped in an *Error of the
// item's stage and index ...)". On every path (one worker, several, fused,
// Workers(-1), Ordered, Buffer, KeyBy, Retry, Filter, FlatMap, over
// source.Chan, a stage downstream of another), with the bare ErrStop, an
// error wrapping it and a join: the sink's error is no stop, errors.Is
// finds ErrStop, and errors.As finds the *Error of stage "h" and the bad
// item with h's error as its Err (Attempts 3 under Retry(3)). A Budget
// handler's error is the same ("If h returns an error, the run fails with
// it at once, as with Handle").
func TestReview60HandlerStopIsWrappedOnEveryPath(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const bad = 137
		for hname, herr := range map[string]error{
			"bare":    stage.ErrStop,
			"wrapped": fmt.Errorf("enough: %w", stage.ErrStop),
			"joined":  errors.Join(errors.New("x"), stage.ErrStop),
		} {
			h := func(context.Context, *stage.Error) error { return herr }
			for pname, policy := range map[string]stage.ErrorPolicy{"Handle": stage.Handle(h), "Budget": stage.Budget(5, h)} {
				for shape, s := range review60StopShapes(policy, bad) {
					label := pname + "/" + hname + "/" + shape
					var err error
					runcheck.Run(t, label, func() { _, err = sink.Slice(context.Background(), s) })
					if err == nil || stage.IsStop(err) {
						t.Errorf("%s: sink returned %v (IsStop %v), want a failure", label, err, stage.IsStop(err))
						continue
					}
					var e *stage.Error
					if !errors.As(err, &e) || !errors.Is(err, stage.ErrStop) {
						t.Errorf("%s: %v: want an *Error wrapping ErrStop", label, err)
						continue
					}
					wantAttempts := 1
					if shape == "retry" {
						wantAttempts = 3
					}
					if e.Stage != "h" || e.Input != any(bad) || e.Err != herr || e.Attempts != wantAttempts {
						t.Errorf("%s: *Error{Stage %q, Input %v, Attempts %d, Err %v}, want stage h, input %d, attempts %d, Err h's error", label, e.Stage, e.Input, e.Attempts, e.Err, bad, wantAttempts)
					}
					if shape == "map1" && e.Index != bad {
						t.Errorf("%s: Index %d, want %d", label, e.Index, bad)
					}
				}
			}
		}
	})
}

// 8b77508, IsStop's doc: "a callback that returns one, say from a run of
// its own, fails the run with it". An outer Run's callback returns the
// error of an inner run whose Handle (or Budget) handler returned ErrStop:
// the outer run fails (with that error), it does not stop with nil.
func TestReview60NestedHandlerStopFailsOuterRun(t *testing.T) {
	h := func(context.Context, *stage.Error) error { return stage.ErrStop }
	for pname, policy := range map[string]stage.ErrorPolicy{"Handle": stage.Handle(h), "Budget": stage.Budget(1, h)} {
		inner := stage.Map(source.Slice([]int{1, 2, 3}), func(_ context.Context, x int) (int, error) {
			if x == 2 {
				return 0, errors.New("bad")
			}
			return x, nil
		}, stage.OnError(policy))
		var innerErr error
		err := stage.Run(context.Background(), source.Slice([]int{1, 2}), func(ctx context.Context, _ int, _ error) error {
			innerErr = sink.ForEach(ctx, inner, func(context.Context, int) error { return nil })
			return innerErr
		})
		if err == nil || stage.IsStop(err) || !errors.Is(err, stage.ErrStop) {
			t.Errorf("%s: outer run returned %v (inner %v), want the inner run's failure", pname, err, innerErr)
		}
	}
}

// 8b77508 and the cut-short rule (Handle: "Once the run is ending, an
// error of h's that is the context's error or the run's cause means h was
// cut short: the run's result stays what ended it"). The sink stops the
// run with ErrStop at its first item while every other item's call waits
// for the run's context and fails; h returns ErrStop for each. The run
// ended by a stop: the sink returns nil, not h's (now wrapped) error.
func TestReview60HandlerStopDuringSinkStopStaysAStop(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for trial := range 20 {
			h := func(context.Context, *stage.Error) error { return stage.ErrStop }
			if trial%2 == 1 {
				h = func(ctx context.Context, _ *stage.Error) error { return context.Cause(ctx) }
			}
			first := make(chan struct{})
			s := stage.Map(source.Slice([]int{0, 1, 2, 3, 4, 5, 6, 7}), func(ctx context.Context, x int) (int, error) {
				if x == 0 {
					return x, nil
				}
				<-ctx.Done()
				return 0, fmt.Errorf("item %d: %w", x, ctx.Err())
			}, stage.Workers(8), stage.Buffer(1), stage.OnError(stage.Handle(h)))
			err := sink.ForEach(context.Background(), s, func(context.Context, int) error {
				close(first)
				return stage.ErrStop
			})
			<-first
			if err != nil {
				t.Fatalf("trial %d: sink stopped the run with ErrStop, got %v, want nil", trial, err)
			}
		}
	})
}
