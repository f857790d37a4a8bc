package stage_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r55Kind is one kind of stage with what it should make of an input.
type r55Kind struct {
	name  string
	build func(in stage.Stream[int], opts ...stage.Option) stage.Stream[int]
	want  func(xs []int) []int
	// pairs: for each item, the outputs that must keep their order among
	// themselves even without Ordered.
	pairs func(x int) []int
}

var r55Kinds = []r55Kind{
	{name: "map",
		build: func(in stage.Stream[int], opts ...stage.Option) stage.Stream[int] {
			return stage.Map(in, func(_ context.Context, x int) (int, error) { return x*10 + 1, nil }, opts...)
		},
		want: func(xs []int) []int {
			var out []int
			for _, x := range xs {
				out = append(out, x*10+1)
			}
			return out
		}},
	{name: "filter",
		build: func(in stage.Stream[int], opts ...stage.Option) stage.Stream[int] {
			return stage.Filter(in, func(_ context.Context, x int) (bool, error) { return x%2 == 0, nil }, opts...)
		},
		want: func(xs []int) []int {
			var out []int
			for _, x := range xs {
				if x%2 == 0 {
					out = append(out, x)
				}
			}
			return out
		}},
	{name: "flatmap",
		build: func(in stage.Stream[int], opts ...stage.Option) stage.Stream[int] {
			return stage.FlatMap(in, func(_ context.Context, x int) ([]int, error) {
				if x%3 == 0 {
					return nil, nil
				}
				return []int{x * 10, x*10 + 1}, nil
			}, opts...)
		},
		want: func(xs []int) []int {
			var out []int
			for _, x := range xs {
				if x%3 != 0 {
					out = append(out, x*10, x*10+1)
				}
			}
			return out
		},
		pairs: func(x int) []int {
			if x%3 == 0 {
				return nil
			}
			return []int{x * 10, x*10 + 1}
		}},
	{name: "concurrent",
		build: func(in stage.Stream[int], opts ...stage.Option) stage.Stream[int] {
			tasks := stage.Map(in, func(_ context.Context, x int) (func(context.Context) (int, error), error) {
				return func(context.Context) (int, error) { return x*10 + 1, nil }, nil
			}, stage.Workers(1))
			return stage.Concurrent(tasks, opts...)
		},
		want: func(xs []int) []int {
			var out []int
			for _, x := range xs {
				out = append(out, x*10+1)
			}
			return out
		}},
	{name: "apply",
		build: func(in stage.Stream[int], opts ...stage.Option) stage.Stream[int] {
			return stage.Apply(in, func(_ context.Context, x int, emit func(int) bool) error {
				emit(x)
				if x%2 == 1 {
					emit(x + 100)
				}
				return nil
			}, opts...)
		},
		want: func(xs []int) []int {
			var out []int
			for _, x := range xs {
				out = append(out, x)
				if x%2 == 1 {
					out = append(out, x+100)
				}
			}
			return out
		},
		pairs: func(x int) []int {
			if x%2 == 1 {
				return []int{x, x + 100}
			}
			return nil
		}},
}

// TestReview55_SmallRunsExact attacks "Each sink call runs it anew ... a slice
// source yields its items again", "Completion order by default; input order
// with Ordered() or with Workers(1)", "FlatMap ... emits the elements of the
// slice it returns, in slice order", and "stop is called once every goroutine
// of the run has exited" for the tiny runs (0..5 items, Workers 1..8 and -1,
// with and without Buffer) that the engine's newest paths serve: the results
// of each run must be exactly the expected ones, run after run.
func TestReview55_SmallRunsExact(t *testing.T) {
	ctx := context.Background()
	for _, src := range r55Sources {
		for _, kind := range r55Kinds {
			for _, n := range r55Sizes {
				for _, w := range r55Workers {
					for _, ordered := range []bool{false, true} {
						for _, buf := range []int{0, 1} {
							label := fmt.Sprintf("%s/%s/n=%d/w=%d/ordered=%v/buf=%d", src.name, kind.name, n, w, ordered, buf)
							var nexts, stops atomic.Int64
							s := kind.build(src.make(n, &nexts, &stops), r55Opts(w, ordered, buf)...)
							want := kind.want(r55Ints(n))
							for run := range 3 {
								if src.fresh {
									s = kind.build(src.make(n, &nexts, &stops), r55Opts(w, ordered, buf)...)
								}
								nexts.Store(0)
								stops.Store(0)
								var got []int
								var err error
								runcheck.NoHang(t, label, func() {
									switch run {
									case 0:
										var fwd []error
										got, fwd, err = r55Collect(ctx, s)
										if len(fwd) != 0 {
											t.Errorf("%s: forwarded %v", label, fwd)
										}
									case 1:
										got, err = sink.Slice(ctx, s)
									default:
										for v, e := range sink.All(ctx, s) {
											if e != nil {
												err = e
												continue
											}
											got = append(got, v)
										}
									}
								})
								if err != nil {
									t.Fatalf("%s run %d: err %v", label, run, err)
								}
								if ordered || w == 1 {
									if !slices.Equal(got, want) {
										t.Fatalf("%s run %d: got %v, want %v in this order", label, run, got, want)
									}
								} else if !r55SameMultiset(got, want) {
									t.Fatalf("%s run %d: got %v, want %v in any order", label, run, got, want)
								}
								if kind.pairs != nil {
									for x := range n {
										p := kind.pairs(x)
										if len(p) == 2 && slices.Index(got, p[0]) > slices.Index(got, p[1]) {
											t.Fatalf("%s run %d: outputs of item %d out of their order: %v", label, run, x, got)
										}
									}
								}
								switch src.name {
								case "neverwaits", "waiting", "interruptible":
									if st := stops.Load(); st != 1 {
										t.Fatalf("%s run %d: stop called %d times before the sink returned, want 1", label, run, st)
									}
									fallthrough
								case "indexed":
									if nx := nexts.Load(); nx != int64(n) {
										t.Fatalf("%s run %d: %d items taken, want %d", label, run, nx, n)
									}
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestReview55_TwoStageChains attacks "input order with Ordered() or with
// Workers(1), kept across stages that all keep it" over tiny inputs, with the
// upstream stage's calls able to run in the downstream stage's goroutines.
func TestReview55_TwoStageChains(t *testing.T) {
	ctx := context.Background()
	for _, src := range r55Sources {
		for _, n := range r55Sizes {
			for _, w1 := range r55Workers {
				for _, w2 := range r55Workers {
					for _, ordered := range []bool{false, true} {
						label := fmt.Sprintf("%s/n=%d/w1=%d/w2=%d/ordered=%v", src.name, n, w1, w2, ordered)
						var nexts, stops atomic.Int64
						build := func() stage.Stream[int] {
							a := stage.Map(src.make(n, &nexts, &stops), func(_ context.Context, x int) (int, error) { return x + 1, nil }, r55Opts(w1, ordered, 0)...)
							return stage.Filter(a, func(_ context.Context, x int) (bool, error) { return x%2 == 1 || x == 2, nil }, r55Opts(w2, ordered, 0)...)
						}
						s := build()
						var want []int
						for x := range n {
							if (x+1)%2 == 1 || x+1 == 2 {
								want = append(want, x+1)
							}
						}
						for run := range 2 {
							if src.fresh {
								s = build()
							}
							var got []int
							var err error
							runcheck.NoHang(t, label, func() { got, err = sink.Slice(ctx, s) })
							if err != nil {
								t.Fatalf("%s: %v", label, err)
							}
							keeps := (ordered || w1 == 1) && (ordered || w2 == 1)
							if keeps && !slices.Equal(got, want) {
								t.Fatalf("%s run %d: got %v, want %v in order", label, run, got, want)
							}
							if !r55SameMultiset(got, want) {
								t.Fatalf("%s run %d: got %v, want %v", label, run, got, want)
							}
						}
					}
				}
			}
		}
	}
}
