package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR28 = errors.New("review28: item failed")

// r28CountingSource yields 0..n-1 and closes reached once next has
// produced need items.
func r28CountingSource(n, need int, reached chan struct{}) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i >= n {
				return 0, io.EOF
			}
			i++
			if i == need {
				close(reached)
			}
			return i - 1, nil
		}, nil
	})
}

// TestReview28KeyByWaitingNotStartedAfterCancel: items waiting for their
// KeyBy key are abandoned once the run is cancelled, whatever cancelled it:
// the worker that finishes the key's running item takes no waiting item
// ("no new item starts"). Item 0 holds the key until it sees ctx.Done(),
// which only the trigger closes, so every later call is a violation.
func TestReview28KeyByWaitingNotStartedAfterCancel(t *testing.T) {
	triggers := []string{"self", "ctx", "mergeFailFast", "teeFailFast", "sinkError", "sinkErrStop", "watcherPanic"}
	type km struct {
		w       int
		ordered bool
	}
	for _, m := range []km{{3, false}, {3, true}, {-1, false}, {-1, true}} {
		for _, trig := range triggers {
			t.Run(fmt.Sprintf("w=%d/ordered=%v/%s", m.w, m.ordered, trig), func(t *testing.T) {
				const n = 8
				var calls r28Calls
				entered := make(chan struct{})
				reached := make(chan struct{})
				fire := make(chan struct{})
				need := 3
				if trig == "teeFailFast" {
					need = 5
				}
				src := r28CountingSource(n, need, reached)
				keyed := func(in stage.Stream[int]) stage.Stream[int] {
					opts := []stage.Option{stage.Workers(m.w), stage.Name("keyed"),
						stage.KeyBy(func(int) int { return 0 })}
					if m.ordered {
						opts = append(opts, stage.Ordered())
					}
					return stage.Map(in, func(ctx context.Context, v int) (int, error) {
						calls.add(v)
						if v == 0 {
							close(entered)
							if trig == "self" {
								<-fire
								return 0, errR28
							}
							<-ctx.Done()
						}
						return v, nil
					}, opts...)
				}
				trigger := func(context.Context, int) (int, error) {
					<-fire
					return -1, nil
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var s stage.Stream[int]
				switch trig {
				case "self", "ctx":
					s = keyed(src)
				case "mergeFailFast":
					s = stage.Merge(keyed(src), stage.Map(source.Slice([]int{-1}), func(context.Context, int) (int, error) {
						<-fire
						return 0, errR28
					}))
				case "teeFailFast":
					b := stage.Tee(src, 2)
					s = stage.Merge(keyed(b[0]), stage.Map(b[1], func(_ context.Context, v int) (int, error) {
						if v == 0 {
							<-fire
							return 0, errR28
						}
						return v, nil
					}, stage.Workers(8)))
				case "sinkError", "sinkErrStop":
					s = stage.Merge(keyed(src), stage.Map(source.Slice([]int{-1}), trigger))
				case "watcherPanic":
					s = stage.Merge(keyed(src), stage.Map(source.Slice([]int{-1}), trigger, stage.Name("trigger")))
					ctx = stage.Observe(ctx, &r28Obs{
						stage:    func(i stage.Info) bool { return i.Name == "trigger" },
						finished: func(stage.Info, error) { panic("review28 watcher") },
					})
				}
				var err error
				done := r28Go(func() {
					err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
						if v == -1 {
							switch trig {
							case "sinkError":
								return errR28
							case "sinkErrStop":
								return stage.ErrStop
							}
						}
						return nil
					})
				})
				r28Wait(t, entered, "item 0's call")
				r28Wait(t, reached, "the stage to take the items that wait for the key")
				if trig == "ctx" {
					cancel()
				} else {
					close(fire)
				}
				r28Wait(t, done, "the sink")
				if got := calls.list(); !slices.Equal(got, []int{0}) {
					t.Errorf("keyed calls = %v, want [0] only: an item that waited for its key started after the run was cancelled", got)
				}
				switch trig {
				case "self", "mergeFailFast", "teeFailFast", "sinkError":
					if !errors.Is(err, errR28) {
						t.Errorf("err = %v, want errR28", err)
					}
				case "ctx":
					if !errors.Is(err, context.Canceled) {
						t.Errorf("err = %v, want Canceled", err)
					}
				case "sinkErrStop":
					if err != nil {
						t.Errorf("err = %v, want nil", err)
					}
				case "watcherPanic":
					var pe *stage.PanicError
					if !errors.As(err, &pe) {
						t.Errorf("err = %v, want a *PanicError", err)
					}
				}
			})
		}
	}
}

// TestReview28FusedOutputsNotHandedAfterWatcherCancel: a FlatMap over a
// one-item input runs in its consumer's goroutine from the start; its outputs
// are in that goroutine's hands when its watcher's Finished (user code)
// panics and so cancels the run. The consumer, a Map of one worker, must
// start none of them. g(c) waiting for ctx.Done covers the unfused path: an
// output that g took before Finished is then the only one that may start.
func TestReview28FusedOutputsNotHandedAfterWatcherCancel(t *testing.T) {
	for _, kind := range []string{"flatmap", "flatmap3", "unbatch", "unbatchAfterMap"} {
		for _, how := range []string{"finishedPanic", "finishedCancel"} {
			t.Run(kind+"/"+how, func(t *testing.T) {
				var fired atomic.Bool
				var late r28Calls
				var started r28Calls
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var once sync.Once
				ctx = stage.Observe(ctx, &r28Obs{
					stage: func(i stage.Info) bool { return i.Name == "fan" || i.Kind == "unbatch" },
					finished: func(stage.Info, error) {
						once.Do(func() {
							fired.Store(true)
							if how == "finishedCancel" {
								cancel()
								return
							}
							panic("review28 watcher")
						})
					},
				})
				var fan stage.Stream[int]
				switch kind {
				case "flatmap":
					fan = stage.FlatMap(source.Slice([]int{0}), func(context.Context, int) ([]int, error) {
						return []int{0, 1, 2, 3, 4, 5}, nil
					}, stage.Name("fan"))
				case "flatmap3":
					fan = stage.FlatMap(source.Slice([]int{0, 1, 2}), func(_ context.Context, v int) ([]int, error) {
						return []int{10 * v, 10*v + 1, 10*v + 2, 10*v + 3}, nil
					}, stage.Name("fan"), stage.Workers(1))
				case "unbatch":
					fan = stage.Unbatch(source.Slice([][]int{{0, 1, 2, 3, 4, 5}}))
				case "unbatchAfterMap":
					fan = stage.Unbatch(stage.Map(source.Slice([]int{0}), func(context.Context, int) ([]int, error) {
						return []int{0, 1, 2, 3, 4, 5}, nil
					}))
				}
				g := stage.Map(fan, func(ctx context.Context, v int) (int, error) {
					started.add(v)
					if fired.Load() {
						late.add(v)
					}
					if v%10 == 2 {
						<-ctx.Done() // only the watcher ends this wait
					}
					return v, nil
				}, stage.Workers(1))
				var err error
				done := r28Go(func() { _, err = sink.Count(ctx, g) })
				r28Wait(t, done, "the sink")
				if got := late.list(); len(got) > 0 {
					t.Errorf("g started %v after the watcher cancelled the run (all starts: %v)", got, started.list())
				}
				if how == "finishedPanic" {
					var pe *stage.PanicError
					if !errors.As(err, &pe) {
						t.Errorf("err = %v, want a *PanicError", err)
					}
				} else if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want Canceled", err)
				}
			})
		}
	}
}
