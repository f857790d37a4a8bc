package sink_test

import (
	"context"
	"fmt"
	"iter"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "Breaking out of the loop stops the run; the loop statement ends only once
// every goroutine of the run has exited. Whatever the run would have reported
// after the break (an error of an item the loop never saw) is dropped: the
// loop saw everything it asked for."
//
// Break after the k-th item, for every k, over several sources and stages.
// The items from n on fail (the source fails, or the stage's function fails)
// only once the loop body decided to break (a gate it closes just before the
// break), so those failures race with the break: the loop must still end
// cleanly with k+1 distinct items seen, in input order where the pipeline
// is ordered.
func TestReview71AllBreakAtEveryPoint(t *testing.T) {
	const n = 12
	type pipe struct {
		name    string
		ordered bool
		build   func(failAfter func(int) (int, error)) stage.Stream[int]
	}
	pipes := []pipe{
		{"slice", true, func(failAfter func(int) (int, error)) stage.Stream[int] { return source.Slice(review71Ints(2 * n)) }},
		{"slice-map-ordered-8", true, func(failAfter func(int) (int, error)) stage.Stream[int] {
			return stage.Map(source.Slice(review71Ints(2*n)), func(_ context.Context, v int) (int, error) { return failAfter(v) },
				stage.Workers(8), stage.Ordered())
		}},
		// Buffer(1): the failing calls wait for the loop body, so they must
		// not run in the loop's own goroutine (see stage.Workers).
		{"slice-map-unordered-8-buffer", false, func(failAfter func(int) (int, error)) stage.Stream[int] {
			return stage.Map(source.Slice(review71Ints(2*n)), func(_ context.Context, v int) (int, error) { return failAfter(v) },
				stage.Workers(8), stage.Buffer(1))
		}},
		{"func-failing", true, func(failAfter func(int) (int, error)) stage.Stream[int] {
			var i atomic.Int64
			return source.Func(func(context.Context) (int, error) {
				return failAfter(int(i.Add(1)) - 1)
			})
		}},
		{"seq-map-filter-1", true, func(failAfter func(int) (int, error)) stage.Stream[int] {
			seq := func(yield func(int) bool) {
				for i := range 2 * n {
					if !yield(i) {
						return
					}
				}
			}
			m := stage.Map(source.Seq(iter.Seq[int](seq)), func(_ context.Context, v int) (int, error) { return failAfter(v) }, stage.Workers(1))
			return stage.Filter(m, func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(1))
		}},
		{"chan-map-4-buffer", false, func(failAfter func(int) (int, error)) stage.Stream[int] {
			ch := make(chan int, 2*n)
			for i := range 2 * n {
				ch <- i
			}
			close(ch)
			return stage.Map(source.Chan(ch), func(_ context.Context, v int) (int, error) { return failAfter(v) },
				stage.Workers(4), stage.Buffer(2))
		}},
	}
	for _, p := range pipes {
		for k := range n {
			t.Run(fmt.Sprintf("%s/break-after-%d", p.name, k), func(t *testing.T) {
				gate := make(chan struct{})
				s := p.build(func(v int) (int, error) {
					if v >= n {
						<-gate // fail only once the loop decided to break
						return 0, errReview71Boom
					}
					return v, nil
				})
				var seen []int
				var errs []error
				review71Run(t, p.name, func() {
					for v, err := range sink.All(context.Background(), s) {
						if err != nil {
							errs = append(errs, err)
							continue
						}
						seen = append(seen, v)
						if len(seen) == k+1 {
							close(gate)
							break
						}
					}
				})
				if len(errs) != 0 {
					t.Fatalf("the loop saw errors %v before it broke after %d items", errs, k+1)
				}
				if len(seen) != k+1 || !review71Distinct(seen) {
					t.Fatalf("seen %v, want %d distinct items", seen, k+1)
				}
				for i, v := range seen {
					if v < 0 || v >= n {
						t.Fatalf("seen %v: item %d is %d, which fails", seen, i, v)
					}
					if p.ordered && v != i {
						t.Fatalf("seen %v, want 0..%d in order", seen, k)
					}
				}
			})
		}
	}
}

// "Each range over the iterator runs s anew."
//
// Range the same iterator three times, breaking at different points; each
// range starts from the first item.
func TestReview71AllEachRangeRunsAnew(t *testing.T) {
	s := stage.Map(source.Slice(review71Ints(10)), func(_ context.Context, v int) (int, error) { return v * 2, nil },
		stage.Workers(3), stage.Ordered())
	seq := sink.All(context.Background(), s)
	for round, stop := range []int{3, 10, 1} {
		var got []int
		review71Run(t, "range", func() {
			for v, err := range seq {
				if err != nil {
					t.Errorf("round %d: %v", round, err)
					return
				}
				got = append(got, v)
				if len(got) == stop {
					break
				}
			}
		})
		if len(got) != stop {
			t.Fatalf("round %d: got %v, want %d items", round, got, stop)
		}
		for i, v := range got {
			if v != 2*i {
				t.Fatalf("round %d: got %v, want 0, 2, 4, ... from the first item", round, got)
			}
		}
	}
}
