package stage_test

// Cancellation at every point, early exit, and runtime.Goexit in every
// user function of the combinators and options.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r67Shape is a pipeline shape built over an input.
type r67Shape struct {
	name  string
	build func(in stage.Stream[int]) stage.Stream[int]
}

func r67ToTask(_ context.Context, v int) (func(context.Context) (int, error), error) {
	return func(context.Context) (int, error) { return v, nil }, nil
}

func r67Keep(context.Context, int) (bool, error) { return true, nil }

var r67Shapes = []r67Shape{
	{"map w4", func(in stage.Stream[int]) stage.Stream[int] { return stage.Map(in, r67Id, stage.Workers(4)) }},
	{"map ordered w4", func(in stage.Stream[int]) stage.Stream[int] {
		return stage.Map(in, r67Id, stage.Workers(4), stage.Ordered())
	}},
	{"map w1", func(in stage.Stream[int]) stage.Stream[int] { return stage.Map(in, r67Id, stage.Workers(1)) }},
	{"map w-1 buffer", func(in stage.Stream[int]) stage.Stream[int] {
		return stage.Map(in, r67Id, stage.Workers(-1), stage.Buffer(5))
	}},
	{"filter", func(in stage.Stream[int]) stage.Stream[int] { return stage.Filter(in, r67Keep, stage.Workers(3)) }},
	{"flatmap", func(in stage.Stream[int]) stage.Stream[int] {
		return stage.FlatMap(in, func(_ context.Context, v int) ([]int, error) { return []int{v, v}, nil }, stage.Workers(2))
	}},
	{"concurrent", func(in stage.Stream[int]) stage.Stream[int] {
		return stage.Concurrent(stage.Map(in, r67ToTask, stage.Workers(1)), stage.Workers(3), stage.Ordered())
	}},
	{"keyby", func(in stage.Stream[int]) stage.Stream[int] {
		return stage.Map(in, r67Id, stage.Workers(4), stage.KeyBy(func(v int) int { return v % 3 }))
	}},
	{"batch unbatch", func(in stage.Stream[int]) stage.Stream[int] { return stage.Unbatch(stage.Batch(in, 3, 0)) }},
	{"batch tiny timeout", func(in stage.Stream[int]) stage.Stream[int] {
		return stage.Unbatch(stage.Batch(in, 3, time.Nanosecond))
	}},
	{"tee merge", func(in stage.Stream[int]) stage.Stream[int] {
		bs := stage.Tee(in, 2)
		return stage.Merge(stage.Map(bs[0], r67Id), stage.Filter(bs[1], r67Keep))
	}},
	{"merge", func(in stage.Stream[int]) stage.Stream[int] {
		return stage.Merge(stage.Map(in, r67Id), r67Src(-1, nil))
	}},
	{"until", func(in stage.Stream[int]) stage.Stream[int] {
		return stage.Map(stage.Until(in, context.Background()), r67Id)
	}},
	{"options", func(in stage.Stream[int]) stage.Stream[int] {
		return stage.Map(in, r67Id, stage.Retry(2, 0), stage.RateLimit(math.Inf(1), 1), stage.Timeout(time.Hour), stage.Workers(2))
	}},
	{"handle", func(in stage.Stream[int]) stage.Stream[int] {
		return stage.Map(in, func(_ context.Context, v int) (int, error) {
			if v%2 == 1 {
				return 0, r67Err
			}
			return v, nil
		}, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	}},
}

// Cancelling the caller's ctx from the sink's loop: "Cancelling the
// caller's ctx ... cancels the run"; "from the moment its Done channel is
// closed no source's next is called and the sink delivers nothing more, as
// with a standard context"; All: "If the run fails, the last pair is (zero,
// err) with the error that ended it", one for which errors.Is(err,
// context.Canceled) holds. Every shape, both context kinds.
func TestReview67CancelFromLoopNothingAfter(t *testing.T) {
	for _, sh := range r67Shapes {
		for _, kind := range r67CtxKinds {
			name := sh.name + "/" + kind
			ctx, cancel := r67Parent(kind)
			s := sh.build(r67Src(-1, nil))
			var after []string
			var last error
			n := 0
			cancelled := false
			r67Guard(t, name, func() {
				for v, err := range sink.All(ctx, s) {
					if cancelled {
						if err == nil {
							after = append(after, fmt.Sprint(v))
						}
						last = err
						continue
					}
					if err != nil {
						t.Errorf("%s: error before the cancel: %v", name, err)
						return
					}
					if n++; n == 5 {
						cancel()
						cancelled = true
					}
				}
			})
			if len(after) > 0 {
				t.Errorf("%s: delivered %v after the cancel", name, after)
			}
			if !errors.Is(last, context.Canceled) {
				t.Errorf("%s: the last pair's error is %v; want context.Canceled", name, last)
			}
		}
	}
}

// Early exit: "First runs s until its first item arrives, then stops the
// run and returns once every goroutine has exited"; for the shapes whose
// first item is known (input order), it is item 0.
func TestReview67FirstOverShapes(t *testing.T) {
	ordered := map[string]bool{"map ordered w4": true, "map w1": true, "batch unbatch": true, "batch tiny timeout": true, "concurrent": true}
	for _, sh := range r67Shapes {
		var nexts r67Counter
		var v int
		var ok bool
		var err error
		r67Guard(t, sh.name, func() { v, ok, err = sink.First(context.Background(), sh.build(r67Src(-1, &nexts))) })
		if !ok || err != nil || (ordered[sh.name] && v != 0) {
			t.Errorf("%s: First = %v, %v, %v", sh.name, v, ok, err)
		}
	}
	// "over a bare source, exactly one item is taken"
	var nexts r67Counter
	r67Guard(t, "bare", func() {
		v, ok, err := sink.First(context.Background(), r67Src(-1, &nexts))
		if v != 0 || !ok || err != nil {
			t.Errorf("bare: %v, %v, %v", v, ok, err)
		}
	})
	if nexts.get() != 1 {
		t.Errorf("bare source: %d items taken; want 1", nexts.get())
	}
}

// Cancellation from inside each user function: f, keep, the key function,
// the retryable predicate, a Handle's h, a task, a Tee branch's function.
// The function cancels the caller's ctx; from then on the sink delivers
// nothing, and it returns context.Canceled. For functions given a ctx, the
// function then waits for its ctx to end ("the user functions see it
// through their ctx") and checks the cause.
func TestReview67CancelInsideEachFunction(t *testing.T) {
	type fnCase struct {
		name  string
		build func(in stage.Stream[int], hit func(ctx context.Context, v int) bool) stage.Stream[int]
	}
	// hit reports whether v is the item at which to cancel; with a ctx, it
	// then waits for the ctx to end.
	cases := []fnCase{
		{"map f", func(in stage.Stream[int], hit func(context.Context, int) bool) stage.Stream[int] {
			return stage.Map(in, func(ctx context.Context, v int) (int, error) {
				if hit(ctx, v) {
					return 0, ctx.Err()
				}
				return v, nil
			}, stage.Workers(3))
		}},
		{"filter keep", func(in stage.Stream[int], hit func(context.Context, int) bool) stage.Stream[int] {
			return stage.Filter(in, func(ctx context.Context, v int) (bool, error) {
				if hit(ctx, v) {
					return true, ctx.Err()
				}
				return true, nil
			}, stage.Workers(1))
		}},
		{"flatmap f", func(in stage.Stream[int], hit func(context.Context, int) bool) stage.Stream[int] {
			return stage.FlatMap(in, func(ctx context.Context, v int) ([]int, error) {
				if hit(ctx, v) {
					return []int{v}, nil // ignores its ctx: returns a success
				}
				return []int{v}, nil
			}, stage.Workers(2), stage.Ordered())
		}},
		{"concurrent task", func(in stage.Stream[int], hit func(context.Context, int) bool) stage.Stream[int] {
			return stage.Concurrent(stage.Map(in, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
				return func(ctx context.Context) (int, error) {
					if hit(ctx, v) {
						return v, nil
					}
					return v, nil
				}, nil
			}), stage.Workers(2))
		}},
		{"key func", func(in stage.Stream[int], hit func(context.Context, int) bool) stage.Stream[int] {
			return stage.Map(in, r67Id, stage.KeyBy(func(v int) int { hit(nil, v); return v % 2 }), stage.Workers(2))
		}},
		{"retryable", func(in stage.Stream[int], hit func(context.Context, int) bool) stage.Stream[int] {
			return stage.Map(in, func(_ context.Context, v int) (int, error) {
				if v == 5 {
					return 0, &r67AttemptErr{v, 0}
				}
				return v, nil
			}, stage.RetryIf(3, 0, func(err error) bool {
				var ae *r67AttemptErr
				if errors.As(err, &ae) {
					hit(nil, ae.item)
				}
				return true
			}), stage.Workers(2))
		}},
		{"handler", func(in stage.Stream[int], hit func(context.Context, int) bool) stage.Stream[int] {
			return stage.Map(in, func(_ context.Context, v int) (int, error) {
				if v == 5 {
					return 0, r67Err
				}
				return v, nil
			}, stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error {
				hit(ctx, e.Input.(int))
				return nil
			})), stage.Workers(2))
		}},
		{"handler returns ctx error", func(in stage.Stream[int], hit func(context.Context, int) bool) stage.Stream[int] {
			return stage.Map(in, func(_ context.Context, v int) (int, error) {
				if v == 5 {
					return 0, r67Err
				}
				return v, nil
			}, stage.OnError(stage.Budget(3, func(ctx context.Context, e *stage.Error) error {
				hit(ctx, e.Input.(int))
				return ctx.Err()
			})), stage.Workers(2))
		}},
		{"tee branch", func(in stage.Stream[int], hit func(context.Context, int) bool) stage.Stream[int] {
			bs := stage.Tee(in, 2)
			slow := stage.Map(bs[0], func(ctx context.Context, v int) (int, error) {
				if hit(ctx, v) {
					return 0, ctx.Err()
				}
				return v, nil
			}, stage.Workers(1))
			return stage.Merge(slow, stage.Map(bs[1], r67Id))
		}},
		{"batch upstream", func(in stage.Stream[int], hit func(context.Context, int) bool) stage.Stream[int] {
			m := stage.Map(in, func(ctx context.Context, v int) (int, error) {
				if hit(ctx, v) {
					return 0, ctx.Err()
				}
				return v, nil
			}, stage.Workers(1))
			return stage.Unbatch(stage.Batch(m, 4, time.Hour))
		}},
	}
	for _, c := range cases {
		for _, kind := range r67CtxKinds {
			name := c.name + "/" + kind
			ctx, cancel := r67Parent(kind)
			var cancelled atomic.Bool
			var causeOK atomic.Int32 // 0 unset, 1 ok, 2 wrong
			hit := func(fctx context.Context, v int) bool {
				if v != 5 {
					return false
				}
				if cancelled.Load() {
					return true
				}
				cancel()
				cancelled.Store(true)
				if fctx != nil {
					<-fctx.Done()
					// The cause under a caller's own context type is
					// TestReview67OwnCtxCauseInFlight's: here only Err.
					if errors.Is(fctx.Err(), context.Canceled) && (kind == "own" || errors.Is(context.Cause(fctx), context.Canceled)) {
						causeOK.CompareAndSwap(0, 1)
					} else {
						causeOK.Store(2)
						t.Logf("v=%d: cause %v, err %v", v, context.Cause(fctx), fctx.Err())
					}
				}
				return true
			}
			var after []int
			var err error
			r67Guard(t, name, func() {
				err = stage.Run(ctx, c.build(r67Src(-1, nil), hit), func(_ context.Context, v int, e error) error {
					if cancelled.Load() {
						after = append(after, v)
					}
					return nil
				})
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v; want context.Canceled", name, err)
			}
			var se *stage.Error
			if errors.As(err, &se) {
				t.Errorf("%s: the cancellation came back as an item's *Error: %v", name, err)
			}
			// At most the sink's step already on its way: it looked at the
			// run just before the cancel and delivers just after (package
			// doc, Cancellation); a second delivery would break it.
			if len(after) > 1 {
				t.Errorf("%s: delivered %v after the cancel", name, after)
			}
			if causeOK.Load() == 2 {
				t.Errorf("%s: the function's ctx ended with another cause", name)
			}
		}
	}
}

// runtime.Goexit in each user function, on a stage's own goroutine
// (Buffer(1) "keeps a stage's calls on goroutines of its own"; KeyBy turns
// off the running in the consumer's goroutines; h runs "in the stage's
// worker goroutines"): "the item it held is lost, so the run fails with
// ErrGoexit". Child process: a Goexit that ends the wrong goroutine may
// hang or crash the run.
func TestReview67GoexitInEachFunction(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		exit := func(v int) {
			if v == 3 {
				r67Goexit()
			}
		}
		failing := func(_ context.Context, v int) (int, error) {
			if v == 3 {
				return 0, r67Err
			}
			return v, nil
		}
		h := func(_ context.Context, e *stage.Error) error { exit(e.Input.(int)); return nil }
		buf := stage.Buffer(1)
		cases := map[string]func(in stage.Stream[int]) stage.Stream[int]{
			"map f": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.Map(in, func(_ context.Context, v int) (int, error) { exit(v); return v, nil }, buf, stage.Workers(2))
			},
			"map f ordered": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.Map(in, func(_ context.Context, v int) (int, error) { exit(v); return v, nil }, buf, stage.Workers(3), stage.Ordered())
			},
			"filter keep": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.Filter(in, func(_ context.Context, v int) (bool, error) { exit(v); return true, nil }, buf)
			},
			"flatmap f": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.FlatMap(in, func(_ context.Context, v int) ([]int, error) { exit(v); return []int{v}, nil }, buf, stage.Workers(1))
			},
			"concurrent task": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.Concurrent(stage.Map(in, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
					return func(context.Context) (int, error) { exit(v); return v, nil }, nil
				}), buf, stage.Workers(-1))
			},
			"key func": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.Map(in, r67Id, stage.KeyBy(func(v int) int { exit(v); return v }), stage.Workers(2))
			},
			"key func ordered": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.Map(in, r67Id, stage.KeyBy(func(v int) int { exit(v); return 0 }), stage.Workers(2), stage.Ordered())
			},
			"retryable": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.Map(in, failing, stage.RetryIf(3, 0, func(error) bool { r67Goexit(); return true }), buf)
			},
			"handle h": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.Map(in, failing, stage.OnError(stage.Handle(h)), buf, stage.Workers(2))
			},
			"budget h": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.Map(in, failing, stage.OnError(stage.Budget(2, h)), buf)
			},
			"tee branch": func(in stage.Stream[int]) stage.Stream[int] {
				bs := stage.Tee(in, 2)
				return stage.Merge(stage.Map(bs[0], func(_ context.Context, v int) (int, error) { exit(v); return v, nil }, buf), bs[1])
			},
			"before batch": func(in stage.Stream[int]) stage.Stream[int] {
				return stage.Unbatch(stage.Batch(stage.Map(in, func(_ context.Context, v int) (int, error) { exit(v); return v, nil }, buf), 2, time.Hour))
			},
		}
		for name, build := range cases {
			for _, src := range []string{"slice", "source"} {
				in := source.Slice(r67Ints(10))
				if src == "source" {
					in = r67Src(10, nil)
				}
				_, before := runcheck.Goroutines()
				err, returned := r67SinkGoroutine(t, func() error {
					_, err := sink.Slice(context.Background(), build(in))
					return err
				})
				if !returned {
					t.Errorf("%s/%s: the sink's goroutine was ended by Goexit; the function was to run on a stage's own goroutine", name, src)
				} else if !errors.Is(err, stage.ErrGoexit) {
					t.Errorf("%s/%s: %v; want ErrGoexit", name, src, err)
				}
				r67NoLeakSince(t, name, before)
			}
		}
	})
}

// Goexit in a function that may run on the sink's goroutine (a stage of
// one worker without a Buffer over a slice, whose calls may run in its
// consumer's goroutine): either the sink returns ErrGoexit, or its
// goroutine ends ("the sink does not return ... and the run's goroutines
// exit"). Either way no goroutine of the run is left.
func TestReview67GoexitMaybeOnSinkGoroutine(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		shapes := map[string]func(f func(context.Context, int) (int, error)) stage.Stream[int]{
			"map w1 slice": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
				return stage.Map(source.Slice(r67Ints(10)), f, stage.Workers(1))
			},
			"map w4 slice": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
				return stage.Map(source.Slice(r67Ints(200)), f, stage.Workers(4))
			},
			"map single": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
				return stage.Map(source.Slice([]int{3}), f)
			},
			"unbatch single": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
				return stage.Unbatch(stage.Batch(stage.Map(source.Slice(r67Ints(10)), f, stage.Workers(1)), 20, 0))
			},
			"map chan": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
				ch := make(chan int, 10)
				for i := range 10 {
					ch <- i
				}
				close(ch)
				return stage.Map(source.Chan(ch), f, stage.Workers(2))
			},
		}
		for name, build := range shapes {
			_, before := runcheck.Goroutines()
			err, returned := r67SinkGoroutine(t, func() error {
				_, err := sink.Slice(context.Background(), build(func(_ context.Context, v int) (int, error) {
					if v == 3 {
						r67Goexit()
					}
					return v, nil
				}))
				return err
			})
			if returned && !errors.Is(err, stage.ErrGoexit) {
				t.Errorf("%s: the sink returned %v; want ErrGoexit", name, err)
			}
			t.Logf("%s: sink returned: %v (%v)", name, returned, err)
			r67NoLeakSince(t, name, before)
		}
	})
}

// ErrGoexit's precedence: "the run fails with ErrGoexit ... (unless it
// failed otherwise, whose error it returns, its context was cancelled
// first, whose error it returns as for any cancellation, or its sink
// stopped it with ErrStop)". A call that sees the run end and then calls
// Goexit: the sink returns the cancellation, the FailFast *Error, or nil.
// Child process.
func TestReview67GoexitAfterRunEnded(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range r67CtxKinds {
			for _, ending := range []string{"cancel", "failfast", "stop"} {
				name := kind + "/" + ending
				ctx, cancel := r67Parent(kind)
				entered := make(chan struct{})
				m := stage.Map(source.Slice(r67Ints(10)), func(fctx context.Context, v int) (int, error) {
					switch v {
					case 0:
						close(entered)
						<-fctx.Done()
						r67Goexit()
					case 1:
						<-entered
						switch ending {
						case "cancel":
							cancel()
							<-fctx.Done()
							return 0, fctx.Err()
						case "failfast":
							return 0, r67Err
						}
						return v, nil
					}
					<-fctx.Done()
					return 0, fctx.Err()
				}, stage.Workers(3), stage.Buffer(1))
				var err error
				var got []int
				_, before := runcheck.Goroutines()
				err, returned := r67SinkGoroutine(t, func() error {
					if ending == "stop" {
						return stage.Run(ctx, m, func(_ context.Context, v int, _ error) error {
							got = append(got, v)
							return stage.ErrStop
						})
					}
					_, err := sink.Slice(ctx, m)
					return err
				})
				if !returned {
					t.Fatalf("%s: the sink's goroutine ended", name)
				}
				var se *stage.Error
				switch ending {
				case "cancel":
					if !errors.Is(err, context.Canceled) || errors.Is(err, stage.ErrGoexit) {
						t.Errorf("%s: %v; want the cancellation", name, err)
					}
				case "failfast":
					if !errors.As(err, &se) || se.Input != 1 || errors.Is(err, stage.ErrGoexit) {
						t.Errorf("%s: %v; want item 1's *Error", name, err)
					}
				case "stop":
					if err != nil || !r67Equal(got, []int{1}) {
						t.Errorf("%s: %v after %v; want nil after [1]", name, err, got)
					}
				}
				cancel()
				r67NoLeakSince(t, name, before)
			}
		}
	})
}
