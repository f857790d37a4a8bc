package sink_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r68Task = func(ctx context.Context) (int, error)

// README, "From the Python original": concurrent(coros, limit=3) ==
// stage.Concurrent(source.Slice(tasks), stage.Workers(3)): "runs an
// iterable of tasks under a limit, yields results as they complete".
// The completion order is chosen by gates: 2, 0, 3, 1.
func TestReview68PythonConcurrentAsTheyComplete(t *testing.T) {
	gates := make([]chan struct{}, 4)
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	var g r68Gauge
	tasks := make([]r68Task, 4)
	for i := range tasks {
		tasks[i] = func(context.Context) (int, error) {
			g.enter()
			defer g.leave()
			<-gates[i]
			return i, nil
		}
	}
	order := []int{2, 0, 3, 1}
	var got []int
	runcheck.Run(t, "concurrent", func() {
		close(gates[order[0]])
		for v, err := range sink.All(context.Background(), stage.Concurrent(source.Slice(tasks), stage.Workers(3))) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
			if len(got) < len(order) {
				close(gates[order[len(got)]])
			}
		}
	})
	if !slices.Equal(got, order) {
		t.Errorf("results %v, want them as they complete: %v", got, order)
	}
	if g.max.Load() > 3 {
		t.Errorf("%d tasks at once, want at most 3", g.max.Load())
	}
}

// README Python table: "limit=-1 | stage.Workers(-1)": every task at once.
func TestReview68PythonUnlimited(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		bar := r68NewBarrier(300)
		tasks := make([]r68Task, 300)
		for i := range tasks {
			tasks[i] = func(ctx context.Context) (int, error) { bar.wait(ctx); return i, nil }
		}
		var n int
		var err error
		runcheck.Run(t, "unlimited", func() {
			n, err = sink.Count(context.Background(), stage.Concurrent(source.Slice(tasks), stage.Workers(-1)))
		})
		if n != 300 || err != nil {
			t.Errorf("%d, %v", n, err)
		}
	})
}

// README Python table: yield_exceptions=False (raise the first) ==
// FailFast; yield_exceptions=True == Forward; ConcurrentExecutionError ==
// *stage.Error; ConcurrentError (task could not run) == *stage.Error
// wrapping *stage.PanicError (or stage.ErrNilTask);
// ConcurrentIteratorError == *stage.SourceError; "close remaining
// awaitables yourself" == "nothing to do: the sink cancels and waits".
func TestReview68PythonErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("raise the first, cancel and wait for the rest", func(t *testing.T) {
		var bal r68Balance
		running := make(chan struct{}, 2)
		tasks := []r68Task{
			func(ctx context.Context) (int, error) {
				defer bal.enter()()
				running <- struct{}{}
				<-ctx.Done()
				return 0, ctx.Err()
			},
			func(ctx context.Context) (int, error) {
				defer bal.enter()()
				running <- struct{}{}
				<-ctx.Done()
				return 0, ctx.Err()
			},
			func(context.Context) (int, error) {
				defer bal.enter()()
				<-running
				<-running
				return 0, r68ErrBoom
			},
		}
		var err error
		runcheck.Run(t, "failfast", func() {
			_, err = sink.Slice(ctx, stage.Concurrent(source.Slice(tasks), stage.Workers(3), stage.OnError(stage.FailFast)))
		})
		bal.check(t, "failfast")
		var se *stage.Error
		if !errors.As(err, &se) || !errors.Is(err, r68ErrBoom) || se.Index != 2 || se.Stage != "concurrent#1" || se.Input == nil {
			t.Errorf("err %#v: want *stage.Error of concurrent#1, index 2, the task as input", err)
		}
	})
	t.Run("yield exceptions", func(t *testing.T) {
		tasks := []r68Task{
			func(context.Context) (int, error) { return 1, nil },
			func(context.Context) (int, error) { return 0, r68ErrBoom },
			nil,
			func(context.Context) (int, error) { panic("r68 task panic") },
			func(context.Context) (int, error) { return 5, nil },
		}
		var pairs []string
		runcheck.Run(t, "forward", func() {
			for v, err := range sink.All(ctx, stage.Concurrent(source.Slice(tasks), stage.Workers(1), stage.OnError(stage.Forward))) {
				var se *stage.Error
				var pe *stage.PanicError
				switch {
				case err == nil:
					pairs = append(pairs, fmt.Sprint(v))
				case errors.As(err, &se) && errors.Is(err, stage.ErrNilTask) && se.Attempts == 1:
					pairs = append(pairs, fmt.Sprintf("niltask@%d", se.Index))
				case errors.As(err, &se) && errors.As(err, &pe):
					pairs = append(pairs, fmt.Sprintf("panic@%d", se.Index))
				case errors.As(err, &se) && errors.Is(err, r68ErrBoom):
					pairs = append(pairs, fmt.Sprintf("boom@%d", se.Index))
				default:
					pairs = append(pairs, "?"+err.Error())
				}
			}
		})
		if want := []string{"1", "boom@1", "niltask@2", "panic@3", "5"}; !slices.Equal(pairs, want) {
			t.Errorf("yielded %v, want %v", pairs, want)
		}
	})
	t.Run("iterator error", func(t *testing.T) {
		i := 0
		tasks := source.Func(func(context.Context) (r68Task, error) {
			i++
			if i > 2 {
				return nil, r68ErrBoom
			}
			return func(context.Context) (int, error) { return 7, nil }, nil
		})
		var vals []int
		var err error
		runcheck.Run(t, "source error", func() { vals, err = sink.Slice(ctx, stage.Concurrent(tasks, stage.Workers(3))) })
		var srcErr *stage.SourceError
		if !errors.As(err, &srcErr) || !errors.Is(err, r68ErrBoom) || !slices.Equal(vals, []int{7, 7}) {
			t.Errorf("vals %v, err %v: want both results and a *stage.SourceError", vals, err)
		}
	})
	t.Run("nil task fails fast", func(t *testing.T) {
		_, err := sink.Slice(ctx, stage.Concurrent(source.Slice([]r68Task{nil})))
		if !errors.Is(err, stage.ErrNilTask) {
			t.Errorf("err %v, want ErrNilTask", err)
		}
	})
	t.Run("iterable of tasks from Seq", func(t *testing.T) {
		var stopped atomic.Bool
		seq := func(yield func(r68Task) bool) {
			defer stopped.Store(true)
			for i := range 10 {
				if !yield(func(context.Context) (int, error) { return i, nil }) {
					return
				}
			}
		}
		var vals []int
		var err error
		runcheck.Run(t, "seq", func() {
			vals, err = sink.Slice(ctx, stage.Concurrent(source.Seq(seq), stage.Workers(3), stage.Ordered()))
		})
		if err != nil || !slices.Equal(vals, r68Ints(10)) || !stopped.Load() {
			t.Errorf("%v, %v, stopped %v", vals, err, stopped.Load())
		}
	})
}
