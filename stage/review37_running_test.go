package stage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview37NoUserFunctionRunningAtReturn guards README "No leaks": "When a
// sink returns — success, error, cancellation of ctx, sink.First, break out
// of sink.All, a panic in a callback — every goroutine of the run has exited
// and no user function is running", for user functions that ignore their ctx
// in the composition operators' positions (a Tee branch, a Merge input's
// next, a Filter, a Handle handler, a KeyBy key, a Concurrent task, a FlatMap
// before Unbatch) while another part of the run ends it. The laggard is
// released 200 ms after the ending event (or at once when the sink returns):
// a sink that returned before it would be caught with it still running.
func TestReview37NoUserFunctionRunningAtReturn(t *testing.T) {
	failer := func(l *r37Laggard) func(context.Context, int) (int, error) {
		return func(context.Context, int) (int, error) { <-l.entered; l.fire(); return 0, errR37 }
	}
	passer := func(l *r37Laggard) func(context.Context, int) (int, error) {
		return func(_ context.Context, v int) (int, error) { <-l.entered; l.fire(); return v, nil }
	}
	lagMap := func(l *r37Laggard) func(context.Context, int) (int, error) {
		return func(_ context.Context, v int) (int, error) { l.hold(); return v, nil }
	}
	ending := func(l *r37Laggard) stage.Stream[int] {
		return stage.Map(source.Slice(ints(3)), failer(l), stage.Workers(1))
	}
	teeLag := func(l *r37Laggard, other func(*r37Laggard) func(context.Context, int) (int, error)) stage.Stream[int] {
		b := stage.Tee(source.Slice(ints(4)), 2)
		return stage.Merge(stage.Map(b[0], lagMap(l), stage.Workers(1)), stage.Map(b[1], other(l), stage.Workers(1)))
	}
	count := func(_ *r37Laggard, s stage.Stream[int]) error {
		_, err := sink.Count(context.Background(), s)
		return err
	}
	cases := []struct {
		name  string
		build func(l *r37Laggard) stage.Stream[int]
		run   func(l *r37Laggard, s stage.Stream[int]) error
	}{
		{"tee-branch", func(l *r37Laggard) stage.Stream[int] { return teeLag(l, failer) }, count},
		{"merge-input-next", func(l *r37Laggard) stage.Stream[int] {
			i := 0
			a := source.Func(func(context.Context) (int, error) {
				if i++; i == 2 {
					l.hold()
				}
				return i, nil
			})
			return stage.Merge(a, ending(l))
		}, count},
		{"filter", func(l *r37Laggard) stage.Stream[int] {
			return stage.Merge(stage.Filter(source.Slice(ints(3)), func(context.Context, int) (bool, error) { l.hold(); return true, nil }, stage.Workers(2)), ending(l))
		}, count},
		{"handler", func(l *r37Laggard) stage.Stream[int] {
			return stage.Merge(stage.Map(source.Slice(ints(3)), func(context.Context, int) (int, error) { return 0, errors.New("x") }, stage.Workers(2),
				stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { l.hold(); return nil }))), ending(l))
		}, count},
		{"key", func(l *r37Laggard) stage.Stream[int] {
			return stage.Merge(stage.Map(source.Slice(ints(3)), double, stage.Workers(2), stage.KeyBy(func(v int) int { l.hold(); return v })), ending(l))
		}, count},
		{"concurrent-task", func(l *r37Laggard) stage.Stream[int] {
			task := func(context.Context) (int, error) { l.hold(); return 1, nil }
			return stage.Merge(stage.Concurrent(source.Slice([]func(context.Context) (int, error){task, task})), ending(l))
		}, count},
		{"flatmap-unbatch", func(l *r37Laggard) stage.Stream[int] {
			return stage.Merge(stage.Unbatch(stage.FlatMap(source.Slice(ints(3)), func(_ context.Context, v int) ([][]int, error) { l.hold(); return [][]int{{v}}, nil })), ending(l))
		}, count},
		{"first", func(l *r37Laggard) stage.Stream[int] { return teeLag(l, passer) },
			func(_ *r37Laggard, s stage.Stream[int]) error {
				_, _, err := sink.First(context.Background(), s)
				return err
			}},
		{"all-break", func(l *r37Laggard) stage.Stream[int] { return teeLag(l, passer) },
			func(_ *r37Laggard, s stage.Stream[int]) error {
				for range sink.All(context.Background(), s) {
					break
				}
				return nil
			}},
		{"chan-sink", func(l *r37Laggard) stage.Stream[int] { return teeLag(l, failer) },
			func(_ *r37Laggard, s stage.Stream[int]) error {
				return sink.Chan(context.Background(), s, make(chan int, 100))
			}},
		{"errstop", func(l *r37Laggard) stage.Stream[int] { return teeLag(l, passer) },
			func(_ *r37Laggard, s stage.Stream[int]) error {
				return stage.Run(context.Background(), s, func(context.Context, int, error) error { return stage.ErrStop })
			}},
		{"cancel", func(l *r37Laggard) stage.Stream[int] {
			b := stage.Tee(source.Slice(ints(4)), 2)
			return stage.Merge(stage.Map(b[0], lagMap(l), stage.Workers(1)), b[1])
		}, func(l *r37Laggard, s stage.Stream[int]) error {
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-l.entered; cancel(); l.fire() }()
			return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
		}},
		{"callback-panic", func(l *r37Laggard) stage.Stream[int] { return teeLag(l, passer) },
			func(l *r37Laggard, s stage.Stream[int]) (err error) {
				defer func() {
					if recover() == nil {
						err = errors.New("the callback's panic did not continue")
					}
				}()
				return stage.Run(context.Background(), s, func(context.Context, int, error) error { <-l.fired; panic("callback") })
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newR37Laggard()
			s := c.build(l)
			returned := make(chan struct{})
			go func() {
				select {
				case <-l.fired:
					select {
					case <-returned:
					case <-time.After(200 * time.Millisecond):
					}
				case <-returned:
				}
				close(l.gate)
			}()
			var running int32
			r37Do(t, "sink", func() {
				c.run(l, s)
				running = l.running.Load()
				close(returned)
			})
			if running != 0 {
				t.Errorf("%d user functions were still running when the sink returned", running)
			}
		})
	}
}
