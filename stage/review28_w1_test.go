package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r28Kinds builds a stage of one worker of each kind around call, which
// is told each item.
var r28Kinds = []string{"map", "mapOrdered", "filter", "flatmap", "concurrent", "apply", "mapRetry", "mapKeyBy", "mapBuffer"}

func r28Build(kind string, in stage.Stream[int], call func(ctx context.Context, v int) error, more ...stage.Option) stage.Stream[int] {
	opts := append([]stage.Option{stage.Workers(1), stage.Name("w1")}, more...)
	switch kind {
	case "map":
		return stage.Map(in, func(ctx context.Context, v int) (int, error) { return v, call(ctx, v) }, opts...)
	case "mapOrdered":
		return stage.Map(in, func(ctx context.Context, v int) (int, error) { return v, call(ctx, v) }, append(opts, stage.Ordered())...)
	case "mapRetry":
		return stage.Map(in, func(ctx context.Context, v int) (int, error) { return v, call(ctx, v) }, append(opts, stage.Retry(3, 0))...)
	case "mapKeyBy":
		return stage.Map(in, func(ctx context.Context, v int) (int, error) { return v, call(ctx, v) }, append(opts, stage.KeyBy(func(v int) int { return v }))...)
	case "mapBuffer":
		return stage.Map(in, func(ctx context.Context, v int) (int, error) { return v, call(ctx, v) }, append(opts, stage.Buffer(2))...)
	case "filter":
		return stage.Filter(in, func(ctx context.Context, v int) (bool, error) { return true, call(ctx, v) }, opts...)
	case "flatmap":
		return stage.FlatMap(in, func(ctx context.Context, v int) ([]int, error) { return []int{v}, call(ctx, v) }, opts...)
	case "apply":
		return stage.Apply(in, func(ctx context.Context, v int, emit func(int) bool) error {
			err := call(ctx, v)
			emit(v)
			return err
		}, opts...)
	case "concurrent":
		tasks := stage.Map(in, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
			return func(ctx context.Context) (int, error) { return v, call(ctx, v) }, nil
		}, stage.Workers(1))
		return stage.Concurrent(tasks, opts...)
	}
	panic(kind)
}

// r28Sources: the same items 0..n-1 from a slice (fusable), a NeverWaits
// Func, an Interruptible channel, and a plain waiting Source.
var r28SourceKinds = []string{"slice", "neverWaits", "chan", "waiting"}

func r28Src(kind string, n int) stage.Stream[int] {
	switch kind {
	case "slice":
		return source.Slice(ints(n))
	case "neverWaits", "waiting":
		s := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			i := 0
			return func(context.Context) (int, error) {
				if i >= n {
					return 0, io.EOF
				}
				i++
				return i - 1, nil
			}, nil
		})
		if kind == "neverWaits" {
			return stage.NeverWaits(s)
		}
		return s
	case "chan":
		ch := make(chan int, n)
		for i := range n {
			ch <- i
		}
		close(ch)
		return source.Chan(ch)
	}
	panic(kind)
}

// TestReview28OneWorkerNoStartAfterOwnCancel: in a stage of one worker, the
// run is cancelled while item 0 is being processed (by its own function, or
// by its watcher, user code, after the call); the worker, whichever goroutine
// it is, must start no further item.
func TestReview28OneWorkerNoStartAfterOwnCancel(t *testing.T) {
	for _, kind := range r28Kinds {
		for _, sk := range r28SourceKinds {
			for _, trig := range []string{"fnCancel", "fnFailFast", "finishedPanic", "finishedCancel", "receivedPanic", "receivedCancel"} {
				t.Run(kind+"/"+sk+"/"+trig, func(t *testing.T) {
					var calls r28Calls
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					var once sync.Once
					fire := func() {
						switch trig {
						case "finishedPanic", "receivedPanic":
							panic("review28 watcher")
						default:
							cancel()
						}
					}
					obs := &r28Obs{stage: func(i stage.Info) bool { return i.Name == "w1" }}
					switch trig {
					case "finishedPanic", "finishedCancel":
						obs.finished = func(stage.Info, error) { once.Do(fire) }
					case "receivedPanic", "receivedCancel":
						obs.received = func(stage.Info) { once.Do(fire) }
					}
					ctx = stage.Observe(ctx, obs)
					s := r28Build(kind, r28Src(sk, 20), func(_ context.Context, v int) error {
						calls.add(v)
						if v == 0 {
							switch trig {
							case "fnCancel":
								cancel()
							case "fnFailFast":
								return errR28
							}
						}
						return nil
					})
					var err error
					done := r28Go(func() { err = sink.ForEach(ctx, s, func(context.Context, int) error { return nil }) })
					r28Wait(t, done, "the sink")
					got := calls.list()
					for _, v := range got {
						if v != 0 {
							t.Errorf("calls = %v: an item after 0 started once the run was cancelled", got)
							break
						}
					}
					if len(got) > 0 && (trig == "receivedPanic" || trig == "receivedCancel") {
						t.Logf("note: item 0's function was called after Received cancelled the run (calls %v)", got)
					}
					if err == nil {
						t.Errorf("err = nil, want the run's failure")
					}
				})
			}
		}
	}
}

// TestReview28OneWorkerNoStartAfterSinkStop: the sink ends the run at item
// 0 (an error, ErrStop, or a cancel of the caller's ctx from its callback)
// while item 1's call waits for ctx.Done(); no item after 1 may start.
func TestReview28OneWorkerNoStartAfterSinkStop(t *testing.T) {
	for _, kind := range r28Kinds {
		for _, sk := range r28SourceKinds {
			for _, trig := range []string{"sinkError", "sinkErrStop", "sinkCancel", "sinkPanic"} {
				t.Run(kind+"/"+sk+"/"+trig, func(t *testing.T) {
					var calls r28Calls
					var stopped atomic.Bool
					var late r28Calls
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					s := r28Build(kind, r28Src(sk, 20), func(ctx context.Context, v int) error {
						calls.add(v)
						if stopped.Load() && v >= 2 {
							late.add(v)
						}
						if v == 1 {
							<-ctx.Done()
							return ctx.Err()
						}
						return nil
					})
					var err error
					done := r28Go(func() {
						err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
							if v != 0 {
								t.Errorf("the sink got item %d after it ended the run", v)
								return nil
							}
							stopped.Store(true)
							switch trig {
							case "sinkError":
								return errR28
							case "sinkErrStop":
								return stage.ErrStop
							case "sinkPanic":
								panic("review28 sink")
							}
							cancel()
							return nil
						})
					})
					r28Wait(t, done, "the sink")
					if got := late.list(); len(got) > 0 {
						t.Errorf("items %v started after the sink ended the run (all calls %v)", got, calls.list())
					}
					switch trig {
					case "sinkError":
						if !errors.Is(err, errR28) {
							t.Errorf("err = %v", err)
						}
					case "sinkErrStop":
						if err != nil {
							t.Errorf("err = %v", err)
						}
					case "sinkCancel":
						if !errors.Is(err, context.Canceled) {
							t.Errorf("err = %v", err)
						}
					}
				})
			}
		}
	}
}

var _ = fmt.Sprint
