package stage_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func TestStagePanicBecomesError(t *testing.T) {
	f := func(_ context.Context, x int) (int, error) {
		if x == 3 {
			panic("bad item")
		}
		return x, nil
	}
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			for _, policy := range []stage.ErrorPolicy{stage.FailFast, stage.Forward} {
				_, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(10)), f, m.opts(stage.OnError(policy))...))
				var se *stage.Error
				var pe *stage.PanicError
				if !errors.As(err, &se) || !errors.As(err, &pe) {
					t.Fatalf("%v: err = %v, want a *stage.PanicError in a *stage.Error", policy, err)
				}
				if se.Index != 3 || pe.Value != "bad item" || len(pe.Stack) == 0 {
					t.Fatalf("%v: index %d, value %v, stack %d bytes; want 3, bad item, a stack", policy, se.Index, pe.Value, len(pe.Stack))
				}
			}
		})
	}
}

// TestStopReportsASourceError: a source's stop that panics with a
// *SourceError (a failure found after the last item) fails the run with
// that error as it is; a stop that panics otherwise fails it with a
// *SourceError wrapping the *PanicError; a run cut short first reports
// what cut it short.
func TestStopReportsASourceError(t *testing.T) {
	late := &stage.SourceError{Err: errors.New("found at stop")}
	src := func(v any) stage.Stream[int] {
		return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(context.Context) (int, error) { return 0, io.EOF }, func() { panic(v) }
		})
	}
	_, err := sink.Count(context.Background(), src(late))
	if se := (*stage.SourceError)(nil); !errors.As(err, &se) || se != late {
		t.Fatalf("stop raised a *SourceError: err = %v, want that error as it is", err)
	}
	_, err = sink.Count(context.Background(), src("boom"))
	var se *stage.SourceError
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("stop panicked: err = %v, want a *SourceError wrapping the *PanicError", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err = sink.Count(ctx, src(late)); !errors.Is(err, context.Canceled) || errors.Is(err, late) {
		t.Fatalf("cancelled run whose stop raised: err = %v, want the cancellation", err)
	}
}

func TestPanicValueErrorIsVisible(t *testing.T) {
	_, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(3)), func(_ context.Context, x int) (int, error) {
		xs := make([]int, x)
		return xs[x], nil // index out of range: a runtime error
	}))
	var re interface{ RuntimeError() }
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want the runtime.Error reachable with errors.As", err)
	}
}

func TestSinkCallbackPanicBecomesError(t *testing.T) {
	ctx := context.Background()
	err := sink.ForEach(ctx, source.Slice(ints(5)), func(_ context.Context, x int) error {
		if x == 2 {
			panic("in foreach")
		}
		return nil
	})
	var se *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) || se.Stage != "foreach" || se.Index != 2 || pe.Value != "in foreach" {
		t.Fatalf("ForEach err = %v, want a *stage.PanicError in the foreach *stage.Error of item 2", err)
	}
	_, err = sink.Reduce(ctx, source.Slice(ints(5)), 0, func(acc, x int) int {
		if x == 4 {
			panic("in reduce")
		}
		return acc + x
	})
	if !errors.As(err, &se) || !errors.As(err, &pe) || se.Stage != "reduce" || se.Index != 4 || pe.Value != "in reduce" {
		t.Fatalf("Reduce err = %v, want a *stage.PanicError in the reduce *stage.Error of item 4", err)
	}
}

func TestPanicInAllLoopBodyPropagates(t *testing.T) {
	// The loop body is the caller's code: its panic reaches the caller, after
	// the run has stopped (goleak checks that no goroutine is left).
	defer func() {
		if p := recover(); p != "in loop" {
			t.Fatalf("recovered %v, want the loop body's panic", p)
		}
	}()
	for v := range sink.All(context.Background(), stage.Map(source.Slice(ints(100)), double, stage.Workers(4))) {
		if v == 4 {
			panic("in loop")
		}
	}
}

func TestNilTaskIsAnItemError(t *testing.T) {
	ok := func(context.Context) (int, error) { return 1, nil }
	tasks := []func(context.Context) (int, error){ok, nil, ok}
	got, err := sink.Slice(context.Background(), stage.Concurrent(source.Slice(tasks), stage.OnError(stage.Forward)))
	var se *stage.Error
	if len(got) != 2 || !errors.Is(err, stage.ErrNilTask) || !errors.As(err, &se) || se.Index != 1 {
		t.Fatalf("got %v, %v; want two results and ErrNilTask for item 1", got, err)
	}
}
