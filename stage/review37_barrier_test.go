package stage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview37BarrierAfterEveryOperator guards "Add Buffer(1) to keep every
// worker a goroutine of the stage's own: the stage's function may then wait
// ... for its peers" (and that an Ordered stage of more workers, a KeyBy
// stage and Workers(-1) keep their calls in goroutines of their own): a
// barrier of n calls (2, 5, 70: past the 64 workers started at once)
// completes after every kind of upstream, including the composition
// operators' outputs (Merge, Tee branch, Unbatch, FlatMap, Until) and
// waiting and Interruptible sources.
func TestReview37BarrierAfterEveryOperator(t *testing.T) {
	srcs := map[string]func(n int) stage.Stream[int]{
		"slice": func(n int) stage.Stream[int] { return source.Slice(ints(n)) },
		"func":  func(n int) stage.Stream[int] { return r37CountingN(n) },
		"neverwaits": func(n int) stage.Stream[int] {
			return stage.NeverWaits(r37CountingN(n))
		},
		"chan-slow": func(n int) stage.Stream[int] {
			ch := make(chan int)
			go func() {
				defer close(ch)
				for i := range n {
					ch <- i
					time.Sleep(100 * time.Microsecond)
				}
			}()
			return source.Chan(ch)
		},
		"chan-full": func(n int) stage.Stream[int] {
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			close(ch)
			return source.Chan(ch)
		},
		"merge": func(n int) stage.Stream[int] {
			return stage.Merge(source.Slice(ints(n/2)), stage.Map(r37CountingN(n-n/2), func(_ context.Context, v int) (int, error) { return v + 1e6, nil }, stage.Workers(1)))
		},
		"tee": func(n int) stage.Stream[int] {
			b := stage.Tee(source.Slice(ints(n)), 2)
			return stage.Merge(b[0], stage.Filter(b[1], func(context.Context, int) (bool, error) { return false, nil }))
		},
		"unbatch": func(n int) stage.Stream[int] { return stage.Unbatch(stage.Batch(source.Slice(ints(n)), 3, 0)) },
		"unbatch-one-slice": func(n int) stage.Stream[int] {
			return stage.Unbatch(source.Slice([][]int{ints(n)}))
		},
		"flatmap": func(n int) stage.Stream[int] {
			return stage.FlatMap(source.Slice(ints(n)), func(_ context.Context, v int) ([]int, error) {
				switch v % 3 {
				case 0:
					return []int{v, v + 1e6}, nil
				case 1:
					return nil, nil
				}
				return []int{v}, nil
			}, stage.Workers(3))
		},
		"until": func(n int) stage.Stream[int] { return stage.Until(source.Slice(ints(n)), context.Background()) },
	}
	type mk func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int]
	fn := func(b *r37Barrier) func(context.Context, int) (int, error) {
		return func(_ context.Context, v int) (int, error) { b.wait(); return v, nil }
	}
	stages := map[string]mk{
		"map-buffer1": func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int] {
			return stage.Map(s, fn(b), stage.Workers(n), stage.Buffer(1))
		},
		"filter-buffer1": func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int] {
			return stage.Filter(s, func(context.Context, int) (bool, error) { b.wait(); return true, nil }, stage.Workers(n), stage.Buffer(1))
		},
		"flatmap-buffer1": func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int] {
			return stage.FlatMap(s, func(_ context.Context, v int) ([]int, error) { b.wait(); return []int{v}, nil }, stage.Workers(n), stage.Buffer(1))
		},
		"apply-buffer1": func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int] {
			return stage.Apply(s, func(_ context.Context, v int, emit func(int) bool) error { b.wait(); emit(v); return nil }, stage.Workers(n), stage.Buffer(1))
		},
		"concurrent-buffer1": func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int] {
			tasks := stage.Map(s, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
				return func(context.Context) (int, error) { b.wait(); return v, nil }, nil
			}, stage.Workers(1))
			return stage.Concurrent(tasks, stage.Workers(n), stage.Buffer(1))
		},
		"map-ordered": func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int] {
			return stage.Map(s, fn(b), stage.Workers(n), stage.Ordered())
		},
		"map-keyby": func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int] {
			return stage.Map(s, fn(b), stage.Workers(n), stage.KeyBy(func(v int) int { return v }))
		},
		"map-unlimited": func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int] {
			return stage.Map(s, fn(b), stage.Workers(-1))
		},
		"map-unlimited-ordered": func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int] {
			return stage.Map(s, fn(b), stage.Workers(-1), stage.Ordered())
		},
		"flatmap-ordered": func(s stage.Stream[int], n int, b *r37Barrier) stage.Stream[int] {
			return stage.FlatMap(s, func(_ context.Context, v int) ([]int, error) { b.wait(); return []int{v}, nil }, stage.Workers(n), stage.Ordered())
		},
	}
	for sname, src := range srcs {
		for stname, st := range stages {
			for _, n := range []int{2, 5, 70} {
				t.Run(fmt.Sprintf("%s/%s/%d", sname, stname, n), func(t *testing.T) {
					t.Parallel()
					b := newR37Barrier(n)
					var got int
					var err error
					r37Do(t, "barrier", func() { got, err = sink.Count(context.Background(), st(src(3*n), n, b)) })
					if err != nil || got != 3*n {
						t.Errorf("%d of %d items, err %v", got, 3*n, err)
					}
				})
			}
		}
	}
}
