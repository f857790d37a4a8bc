package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r55Where names the user function that panics (or calls Goexit).
var r55Wheres = []string{
	"map", "filter", "flatmap", "apply", "concurrent", "key", "handle", "retryif",
	"open", "next", "stop", "at", "done",
	"obs-stage", "obs-received", "obs-finished", "obs-closed",
	"foreach", "reduce",
}

// r55Hurt is what a user function does at its chosen call.
type r55Hurt func()

// r55PanicPipeline builds a tiny pipeline whose function `where` calls hurt
// at item k (or at its k-th call), runs it with sink ForEach (or Reduce), and
// returns the sink's error and whether it returned.
func r55PanicPipeline(where string, n, k, w int, ordered bool, buffer int, hurt r55Hurt) (returned bool, stops *atomic.Int64, err error) {
	stops = &atomic.Int64{}
	at := func(x int) {
		if x == k {
			hurt()
		}
	}
	var src stage.Stream[int]
	if where == "at" {
		src = stage.Indexed(n, func(i int) int { at(i); return i })
	} else {
		src = stage.NeverWaits(stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
			if where == "open" {
				hurt()
			}
			i := 0
			return func(context.Context) (int, stage.Ack, error) {
					if i >= n {
						return 0, nil, io.EOF
					}
					if where == "next" {
						at(i)
					}
					i++
					return i - 1, r55HurtAck{where == "done" && i-1 == k, hurt}, nil
				}, func() {
					stops.Add(1)
					if where == "stop" {
						hurt()
					}
				}
		}))
	}
	opts := r55Opts(w, ordered, buffer)
	errPlanned := errors.New("planned")
	switch where {
	case "key":
		opts = append(opts, stage.KeyBy(func(x int) int { at(x); return x % 2 }))
	case "handle":
		opts = append(opts, stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error { hurt(); return nil })))
	case "retryif":
		opts = append(opts, stage.RetryIf(2, 0, func(error) bool { hurt(); return true }))
	}
	var s stage.Stream[int]
	switch where {
	case "filter":
		s = stage.Filter(src, func(_ context.Context, x int) (bool, error) { at(x); return true, nil }, opts...)
	case "flatmap":
		s = stage.FlatMap(src, func(_ context.Context, x int) ([]int, error) { at(x); return []int{x}, nil }, opts...)
	case "apply":
		s = stage.Apply(src, func(_ context.Context, x int, emit func(int) bool) error { at(x); emit(x); return nil }, opts...)
	case "concurrent":
		tasks := stage.Map(src, func(_ context.Context, x int) (func(context.Context) (int, error), error) {
			return func(context.Context) (int, error) { at(x); return x, nil }, nil
		}, stage.Workers(1))
		s = stage.Concurrent(tasks, opts...)
	default:
		s = stage.Map(src, func(_ context.Context, x int) (int, error) {
			if where == "map" {
				at(x)
			}
			if (where == "handle" || where == "retryif") && x == k {
				return 0, errPlanned
			}
			return x, nil
		}, opts...)
	}
	ctx := context.Background()
	if len(where) > 4 && where[:4] == "obs-" {
		var calls atomic.Int64
		ctx = stage.Observe(ctx, &r55HurtObserver{where: where, k: int64(k), calls: &calls, hurt: hurt})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		switch where {
		case "reduce":
			i := 0
			_, err = sink.Reduce(ctx, s, 0, func(acc, v int) int {
				if i == k {
					hurt()
				}
				i++
				return acc + v
			})
		default:
			i := 0
			err = sink.ForEach(ctx, s, func(context.Context, int) error {
				if where == "foreach" && i == k {
					hurt()
				}
				i++
				return nil
			})
		}
		returned = true
	}()
	<-done
	return returned, stops, err
}

type r55HurtAck struct {
	hurtIt bool
	hurt   r55Hurt
}

func (a r55HurtAck) Done(error) {
	if a.hurtIt {
		a.hurt()
	}
}

type r55HurtObserver struct {
	where string
	k     int64
	calls *atomic.Int64
	hurt  r55Hurt
}

func (o *r55HurtObserver) Stage(stage.Info) stage.Watcher {
	if o.where == "obs-stage" {
		o.hurt()
	}
	return o
}
func (o *r55HurtObserver) Received() {
	if o.where == "obs-received" && o.calls.Add(1)-1 == o.k {
		o.hurt()
	}
}
func (o *r55HurtObserver) Finished(time.Duration, error) {
	if o.where == "obs-finished" && o.calls.Add(1)-1 == o.k {
		o.hurt()
	}
}
func (o *r55HurtObserver) Closed() {
	if o.where == "obs-closed" {
		o.hurt()
	}
}

// TestReview55_PanicEverywhere attacks "A panic in your code never crashes
// the process. In a stage function, a KeyBy key function, a source, a sink
// callback, an Ack, an observer ...: it becomes an error (*stage.PanicError
// inside a *stage.Error, a *stage.SourceError, or the observer's error). So
// does ... panic(nil)", over tiny runs, each worker count, and the paths where
// calls run in the consumer's goroutine; plus "stop is called once" after it.
func TestReview55_PanicEverywhere(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, where := range r55Wheres {
			for _, val := range []any{"boom", io.ErrUnexpectedEOF, nil} {
				for n := 1; n <= 4; n++ {
					for _, w := range []int{1, 2, 4, -1} {
						for _, ordered := range []bool{false, true} {
							for _, buf := range []int{0, 1} {
								for k := range n {
									if k > 0 && (where == "open" || where == "stop" || where == "obs-stage" || where == "obs-closed") {
										continue
									}
									label := fmt.Sprintf("%s/%v/n=%d/w=%d/ordered=%v/buf=%d/k=%d", where, val, n, w, ordered, buf, k)
									var err error
									var returned bool
									var stops *atomic.Int64
									runcheck.NoHang(t, label, func() {
										returned, stops, err = r55PanicPipeline(where, n, k, w, ordered, buf, func() { panic(val) })
									})
									if !returned {
										t.Fatalf("%s: the sink did not return", label)
									}
									var pe *stage.PanicError
									if !errors.As(err, &pe) {
										t.Fatalf("%s: err %v, want a *PanicError", label, err)
									}
									if val != nil && pe.Value != val {
										t.Fatalf("%s: panic value %v, want %v", label, pe.Value, val)
									}
									if val == io.ErrUnexpectedEOF && !errors.Is(err, io.ErrUnexpectedEOF) {
										t.Fatalf("%s: errors.Is does not see the panic's error: %v", label, err)
									}
									var se *stage.Error
									var src *stage.SourceError
									switch where {
									case "open", "next", "stop", "at", "done":
										if !errors.As(err, &src) {
											t.Fatalf("%s: err %v, want a *SourceError", label, err)
										}
									case "foreach", "reduce":
										if !errors.As(err, &se) || se.Stage != where || se.Index != k {
											t.Fatalf("%s: err %v (%+v), want a *stage.Error of stage %q, index %d", label, err, se, where, k)
										}
									case "map", "filter", "flatmap", "apply", "concurrent", "key", "handle", "retryif":
										name := map[string]string{"concurrent": "concurrent#2", "apply": "apply#1", "filter": "filter#1", "flatmap": "flatmap#1"}[where]
										if name == "" {
											name = "map#1"
										}
										if !errors.As(err, &se) || se.Stage != name {
											t.Fatalf("%s: err %v (%+v), want a *stage.Error of stage %q", label, err, se, name)
										}
										if where != "concurrent" && se.Index != k {
											t.Fatalf("%s: index %d, want %d", label, se.Index, k)
										}
										wantAttempts := 1
										if where == "key" {
											wantAttempts = 0
										}
										if se.Attempts != wantAttempts {
											t.Fatalf("%s: attempts %d, want %d", label, se.Attempts, wantAttempts)
										}
									}
									if where != "at" && where != "open" && stops.Load() != 1 {
										t.Fatalf("%s: stop called %d times", label, stops.Load())
									}
								}
							}
						}
					}
				}
			}
		}
	})
}

// TestReview55_GoexitEverywhere attacks "A t.Fatal (runtime.Goexit) in a
// function that ran on a goroutine of the run fails it with stage.ErrGoexit
// ...; every source is still stopped", and (ErrGoexit) "A function that calls
// Goexit on the sink's own goroutine ends that goroutine: the sink does not
// return ... and the run's goroutines exit", for every user function: either
// the sink returns ErrGoexit or its goroutine ended; where the docs put the
// function on a goroutine of the stage's own (Buffer, KeyBy), the sink must
// return; where they put it on the sink's goroutine (its callback), it must
// not.
func TestReview55_GoexitEverywhere(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, where := range r55Wheres {
			for n := 1; n <= 4; n++ {
				for _, w := range []int{1, 2, 4, -1} {
					for _, buf := range []int{0, 1} {
						for k := range n {
							if k > 0 && (where == "open" || where == "stop" || where == "obs-stage" || where == "obs-closed") {
								continue
							}
							label := fmt.Sprintf("%s/n=%d/w=%d/buf=%d/k=%d", where, n, w, buf, k)
							var err error
							var returned bool
							var stops *atomic.Int64
							runcheck.NoHang(t, label, func() {
								returned, stops, err = r55PanicPipeline(where, n, k, w, false, buf, runtime.Goexit)
							})
							switch where {
							case "foreach", "reduce", "open", "stop", "obs-stage", "obs-closed":
								// The sink's goroutine (ErrGoexit's doc lists them): the
								// callback (stage.Run calls it in the caller's
								// goroutine), a source's open and stop, Observer.Stage
								// and Closed ("from the sink's goroutine").
								if returned {
									t.Fatalf("%s: the sink returned %v after a Goexit on its own goroutine", label, err)
								}
							case "key":
								if !returned {
									t.Fatalf("%s: KeyBy keeps calls on the stage's goroutines, yet the sink's goroutine ended", label)
								}
							case "map", "handle", "retryif":
								if buf > 0 && !returned {
									t.Fatalf("%s: Buffer keeps calls on the stage's goroutines, yet the sink's goroutine ended", label)
								}
							}
							if returned && !errors.Is(err, stage.ErrGoexit) {
								t.Fatalf("%s: err %v, want ErrGoexit", label, err)
							}
							if where != "at" && where != "open" {
								runcheck.NoHang(t, label+" stop", func() {
									for stops.Load() == 0 {
										time.Sleep(time.Millisecond)
									}
								})
								if stops.Load() != 1 {
									t.Fatalf("%s: stop called %d times", label, stops.Load())
								}
							}
						}
					}
				}
			}
		}
	})
}
