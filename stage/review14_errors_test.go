package stage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r14NameObserver struct {
	mu    sync.Mutex
	infos []stage.Info
}

func (o *r14NameObserver) Stage(info stage.Info) stage.Watcher {
	o.mu.Lock()
	o.infos = append(o.infos, info)
	o.mu.Unlock()
	return nil
}

// Names and indexes across a pipeline with a Batch/Unbatch and a forwarded
// error: stages that call a function are numbered from 1 upstream first
// (Batch not counted), and a downstream stage's Index counts forwarded errors
// as items (and does not count items a Handle policy dropped upstream).
func TestReview14NamesAndIndexAcrossBatchUnbatch(t *testing.T) {
	for _, upstreamPolicy := range []string{"forward", "handle"} {
		t.Run(upstreamPolicy, func(t *testing.T) {
			pol := stage.Forward
			if upstreamPolicy == "handle" {
				pol = stage.Handle(func(context.Context, *stage.Error) error { return nil })
			}
			m1 := stage.Map(source.Slice(ints(12)), func(_ context.Context, i int) (int, error) {
				if i == 2 {
					return 0, errR14Fail
				}
				return i, nil
			}, stage.Workers(1), stage.OnError(pol))
			f2 := stage.Filter(m1, func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(1))
			u3 := stage.Unbatch(stage.Batch(f2, 2, 0))
			errLast := errors.New("seven")
			m4 := stage.Map(u3, func(_ context.Context, i int) (int, error) {
				if i == 7 {
					return 0, errLast
				}
				return i, nil
			}, stage.Workers(1))
			obs := &r14NameObserver{}
			ctx := stage.Observe(context.Background(), obs)
			var err error
			r14Watchdog(t, func() { _, err = sink.Slice(ctx, m4) })
			var se *stage.Error
			if !errors.As(err, &se) || !errors.Is(err, errLast) {
				t.Fatalf("sink: %v", err)
			}
			wantIndex := 7
			if upstreamPolicy == "handle" {
				wantIndex = 6
			}
			if se.Stage != "map#4" || se.Index != wantIndex || se.Input != 7 || se.Attempts != 1 {
				t.Errorf("*Error: Stage %q Index %d Input %v Attempts %d; want map#4, %d, 7, 1", se.Stage, se.Index, se.Input, se.Attempts, wantIndex)
			}
			msg := se.Error()
			if !strings.Contains(msg, "map#4") || !strings.Contains(msg, fmt.Sprint(wantIndex)) || !strings.Contains(msg, "seven") {
				t.Errorf("Error() = %q: want the stage, the index and the cause", msg)
			}
			var names []string
			for _, in := range obs.infos {
				names = append(names, in.Name+"/"+in.Kind)
			}
			want := "map#1/map filter#2/filter unbatch#3/unbatch map#4/map"
			if got := strings.Join(names, " "); got != want {
				t.Errorf("observer saw %q, want %q", got, want)
			}
		})
	}
}

// Handle: "if h returns an error, the run fails with it as with FailFast, and
// the sink returns h's error" — ErrStop included: only the callback of Run
// stops a run with ErrStop.
func TestReview14HandleReturningErrStopFails(t *testing.T) {
	mk := func(pol stage.ErrorPolicy) stage.Stream[int] {
		return stage.Map(source.Slice(ints(10)), func(_ context.Context, i int) (int, error) {
			if i == 4 {
				return 0, errR14Fail
			}
			return i, nil
		}, stage.Workers(1), stage.OnError(pol))
	}
	for _, c := range []struct {
		name string
		pol  stage.ErrorPolicy
	}{
		{"handle", stage.Handle(func(context.Context, *stage.Error) error { return stage.ErrStop })},
		{"handle-wrapped", stage.Handle(func(context.Context, *stage.Error) error { return fmt.Errorf("h: %w", stage.ErrStop) })},
		{"budget", stage.Budget(3, func(context.Context, *stage.Error) error { return stage.ErrStop })},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			r14Watchdog(t, func() { _, err = sink.Slice(context.Background(), mk(c.pol)) })
			if err == nil || !errors.Is(err, stage.ErrStop) {
				t.Errorf("Slice: %v; want h's error (wrapping ErrStop)", err)
			}
			r14Watchdog(t, func() {
				err = sink.ForEach(context.Background(), mk(c.pol), func(context.Context, int) error { return nil })
			})
			if err == nil || !errors.Is(err, stage.ErrStop) {
				t.Errorf("ForEach: %v; want h's error (wrapping ErrStop)", err)
			}
			r14Watchdog(t, func() {
				err = stage.Run(context.Background(), mk(c.pol), func(context.Context, int, error) error { return nil })
			})
			if err == nil || !errors.Is(err, stage.ErrStop) {
				t.Errorf("Run: %v; want h's error (wrapping ErrStop)", err)
			}
		})
	}
}

// Budget: a panic in h is an *Error wrapping a *PanicError; Budget(0, nil)
// fails at the first failed item with ErrBudget and that item's *Error
// (Attempts under Retry included); each run has a full budget; the count is
// per stage.
func TestReview14BudgetEdges(t *testing.T) {
	failAt := func(set ...int) func(context.Context, int) (int, error) {
		return func(_ context.Context, i int) (int, error) {
			for _, x := range set {
				if x == i {
					return 0, errR14Fail
				}
			}
			return i, nil
		}
	}
	t.Run("h-panics", func(t *testing.T) {
		s := stage.Map(source.Slice(ints(10)), failAt(5), stage.Workers(2),
			stage.OnError(stage.Budget(3, func(context.Context, *stage.Error) error { panic("budget h") })))
		var err error
		r14Watchdog(t, func() { _, err = sink.Slice(context.Background(), s) })
		var se *stage.Error
		var pe *stage.PanicError
		if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "budget h" {
			t.Errorf("sink: %v; want *Error wrapping *PanicError", err)
		}
	})
	t.Run("zero-budget-with-retry", func(t *testing.T) {
		var hCalls atomic.Int64
		s := stage.Map(source.Slice(ints(10)), failAt(6), stage.Workers(3), stage.Retry(2, 0), stage.Name("b0"),
			stage.OnError(stage.Budget(0, func(context.Context, *stage.Error) error { hCalls.Add(1); return nil })))
		var err error
		r14Watchdog(t, func() { _, err = sink.Slice(context.Background(), s) })
		var se *stage.Error
		if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || !errors.Is(err, errR14Fail) {
			t.Fatalf("sink: %v", err)
		}
		if se.Index != 6 || se.Input != 6 || se.Attempts != 2 || se.Stage != "b0" {
			t.Errorf("*Error: %+v", *se)
		}
		if hCalls.Load() != 0 {
			t.Errorf("h saw %d items; Budget(0) passes none to h", hCalls.Load())
		}
	})
	t.Run("per-run-per-stage", func(t *testing.T) {
		m1 := stage.Map(source.Slice(ints(20)), failAt(3, 9), stage.Workers(2), stage.OnError(stage.Budget(2, nil)))
		m2 := stage.Map(m1, failAt(4, 11), stage.Workers(2), stage.OnError(stage.Budget(2, nil)))
		for run := range 3 {
			got, err := sink.Slice(context.Background(), m2)
			if err != nil || len(got) != 16 {
				t.Fatalf("run %d: %d items, %v; want 16, nil", run, len(got), err)
			}
		}
	})
}

// RetryIf: a panic in retryable fails the item at once with that panic's
// *PanicError, not retried; retryable sees each failed attempt's error but
// the last allowed one's; a *PanicError of the function is shown to it and
// may be retried.
func TestReview14RetryIfPredicateEdges(t *testing.T) {
	t.Run("predicate-panics", func(t *testing.T) {
		var calls atomic.Int64
		var seen []*stage.Error
		s := stage.Map(source.Slice(ints(3)), func(_ context.Context, i int) (int, error) {
			if i == 1 {
				calls.Add(1)
				return 0, errR14Fail
			}
			return i, nil
		}, stage.Workers(2), stage.RetryIf(5, 0, func(err error) bool { panic("pred") }),
			stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error { seen = append(seen, e); return nil })))
		var got []int
		var err error
		r14Watchdog(t, func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil || len(got) != 2 {
			t.Fatalf("sink: %v %v", got, err)
		}
		if calls.Load() != 1 {
			t.Errorf("function called %d times for the item; want 1 (not retried)", calls.Load())
		}
		if len(seen) != 1 {
			t.Fatalf("h saw %d items", len(seen))
		}
		var pe *stage.PanicError
		if !errors.As(seen[0].Err, &pe) || pe.Value != "pred" {
			t.Errorf("item error %v; want the predicate's *PanicError", seen[0].Err)
		}
		if seen[0].Attempts != 1 || seen[0].Index != 1 {
			t.Errorf("Attempts %d Index %d; want 1, 1", seen[0].Attempts, seen[0].Index)
		}
	})
	t.Run("predicate-count-and-panic-retry", func(t *testing.T) {
		var preds, calls atomic.Int64
		var sawPanic atomic.Bool
		s := stage.Map(source.Slice([]int{0}), func(_ context.Context, i int) (int, error) {
			c := calls.Add(1)
			if c == 1 {
				panic("first attempt")
			}
			return 0, errR14Fail
		}, stage.Workers(1), stage.RetryIf(4, 0, func(err error) bool {
			preds.Add(1)
			var pe *stage.PanicError
			if errors.As(err, &pe) {
				sawPanic.Store(true)
			}
			return true
		}), stage.OnError(stage.Forward))
		var errs []error
		r14Watchdog(t, func() {
			for _, err := range sink.All(context.Background(), s) {
				errs = append(errs, err)
			}
		})
		if calls.Load() != 4 || preds.Load() != 3 || !sawPanic.Load() {
			t.Errorf("calls %d (want 4), predicate calls %d (want 3), saw panic %v", calls.Load(), preds.Load(), sawPanic.Load())
		}
		var se *stage.Error
		if len(errs) != 1 || !errors.As(errs[0], &se) || se.Attempts != 4 || !errors.Is(se, errR14Fail) {
			t.Errorf("forwarded %v", errs)
		}
	})
}

// A sink callback's error is an *Error with Stage "foreach" and the value's
// index; with forwarded errors before it, ForEach returns both, joined.
func TestReview14ForEachErrorWithForwarded(t *testing.T) {
	m := stage.Map(source.Slice(ints(10)), func(_ context.Context, i int) (int, error) {
		if i == 1 {
			return 0, errR14Fail
		}
		return i, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	errCb := errors.New("callback")
	var err error
	r14Watchdog(t, func() {
		err = sink.ForEach(context.Background(), m, func(_ context.Context, v int) error {
			if v == 5 {
				return errCb
			}
			return nil
		})
	})
	var se *stage.Error
	if !errors.Is(err, errCb) || !errors.As(err, &se) {
		t.Fatalf("ForEach: %v", err)
	}
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 1 {
		t.Errorf("ForEach: %v; want a *ForwardedError with Count 1 joined", err)
	}
	// errors.As finds the first *Error in the tree; look for the foreach one
	found := false
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if x, ok := e.(*stage.Error); ok && x.Stage == "foreach" {
			found = true
			if x.Input != 5 {
				t.Errorf("foreach *Error Input %v, want 5", x.Input)
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	if !found {
		t.Errorf("no *Error with Stage foreach in %v", err)
	}
}

// Concurrent: a nil task is an item error wrapping ErrNilTask, forwarded in
// its place with its index, under Ordered.
func TestReview14ConcurrentNilTaskOrderedForward(t *testing.T) {
	tasks := make([]func(context.Context) (int, error), 30)
	for i := range tasks {
		if i%7 == 3 {
			continue
		}
		tasks[i] = func(context.Context) (int, error) { r14Jitter(); return i, nil }
	}
	s := stage.Concurrent(source.Slice(tasks), stage.Workers(4), stage.Ordered(), stage.OnError(stage.Forward))
	i := 0
	r14Watchdog(t, func() {
		for v, err := range sink.All(context.Background(), s) {
			if i%7 == 3 {
				var se *stage.Error
				if !errors.Is(err, stage.ErrNilTask) || !errors.As(err, &se) || se.Index != i || se.Stage != "concurrent#1" {
					t.Errorf("item %d: %v, %v", i, v, err)
				}
			} else if err != nil || v != i {
				t.Errorf("item %d: %v, %v", i, v, err)
			}
			i++
		}
	})
	if i != 30 {
		t.Errorf("%d items", i)
	}
}

// Run: a panic in f is not recovered; Run cancels the run, waits for it (the
// calls in flight have returned, the source is stopped) and the panic
// continues with its value.
func TestReview14RunPanicInCallbackWaitsThenContinues(t *testing.T) {
	var inFlight atomic.Int64
	var stopped atomic.Bool
	var stoppedWithCallsInFlight atomic.Bool
	src := stage.Source(func(ctx context.Context) (func(ctx context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
				i++
				return i, nil
			}, func() {
				if inFlight.Load() != 0 {
					stoppedWithCallsInFlight.Store(true)
				}
				stopped.Store(true)
			}
	})
	started := make(chan struct{}, 16)
	m := stage.Map(src, func(ctx context.Context, i int) (int, error) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		if i == 1 {
			return i, nil
		}
		started <- struct{}{}
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Workers(4))
	var rec any
	r14Watchdog(t, func() {
		defer func() { rec = recover() }()
		_ = stage.Run(context.Background(), m, func(context.Context, int, error) error {
			<-started // some call is blocked in flight
			panic("in f")
		})
	})
	if rec != "in f" {
		t.Fatalf("recovered %v", rec)
	}
	if !stopped.Load() || inFlight.Load() != 0 || stoppedWithCallsInFlight.Load() {
		t.Errorf("after the panic: source stopped %v, calls in flight %d, stop ran with calls in flight %v",
			stopped.Load(), inFlight.Load(), stoppedWithCallsInFlight.Load())
	}
}
