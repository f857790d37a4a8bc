package sink_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r61GoexitWatcher struct{ onFinished bool }

func (w r61GoexitWatcher) Received() {}
func (w r61GoexitWatcher) Finished(time.Duration, error) {
	if w.onFinished {
		runtime.Goexit()
	}
}
func (w r61GoexitWatcher) Closed() {}

type r61GoexitObs struct{ name string }

func (o r61GoexitObs) Stage(info stage.Info) stage.Watcher {
	return r61GoexitWatcher{onFinished: info.Name == o.name}
}

// stage.ErrGoexit: "ErrGoexit is the error of a run one of whose goroutines
// was ended by runtime.Goexit in user code ...: the item it held is lost, so
// the run fails with ErrGoexit rather than return what it has as if complete".
// Every user function here runs on a goroutine of the run (stages of more
// than one worker with a Buffer keep their calls, and the source's next, on
// goroutines of their own: "a stage of more than one worker calls it from
// goroutines of its own"; Buffer "always runs all of its workers as
// goroutines of its own").
func TestReview61BBGoexitEverywhere(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		id := func(_ context.Context, v int) (int, error) { return v, nil }
		ge := func(v int) {
			if v == 2 {
				runtime.Goexit()
			}
		}
		opts := []stage.Option{stage.Workers(3), stage.Buffer(1)}
		cases := map[string]func() (stage.Stream[int], context.Context){
			"key": func() (stage.Stream[int], context.Context) {
				return stage.Map(source.Slice([]int{0, 1, 2, 3}), id, append(opts, stage.KeyBy(func(v int) int { ge(v); return v }))...), context.Background()
			},
			"handle": func() (stage.Stream[int], context.Context) {
				return stage.Map(source.Slice([]int{0, 1, 2, 3}), func(_ context.Context, v int) (int, error) { return 0, errR61 },
					append(opts, stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error { ge(e.Input.(int)); return nil })))...), context.Background()
			},
			"budget": func() (stage.Stream[int], context.Context) {
				return stage.Map(source.Slice([]int{0, 1, 2, 3}), func(_ context.Context, v int) (int, error) { return 0, errR61 },
					append(opts, stage.OnError(stage.Budget(10, func(_ context.Context, e *stage.Error) error { ge(e.Input.(int)); return nil })))...), context.Background()
			},
			"retryif": func() (stage.Stream[int], context.Context) {
				return stage.Map(source.Slice([]int{0, 1, 2, 3}), func(_ context.Context, v int) (int, error) {
					if v == 2 {
						return 0, errR61
					}
					return v, nil
				}, append(opts, stage.RetryIf(3, 0, func(error) bool { runtime.Goexit(); return true }))...), context.Background()
			},
			"next": func() (stage.Stream[int], context.Context) {
				i := 0
				return stage.Map(source.Func(func(context.Context) (int, error) {
					i++
					ge(i)
					if i > 4 {
						return 0, io.EOF
					}
					return i, nil
				}), id, opts...), context.Background()
			},
			"indexed-at": func() (stage.Stream[int], context.Context) {
				return stage.Map(stage.Indexed(4, func(i int) int { ge(i); return i }), id, opts...), context.Background()
			},
			"flatmap-ordered": func() (stage.Stream[int], context.Context) {
				return stage.FlatMap(source.Slice([]int{0, 1, 2, 3}), func(_ context.Context, v int) ([]int, error) { ge(v); return []int{v, v}, nil }, append(opts, stage.Ordered())...), context.Background()
			},
			"tee-branch": func() (stage.Stream[int], context.Context) {
				b := stage.Tee(source.Slice([]int{0, 1, 2, 3}), 2)
				return stage.Merge(b[0], stage.Map(b[1], func(_ context.Context, v int) (int, error) { ge(v); return v, nil }, opts...)), context.Background()
			},
			"batch-consumer": func() (stage.Stream[int], context.Context) {
				bs := stage.Batch(source.Slice([]int{0, 1, 2, 3, 4, 5}), 1, 0)
				return stage.Map(bs, func(_ context.Context, v []int) (int, error) { ge(v[0]); return v[0], nil }, opts...), context.Background()
			},
			"watcher-finished": func() (stage.Stream[int], context.Context) {
				return stage.Map(source.Slice([]int{0, 1, 2, 3}), id, append(opts, stage.Name("w"))...), stage.Observe(context.Background(), r61GoexitObs{"w"})
			},
		}
		for name, mk := range cases {
			t.Run(name, func(t *testing.T) {
				s, ctx := mk()
				var n int
				var err error
				runcheck.Run(t, name, func() { n, err = sink.Count(ctx, s) })
				if !errors.Is(err, stage.ErrGoexit) {
					t.Fatalf("Count = %d, %v; want ErrGoexit", n, err)
				}
			})
		}
	})
}
