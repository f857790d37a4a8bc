package sink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "If the run fails, the last pair is (zero, err) with the error that ended
// it." (All) together with the package's "when ctx was cancelled, an error for
// which errors.Is(err, context.Canceled) ... holds", stage.Run's "a
// cancellation of ctx while f works on the last item comes before the end",
// and stage's "from the moment its Done channel is closed no source's next is
// called, no call starts, and the sink delivers nothing more".
//
// The loop body cancels the caller's ctx at item k (every k, the last one
// included) and goes on ranging: the next pair must be the cancellation error
// and the last one, and the generator must not be called once cancel
// returned (but for one call already on its way in a worker). Under every kind of caller's context.
func TestReview71AllCancelInLoopAtEveryPoint(t *testing.T) {
	const n = 8
	type pipe struct {
		name    string
		ordered bool
		build   func(g *review71Gen) stage.Stream[int]
	}
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	pipes := []pipe{
		{"func", true, func(g *review71Gen) stage.Stream[int] { return source.Func(g.next) }},
		{"func-map-4", false, func(g *review71Gen) stage.Stream[int] {
			return stage.Map(source.Func(g.next), id, stage.Workers(4))
		}},
		{"func-map-4-ordered", true, func(g *review71Gen) stage.Stream[int] {
			return stage.Map(source.Func(g.next), id, stage.Workers(4), stage.Ordered())
		}},
		{"neverwaits-map-filter", false, func(g *review71Gen) stage.Stream[int] {
			m := stage.Map(stage.NeverWaits(source.Func(g.next)), id, stage.Workers(3))
			return stage.Filter(m, func(context.Context, int) (bool, error) { return true, nil })
		}},
		{"func-map-1", true, func(g *review71Gen) stage.Stream[int] {
			return stage.Map(source.Func(g.next), id, stage.Workers(1))
		}},
	}
	for _, kind := range review71Kinds {
		for _, p := range pipes {
			for k := range n {
				t.Run(fmt.Sprintf("%s/%s/cancel-at-%d", kind, p.name, k), func(t *testing.T) {
					g := &review71Gen{n: n}
					s := p.build(g)
					ctx, cancel := ctxtest.New(kind)
					defer cancel()
					var seen []int
					var errs []error
					afterCancel := 0
					review71Run(t, p.name, func() {
						for v, err := range sink.All(ctx, s) {
							if len(seen) == k+1 {
								afterCancel++
							}
							if err != nil {
								errs = append(errs, err)
								continue
							}
							seen = append(seen, v)
							if len(seen) == k+1 {
								cancel()
								g.stopped.Store(true)
							}
						}
					})
					if len(seen) != k+1 || !review71Distinct(seen) {
						t.Fatalf("seen %v (errors %v), want %d distinct values and nothing after the cancel", seen, errs, k+1)
					}
					if p.ordered {
						for i, v := range seen {
							if v != i {
								t.Fatalf("seen %v, want input order", seen)
							}
						}
					}
					if len(errs) != 1 || afterCancel != 1 {
						t.Fatalf("after the cancel the loop saw %d pairs, errors %v; want exactly one, the cancellation", afterCancel, errs)
					}
					if !errors.Is(errs[0], context.Canceled) {
						t.Fatalf("last pair's error = %v, want errors.Is context.Canceled", errs[0])
					}
					// A call of next that a worker began just as the loop
					// cancelled may enter next after cancel returned (no
					// observable order tells it from one that started after);
					// next never overlaps itself, so at most one can be on
					// its way. Over a bare source, next runs on the loop's own
					// goroutine: none.
					limit := int64(1)
					if p.name == "func" {
						limit = 0
					}
					if c := g.afterStop.Load(); c > limit {
						t.Fatalf("next was called %d times after the caller's ctx was cancelled (at most %d may have been on its way)", c, limit)
					}
				})
			}
		}
	}
}
