package stage_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview37NothingAfterAbort guards "Abort (cancel the ctx given to the
// sink): calls in flight see ctx.Done(), nothing more is delivered" and "no
// new item starts", through every composition operator and into every sink:
// the call of item K cancels the caller's ctx before it returns, so its output
// (and every later one) must reach neither a later stage's function nor the
// sink. Items are in order (one worker up to the trigger), so a value >= K
// seen anywhere downstream is a delivery after the abort.
func TestReview37NothingAfterAbort(t *testing.T) {
	const k = 40
	trig := func(cancel func()) func(context.Context, int) (int, error) {
		return func(_ context.Context, v int) (int, error) {
			if v == k {
				cancel()
			}
			return v, nil
		}
	}
	late := func(l *atomic.Int32) func(context.Context, int) (int, error) {
		return func(_ context.Context, v int) (int, error) {
			if v >= k {
				l.Add(1)
			}
			return v, nil
		}
	}
	first := func(c func()) stage.Stream[int] {
		return stage.Map(source.Slice(ints(100)), trig(c), stage.Workers(1))
	}
	shapes := map[string]func(c func(), l *atomic.Int32) stage.Stream[int]{
		"map": func(c func(), l *atomic.Int32) stage.Stream[int] { return first(c) },
		"map-map": func(c func(), l *atomic.Int32) stage.Stream[int] {
			return stage.Map(first(c), late(l), stage.Workers(4))
		},
		"map-ordered": func(c func(), l *atomic.Int32) stage.Stream[int] {
			return stage.Map(first(c), late(l), stage.Workers(4), stage.Ordered())
		},
		"tee": func(c func(), l *atomic.Int32) stage.Stream[int] {
			b := stage.Tee(first(c), 2)
			return stage.Merge(stage.Map(b[0], late(l), stage.Workers(2)), b[1])
		},
		"merge": func(c func(), l *atomic.Int32) stage.Stream[int] {
			return stage.Map(stage.Merge(first(c)), late(l), stage.Workers(2))
		},
		"keyby": func(c func(), l *atomic.Int32) stage.Stream[int] {
			return stage.Map(first(c), late(l), stage.Workers(2), stage.KeyBy(func(int) int { return 0 }))
		},
		"flatmap": func(c func(), l *atomic.Int32) stage.Stream[int] {
			return stage.Map(stage.FlatMap(source.Slice(ints(100)), func(_ context.Context, v int) ([]int, error) {
				if v == k {
					c()
				}
				return []int{v, v}, nil
			}, stage.Workers(1)), late(l), stage.Workers(1))
		},
		"apply": func(c func(), l *atomic.Int32) stage.Stream[int] {
			return stage.Map(stage.Apply(source.Slice(ints(100)), func(_ context.Context, v int, emit func(int) bool) error {
				if v == k {
					c()
				}
				emit(v)
				return nil
			}, stage.Workers(1)), late(l), stage.Workers(1))
		},
		"batch-unbatch": func(c func(), l *atomic.Int32) stage.Stream[int] {
			return stage.Map(stage.Unbatch(stage.Batch(first(c), 1, 0)), late(l), stage.Workers(1))
		},
		"filter": func(c func(), l *atomic.Int32) stage.Stream[int] {
			return stage.Map(stage.Filter(source.Slice(ints(100)), func(_ context.Context, v int) (bool, error) {
				if v == k {
					c()
				}
				return true, nil
			}, stage.Workers(1)), late(l), stage.Workers(1))
		},
		"concurrent": func(c func(), l *atomic.Int32) stage.Stream[int] {
			tasks := make([]func(context.Context) (int, error), 100)
			for i := range tasks {
				tasks[i] = func(ctx context.Context) (int, error) { return trig(c)(ctx, i) }
			}
			return stage.Map(stage.Concurrent(source.Slice(tasks), stage.Workers(1)), late(l), stage.Workers(1))
		},
		"chan-source": func(c func(), l *atomic.Int32) stage.Stream[int] {
			ch := make(chan int, 100)
			for i := range 100 {
				ch <- i
			}
			close(ch)
			return stage.Map(stage.Map(source.Chan(ch), trig(c), stage.Workers(1)), late(l), stage.Workers(3))
		},
	}
	sinks := map[string]func(ctx context.Context, s stage.Stream[int]) []int{
		"slice": func(ctx context.Context, s stage.Stream[int]) []int { v, _ := sink.Slice(ctx, s); return v },
		"foreach": func(ctx context.Context, s stage.Stream[int]) (r []int) {
			sink.ForEach(ctx, s, func(_ context.Context, v int) error { r = append(r, v); return nil })
			return r
		},
		"all": func(ctx context.Context, s stage.Stream[int]) (r []int) {
			for v, err := range sink.All(ctx, s) {
				if err == nil {
					r = append(r, v)
				}
			}
			return r
		},
		"reduce": func(ctx context.Context, s stage.Stream[int]) []int {
			r, _ := sink.Reduce(ctx, s, []int(nil), func(acc []int, v int) []int { return append(acc, v) })
			return r
		},
		"chan": func(ctx context.Context, s stage.Stream[int]) (r []int) {
			out := make(chan int, 1000)
			sink.Chan(ctx, s, out)
			close(out)
			for v := range out {
				r = append(r, v)
			}
			return r
		},
	}
	for sh, mk := range shapes {
		for sn, run := range sinks {
			t.Run(sh+"/"+sn, func(t *testing.T) {
				for round := range 20 {
					ctx, cancel := context.WithCancel(context.Background())
					var l atomic.Int32
					s := mk(cancel, &l)
					var got []int
					r37Do(t, "run", func() { got = run(ctx, s) })
					cancel()
					for _, v := range got {
						if v >= k {
							t.Fatalf("round %d: %d delivered after the abort (got %v)", round, v, got)
						}
					}
					if n := l.Load(); n != 0 {
						t.Fatalf("round %d: %d calls of a later stage started on outputs made after the abort", round, n)
					}
				}
			})
		}
	}
}
