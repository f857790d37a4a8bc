package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r68Counters counts every kind of user call a pipeline makes.
type r68Counters struct {
	opens, nexts, stops, fns, keys, handles atomic.Int64
}

func (c *r68Counters) total() int64 {
	return c.opens.Load() + c.nexts.Load() + c.stops.Load() + c.fns.Load() + c.keys.Load() + c.handles.Load()
}

// r68Counted is a Source of n ints with counted open/next/stop.
func r68Counted(c *r68Counters, n int) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		c.opens.Add(1)
		i := 0
		return func(context.Context) (int, error) {
				c.nexts.Add(1)
				if i == n {
					return 0, io.EOF
				}
				i++
				return i - 1, nil
			}, func() {
				c.stops.Add(1)
			}
	})
}

// README Guarantees: "Lazy and repeatable. Building a pipeline runs no user
// code. Each sink call runs it anew."
func TestReview68LazyAndRepeatable(t *testing.T) {
	var c r68Counters
	build := func() stage.Stream[int] {
		src := r68Counted(&c, 20)
		m := stage.Map(src, func(_ context.Context, v int) (int, error) { c.fns.Add(1); return v, nil },
			stage.KeyBy(func(v int) int { c.keys.Add(1); return v % 3 }))
		f := stage.Filter(m, func(_ context.Context, v int) (bool, error) {
			c.fns.Add(1)
			if v == 7 {
				return false, r68ErrBoom
			}
			return true, nil
		}, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { c.handles.Add(1); return nil })))
		fm := stage.FlatMap(f, func(_ context.Context, v int) ([]int, error) { c.fns.Add(1); return []int{v}, nil })
		b := stage.Tee(stage.Unbatch(stage.Batch(fm, 3, 0)), 2)
		odd := stage.Filter(b[0], func(_ context.Context, v int) (bool, error) { return v%2 == 1, nil })
		even := stage.Filter(b[1], func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil })
		stop, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		return stage.Until(stage.Merge(odd, even), stop)
	}
	s := build()
	if n := c.total(); n != 0 {
		t.Fatalf("building the pipeline made %d user calls, want 0", n)
	}
	want := slices.DeleteFunc(r68Ints(20), func(v int) bool { return v == 7 })
	for run := 1; run <= 3; run++ {
		var got []int
		var err error
		runcheck.Run(t, "lazy", func() { got, err = sink.Slice(context.Background(), s) })
		slices.Sort(got)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("run %d: got %v, err %v; want %v", run, got, err, want)
		}
		if c.opens.Load() != int64(run) || c.stops.Load() != int64(run) || c.handles.Load() != int64(run) {
			t.Errorf("run %d: %d opens, %d stops, %d handles; want %d each (each sink call runs anew)", run, c.opens.Load(), c.stops.Load(), c.handles.Load(), run)
		}
	}
	// A slice source yields its items again in each run.
	sl := stage.Map(source.Slice(r68Ints(5)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Ordered())
	for range 2 {
		got, err := sink.Slice(context.Background(), sl)
		if err != nil || !slices.Equal(got, r68Ints(5)) {
			t.Errorf("slice source rerun: %v, %v", got, err)
		}
	}
}

// README Guarantees: "A stream feeds one consumer: stage.Merge of a stream
// with itself (or with a stage built on it) panics when the pipeline is
// built."
func TestReview68MergeSharedStreamPanics(t *testing.T) {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	cases := map[string]func(){
		"itself": func() { s := source.Slice(r68Ints(3)); stage.Merge(s, s) },
		"stage on it": func() {
			s := source.Slice(r68Ints(3))
			stage.Merge(s, stage.Map(s, id))
		},
		"two stages on it": func() {
			s := source.Slice(r68Ints(3))
			stage.Merge(stage.Map(s, id), stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }))
		},
		"deep": func() {
			s := source.Slice(r68Ints(3))
			a := stage.Map(stage.Map(stage.Map(s, id), id), id)
			stage.Merge(stage.Unbatch(stage.Batch(a, 2, 0)), stage.Merge(source.Slice(r68Ints(2)), s))
		},
		"through a merge": func() {
			s := source.Slice(r68Ints(3))
			stage.Merge(stage.Merge(stage.Map(s, id)), stage.Merge(stage.Map(s, id)))
		},
		"a func source twice": func() {
			var n atomic.Int32
			s := source.Func(func(context.Context) (int, error) { return int(n.Add(1)), nil })
			stage.Merge(s, s)
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("no panic when building")
				}
			}()
			build()
		})
	}
	// Distinct sources merge fine.
	got, err := sink.Slice(context.Background(), stage.Merge(source.Slice(r68Ints(3)), source.Slice(r68Ints(2))))
	if err != nil || len(got) != 5 {
		t.Errorf("merge of distinct sources: %v, %v", got, err)
	}
}

// r68EndKind is a way a run can end.
type r68EndKind string

// README Guarantees: "No leaks. When a sink returns — success, error,
// cancellation of ctx, sink.First, break out of sink.All, a panic in a
// callback — every goroutine of the run has exited and no user function
// is running." Stages in flight block on ctx.Done() when the run is not
// meant to succeed, so that something is running when it ends; sources
// are stopped ("Sources release what they hold ... before the sink
// returns").
func TestReview68NoLeaksEveryEnding(t *testing.T) {
	kinds := []r68EndKind{"success", "failfast", "source error", "callback error", "callback panic", "reduce panic",
		"cancel", "cancel userctx", "first", "all break", "all body panic", "errstop", "handle error", "budget", "chan sink"}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			var bal r68Balance
			var c r68Counters
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var dc *ctxtest.DoneCtx
			var runCtx context.Context = ctx
			if kind == "cancel userctx" {
				dc = ctxtest.NewDoneCtx()
				runCtx = dc
			}
			blocking := kind != "success" && kind != "source error"
			n := 200
			src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				c.opens.Add(1)
				i := 0
				return func(ctx context.Context) (int, error) {
						defer bal.enter()()
						c.nexts.Add(1)
						if i == n {
							if kind == "source error" {
								return 0, r68ErrBoom
							}
							return 0, io.EOF
						}
						i++
						return i - 1, nil
					}, func() {
						c.stops.Add(1)
						if in, out := bal.in.Load(), bal.out.Load(); in != out {
							t.Errorf("stop called while %d user calls were running", in-out)
						}
					}
			})
			policy := stage.FailFast
			switch kind {
			case "handle error":
				policy = stage.Handle(func(context.Context, *stage.Error) error { return r68ErrBoom })
			case "budget":
				policy = stage.Budget(0, nil)
			}
			m := stage.Map(src, func(ctx context.Context, v int) (int, error) {
				defer bal.enter()()
				if blocking && v >= 20 {
					<-ctx.Done()
					return 0, ctx.Err()
				}
				if v == 19 && (kind == "failfast" || kind == "handle error" || kind == "budget") {
					return 0, r68ErrBoom
				}
				return v, nil
			}, stage.Workers(4), stage.Buffer(1), stage.OnError(policy))
			fm := stage.FlatMap(m, func(_ context.Context, v int) ([]int, error) {
				defer bal.enter()()
				return []int{v}, nil
			}, stage.Workers(2))
			b := stage.Tee(stage.Unbatch(stage.Batch(fm, 4, 0)), 2)
			s := stage.Merge(b[0], stage.Filter(b[1], func(context.Context, int) (bool, error) { return false, nil }))
			s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil },
				stage.KeyBy(func(v int) int { return v % 5 }), stage.Workers(3))
			var err error
			seen := 0
			cb := func(_ context.Context, v int) error {
				seen++
				switch {
				case seen == 10 && kind == "callback error":
					return r68ErrBoom
				case seen == 10 && kind == "callback panic":
					panic(r68ErrBoom)
				case seen == 10 && kind == "cancel":
					cancel()
				case seen == 10 && kind == "cancel userctx":
					dc.Cancel()
				case seen == 10 && kind == "errstop":
					return stage.ErrStop
				}
				return nil
			}
			runcheck.Run(t, string(kind), func() {
				switch kind {
				case "first":
					_, _, err = sink.First(runCtx, s)
				case "all break", "all body panic":
					func() {
						defer func() {
							if r := recover(); r != nil && kind != "all body panic" {
								panic(r)
							} else if r != nil {
								err = fmt.Errorf("recovered %v", r)
							}
						}()
						for _, e := range sink.All(runCtx, s) {
							if e != nil {
								err = e
								return
							}
							seen++
							if seen == 10 {
								if kind == "all body panic" {
									panic(r68ErrBoom)
								}
								break
							}
						}
					}()
				case "reduce panic":
					_, err = sink.Reduce(runCtx, s, 0, func(acc, v int) int {
						if acc == 10 {
							panic(r68ErrBoom)
						}
						return acc + 1
					})
				case "chan sink":
					out := make(chan int)
					go func() {
						for range 10 {
							<-out
						}
						cancel()
					}()
					err = sink.Chan(runCtx, s, out)
				default:
					err = sink.ForEach(runCtx, s, cb)
				}
			})
			bal.check(t, string(kind))
			if c.opens.Load() != 1 || c.stops.Load() != 1 {
				t.Errorf("%d opens, %d stops; want 1 each", c.opens.Load(), c.stops.Load())
			}
			switch kind {
			case "success", "first", "all break", "errstop":
				if err != nil {
					t.Errorf("err = %v, want nil", err)
				}
			case "cancel", "cancel userctx", "chan sink":
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want context.Canceled", err)
				}
			case "budget":
				if !errors.Is(err, stage.ErrBudget) || !errors.Is(err, r68ErrBoom) {
					t.Errorf("err = %v, want ErrBudget and the item's error", err)
				}
			case "callback panic", "reduce panic":
				var pe *stage.PanicError
				var se *stage.Error
				if !errors.As(err, &pe) || !errors.As(err, &se) || (se.Stage != "foreach" && se.Stage != "reduce") {
					t.Errorf("err = %v, want a *stage.Error of the sink wrapping a *stage.PanicError", err)
				}
			case "all body panic":
				if err == nil || !strings.Contains(err.Error(), "recovered") {
					t.Errorf("the panic of the loop body did not continue: %v", err)
				}
			default:
				if !errors.Is(err, r68ErrBoom) {
					t.Errorf("err = %v, want r68ErrBoom", err)
				}
			}
		})
	}
}
