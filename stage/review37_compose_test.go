package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview37OrderAcrossTee guards "Tee returns n streams that each see
// every item of in, in the order of in" and "input order with Ordered() or
// with Workers(1), kept across stages that all keep it": over an unordered
// upstream of 8 workers, each branch (through Ordered Map, Ordered FlatMap,
// Ordered KeyBy and Ordered Filter stages) hands its last one-worker stage
// the same sequence.
func TestReview37OrderAcrossTee(t *testing.T) {
	const n = 300
	for range 5 {
		var mu sync.Mutex
		seen := make([][]int, 4)
		rec := func(b int) func(context.Context, int) (int, error) {
			return func(_ context.Context, v int) (int, error) {
				mu.Lock()
				seen[b] = append(seen[b], v)
				mu.Unlock()
				return v, nil
			}
		}
		jit := func(_ context.Context, v int) (int, error) { r37Jitter(); return v, nil }
		br := stage.Tee(stage.Map(source.Slice(ints(n)), jit, stage.Workers(8)), 4)
		b0 := stage.Map(br[0], rec(0), stage.Workers(1))
		b1 := stage.Map(stage.Map(br[1], jit, stage.Workers(4), stage.Ordered()), rec(1), stage.Workers(1))
		b2 := stage.Map(stage.FlatMap(br[2], func(_ context.Context, v int) ([]int, error) { r37Jitter(); return []int{v, v}, nil },
			stage.Workers(4), stage.Ordered()), rec(2), stage.Workers(1))
		b3 := stage.Map(stage.Filter(stage.Map(br[3], jit, stage.Workers(4), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 3 })),
			func(context.Context, int) (bool, error) { r37Jitter(); return true, nil }, stage.Workers(3), stage.Ordered()), rec(3), stage.Workers(1))
		var err error
		r37Do(t, "run", func() { _, err = sink.Count(context.Background(), stage.Merge(b0, b1, b2, b3)) })
		if err != nil {
			t.Fatal(err)
		}
		var twice []int
		for _, v := range seen[0] {
			twice = append(twice, v, v)
		}
		if len(seen[0]) != n || !slices.Equal(seen[0], seen[1]) || !slices.Equal(seen[0], seen[3]) || !slices.Equal(twice, seen[2]) {
			t.Fatalf("the branches saw different sequences:\n%v\n%v\n%v\n%v", seen[0], seen[1], seen[2], seen[3])
		}
	}
}

// TestReview37ErrorIndexIsInputPosition guards Error.Index: "the item's
// 0-based position in the stage's input. Forwarded errors count as items."
// Every upstream here has a defined order in which value v is at position v
// (a slice, a waiting and a never-waiting generator, a channel, a one-worker
// and an Ordered FlatMap, an Unbatch, a Tee branch, an Ordered Filter, Until),
// and the failing stage runs in every worker mode.
func TestReview37ErrorIndexIsInputPosition(t *testing.T) {
	const n = 2000
	gen := func() stage.Stream[int] {
		i := -1
		return source.Func(func(context.Context) (int, error) {
			if i++; i == n {
				return 0, errEOF
			}
			return i, nil
		})
	}
	pairs := func(_ context.Context, v int) ([]int, error) { return []int{2 * v, 2*v + 1}, nil }
	ups := map[string]func() (stage.Stream[int], stage.Stream[int]){ // the input, and a stream the run must also consume (or a zero one)
		"slice":      func() (stage.Stream[int], stage.Stream[int]) { return source.Slice(ints(n)), stage.Stream[int]{} },
		"func":       func() (stage.Stream[int], stage.Stream[int]) { return gen(), stage.Stream[int]{} },
		"neverwaits": func() (stage.Stream[int], stage.Stream[int]) { return stage.NeverWaits(gen()), stage.Stream[int]{} },
		"chan": func() (stage.Stream[int], stage.Stream[int]) {
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			close(ch)
			return source.Chan(ch), stage.Stream[int]{}
		},
		"flatmap1": func() (stage.Stream[int], stage.Stream[int]) {
			return stage.FlatMap(source.Slice(ints(n/2)), pairs, stage.Workers(1)), stage.Stream[int]{}
		},
		"flatmap-ordered": func() (stage.Stream[int], stage.Stream[int]) {
			return stage.FlatMap(source.Slice(ints(n/2)), pairs, stage.Workers(4), stage.Ordered()), stage.Stream[int]{}
		},
		"unbatch": func() (stage.Stream[int], stage.Stream[int]) {
			return stage.Unbatch(stage.Batch(source.Slice(ints(n)), 7, 0)), stage.Stream[int]{}
		},
		"tee": func() (stage.Stream[int], stage.Stream[int]) {
			b := stage.Tee(source.Slice(ints(n)), 2)
			return b[0], stage.Filter(b[1], func(context.Context, int) (bool, error) { return false, nil })
		},
		"filter-ordered": func() (stage.Stream[int], stage.Stream[int]) {
			return stage.Map(stage.Filter(source.Slice(ints(2*n)), func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil }, stage.Workers(4), stage.Ordered()),
				func(_ context.Context, v int) (int, error) { return v / 2, nil }, stage.Workers(1)), stage.Stream[int]{}
		},
		"until": func() (stage.Stream[int], stage.Stream[int]) {
			return stage.Until(source.Slice(ints(n)), context.Background()), stage.Stream[int]{}
		},
	}
	modes := map[string][]stage.Option{
		"workers4": {stage.Workers(4)}, "ordered": {stage.Workers(4), stage.Ordered()}, "keyby": {stage.Workers(4), stage.KeyBy(func(v int) int { return v % 5 })},
		"unlimited": {stage.Workers(-1)}, "workers1": {stage.Workers(1)}, "buffer": {stage.Workers(4), stage.Buffer(2)},
	}
	for un, up := range ups {
		for mn, opts := range modes {
			t.Run(un+"/"+mn, func(t *testing.T) {
				for range 3 {
					in, extra := up()
					s := stage.Map(in, func(_ context.Context, v int) (int, error) {
						if v%3 == 0 {
							return 0, errR37
						}
						return v, nil
					}, append(opts, stage.OnError(stage.Forward), stage.Name("X"))...)
					if un == "tee" {
						s = stage.Merge(s, extra)
					}
					failed := 0
					for _, err := range sink.All(context.Background(), s) {
						var e *stage.Error
						if err == nil {
							continue
						}
						if !errors.As(err, &e) || e.Stage != "X" || e.Index != e.Input.(int) {
							t.Fatalf("err %v: index %d, input %v", err, e.Index, e.Input)
						}
						failed++
					}
					if failed != (n+2)/3 {
						t.Fatalf("%d failed items, want %d", failed, (n+2)/3)
					}
				}
			})
		}
	}
}

// TestReview37HostileSizes guards "a large n over a small input costs neither
// goroutines nor memory", the Ordered window "(its room grows, within a run,
// to the most it has held)" and Budget's count, at the extremes of int:
// Workers, Buffer and Budget of math.MaxInt (and 2×Workers overflowing), over
// a slice and a generator, for Map and for an Apply of 50 outputs per item.
// In a child process: an overflow could hang or exhaust memory.
func TestReview37HostileSizes(t *testing.T) {
	cases := map[string][]stage.Option{
		"buffer-max":               {stage.Workers(4), stage.Buffer(math.MaxInt)},
		"buffer-max-ordered":       {stage.Workers(4), stage.Ordered(), stage.Buffer(math.MaxInt)},
		"workers-max-buffer1":      {stage.Workers(math.MaxInt), stage.Buffer(1)},
		"workers-max-ordered":      {stage.Workers(math.MaxInt), stage.Ordered()},
		"workers-half-ordered":     {stage.Workers(math.MaxInt/2 + 1), stage.Ordered()},
		"workers-max-keyby":        {stage.Workers(math.MaxInt), stage.KeyBy(func(x int) int { return x % 3 })},
		"unlimited-buffer-max":     {stage.Workers(-1), stage.Buffer(math.MaxInt)},
		"workers1-ordered-buf-max": {stage.Workers(1), stage.Ordered(), stage.Buffer(math.MaxInt)},
		"budget-max":               {stage.Workers(4), stage.OnError(stage.Budget(math.MaxInt, nil))},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			out, ok := runcheck.InChild(t, func() string {
				res := ""
				for _, src := range []string{"slice", "func"} {
					in := source.Slice(ints(100))
					if src == "func" {
						in = stage.Map(r37CountingN(100), func(_ context.Context, v int) (int, error) { return v - 1, nil }, stage.Workers(1))
					}
					got, err := sink.Slice(context.Background(), stage.Map(in, func(_ context.Context, v int) (int, error) {
						if v%10 == 9 && name == "budget-max" {
							return 0, errR37
						}
						return 2 * v, nil
					}, opts...))
					sum := 0
					for _, v := range got {
						sum += v
					}
					res += fmt.Sprintf("%s map %d %d %v; ", src, len(got), sum, err)
					n, err := sink.Count(context.Background(), stage.Apply(source.Slice(ints(10)), func(ctx context.Context, v int, emit func(int) bool) error {
						for j := range 50 {
							if !emit(j) {
								return ctx.Err()
							}
						}
						return nil
					}, opts...))
					res += fmt.Sprintf("apply %d %v; ", n, err)
				}
				return res
			})
			if !ok {
				return
			}
			want := "slice map 100 9900 <nil>; apply 500 <nil>; func map 100 9900 <nil>; apply 500 <nil>; "
			if name == "budget-max" {
				want = "slice map 90 8820 <nil>; apply 500 <nil>; func map 90 8820 <nil>; apply 500 <nil>; "
			}
			if out != want {
				t.Errorf("got  %q\nwant %q", out, want)
			}
		})
	}
}

// TestReview37PolicyHandlersUnderFusion guards Handle's and Budget's "Calls
// of h never overlap within one stage of one run" and Budget's "the first n
// failed items of a run are dropped after being passed to h, and the (n+1)th,
// which h does not see, fails the run with an error that wraps both
// ErrBudget and that item's *Error", for cheap stages over never-waiting
// inputs, whose calls run in the goroutines of a consumer of 8 workers.
func TestReview37PolicyHandlersUnderFusion(t *testing.T) {
	for range 20 {
		for _, budget := range []int{0, 1, 5, 50} {
			var calls, inside, overlaps atomic.Int32
			h := func(context.Context, *stage.Error) error {
				if inside.Add(1) > 1 {
					overlaps.Add(1)
				}
				calls.Add(1)
				inside.Add(-1)
				return nil
			}
			s := stage.Map(source.Slice(ints(2000)), func(_ context.Context, v int) (int, error) {
				if v%3 == 0 {
					return 0, errR37
				}
				return v, nil
			}, stage.Workers(8), stage.OnError(stage.Budget(budget, h)))
			_, err := sink.Count(context.Background(), stage.Map(s, double, stage.Workers(8)))
			var e *stage.Error
			if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &e) || int(calls.Load()) != budget || overlaps.Load() != 0 {
				t.Fatalf("Budget(%d): err %v, h called %d times, %d overlaps", budget, err, calls.Load(), overlaps.Load())
			}
		}
		var calls, inside, overlaps atomic.Int32
		s := stage.FlatMap(stage.NeverWaits(r37CountingN(5000)), func(_ context.Context, v int) ([]int, error) {
			if v%2 == 0 {
				return nil, errR37
			}
			return []int{v}, nil
		}, stage.Workers(8), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			calls.Add(1)
			inside.Add(-1)
			return nil
		})))
		n, err := sink.Count(context.Background(), stage.Map(s, double, stage.Workers(8)))
		if err != nil || n != 2500 || calls.Load() != 2500 || overlaps.Load() != 0 {
			t.Fatalf("Handle: %d items, err %v, h called %d times, %d overlaps", n, err, calls.Load(), overlaps.Load())
		}
	}
}

// TestReview37RandomCompositions guards that results do not depend on timing
// or composition: random pipelines of every operator (Map, Filter, FlatMap,
// Apply, Concurrent, Tee+Merge, Merge, Batch+Unbatch, Until) with random
// options (Workers 0, 1, 2, 4, 70, -1; Ordered; Buffer; KeyBy) over every
// kind of source, into Slice, ForEach and All, deliver exactly the multiset
// of values a plain computation gives, with no error and no hang.
func TestReview37RandomCompositions(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	r := rand.New(rand.NewPCG(seed, 37))
	for i := range 600 {
		p := r37Build(r, 1+r.IntN(4))
		var got []int
		var err error
		sk := r.IntN(3)
		r37Do(t, p.desc, func() {
			switch sk {
			case 0:
				got, err = sink.Slice(context.Background(), p.s)
			case 1:
				err = sink.ForEach(context.Background(), p.s, func(_ context.Context, v int) error { got = append(got, v); return nil })
			case 2:
				for v, e := range sink.All(context.Background(), p.s) {
					if e != nil {
						err = e
					}
					got = append(got, v)
				}
			}
		})
		if err != nil || !sameMultiset(got, p.want) {
			t.Fatalf("seed %d, pipeline %d, sink %d: %s: err %v, %d values, want %d", seed, i, sk, p.desc, err, len(got), len(p.want))
		}
	}
}

type r37Pipe struct {
	s    stage.Stream[int]
	want []int
	desc string
}

func r37Build(r *rand.Rand, depth int) r37Pipe {
	if depth == 0 || r.IntN(5) == 0 {
		n := r.IntN(40)
		vals := ints(n)
		gen := func() (func(context.Context) (int, error), func()) {
			i := 0
			return func(context.Context) (int, error) {
				if i == n {
					return 0, errEOF
				}
				i++
				return i - 1, nil
			}, nil
		}
		switch r.IntN(4) {
		case 0:
			return r37Pipe{source.Slice(vals), vals, fmt.Sprintf("slice%d", n)}
		case 1:
			return r37Pipe{stage.Source(func(context.Context) (func(context.Context) (int, error), func()) { return gen() }), vals, fmt.Sprintf("source%d", n)}
		case 2:
			return r37Pipe{stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) { return gen() })), vals, fmt.Sprintf("neverwaits%d", n)}
		default:
			return r37Pipe{stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				ch := make(chan int, n)
				for _, v := range vals {
					ch <- v
				}
				close(ch)
				return func(ctx context.Context) (int, error) {
					select {
					case v, ok := <-ch:
						if !ok {
							return 0, errEOF
						}
						return v, nil
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				}, nil
			})), vals, fmt.Sprintf("interruptible%d", n)}
		}
	}
	in := r37Build(r, depth-1)
	kind := r.IntN(9)
	var opts []stage.Option
	ws := []int{1, 2, 4, -1, 0, 70}
	w := ws[r.IntN(len(ws))]
	opts = append(opts, stage.Workers(w))
	od := fmt.Sprintf("w%d", w)
	if r.IntN(3) == 0 {
		opts, od = append(opts, stage.Ordered()), od+"o"
	}
	if r.IntN(3) == 0 {
		b := r.IntN(4)
		opts, od = append(opts, stage.Buffer(b)), od+fmt.Sprintf("b%d", b)
	}
	if kind != 7 && r.IntN(4) == 0 {
		opts, od = append(opts, stage.KeyBy(func(v int) int { return v % 3 })), od+"k"
	}
	jit := func() {}
	if r.IntN(3) == 0 {
		jit = r37Jitter
	}
	var want []int
	switch kind {
	case 0:
		for _, v := range in.want {
			want = append(want, 3*v+1)
		}
		return r37Pipe{stage.Map(in.s, func(_ context.Context, v int) (int, error) { jit(); return 3*v + 1, nil }, opts...), want, "map" + od + "(" + in.desc + ")"}
	case 1:
		for _, v := range in.want {
			if v%3 != 0 {
				want = append(want, v)
			}
		}
		return r37Pipe{stage.Filter(in.s, func(_ context.Context, v int) (bool, error) { jit(); return v%3 != 0, nil }, opts...), want, "filter" + od + "(" + in.desc + ")"}
	case 2:
		for _, v := range in.want {
			want = append(want, v, v+1)
		}
		return r37Pipe{stage.FlatMap(in.s, func(_ context.Context, v int) ([]int, error) { jit(); return []int{v, v + 1}, nil }, opts...), want, "flatmap" + od + "(" + in.desc + ")"}
	case 3:
		for _, v := range in.want {
			want = append(want, v)
			if v%2 == 0 {
				want = append(want, 2*v)
			}
		}
		return r37Pipe{stage.Apply(in.s, func(_ context.Context, v int, emit func(int) bool) error {
			jit()
			emit(v)
			if v%2 == 0 {
				jit()
				emit(2 * v)
			}
			return nil
		}, opts...), want, "apply" + od + "(" + in.desc + ")"}
	case 4:
		k := 1 + r.IntN(3)
		for range k {
			want = append(want, in.want...)
		}
		return r37Pipe{stage.Merge(stage.Tee(in.s, k)...), want, fmt.Sprintf("tee%d(%s)", k, in.desc)}
	case 5:
		other := r37Build(r, depth-1)
		return r37Pipe{stage.Merge(in.s, other.s), append(slices.Clone(in.want), other.want...), "merge(" + in.desc + "," + other.desc + ")"}
	case 6:
		size := 1 + r.IntN(5)
		return r37Pipe{stage.Unbatch(stage.Batch(in.s, size, time.Duration(r.IntN(2))*time.Millisecond)), in.want, fmt.Sprintf("unbatch(batch%d(%s))", size, in.desc)}
	case 7:
		tasks := stage.Map(in.s, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
			return func(context.Context) (int, error) { jit(); return v + 5, nil }, nil
		}, stage.Workers(1))
		for _, v := range in.want {
			want = append(want, v+5)
		}
		return r37Pipe{stage.Concurrent(tasks, opts...), want, "concurrent" + od + "(" + in.desc + ")"}
	default:
		return r37Pipe{stage.Until(in.s, context.Background()), in.want, "until(" + in.desc + ")"}
	}
}
