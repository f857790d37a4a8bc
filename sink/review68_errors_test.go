package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r68FailEvery3 fails the items divisible by 3.
func r68FailEvery3(_ context.Context, v int) (int, error) {
	if v%3 == 0 {
		return 0, fmt.Errorf("item %d: %w", v, r68ErrBoom)
	}
	return v, nil
}

// README Guarantees, Errors: "With Forward the *stage.Error takes the
// item's place downstream, later stages pass it through, sink.All yields
// it, and the other sinks return what succeeded plus a
// *sink.ForwardedError: how many were forwarded and the first eight".
func TestReview68ForwardEverySink(t *testing.T) {
	const n = 300 // 100 fail
	later := 0
	build := func() stage.Stream[int] {
		later = 0
		m := stage.Map(source.Slice(r68Ints(n)), r68FailEvery3, stage.Workers(1), stage.OnError(stage.Forward))
		// A later stage passes forwarded errors through without a call.
		return stage.Map(m, func(_ context.Context, v int) (int, error) {
			if v%3 == 0 {
				later++
			}
			return v, nil
		}, stage.Workers(1))
	}
	wantVals := slices.DeleteFunc(r68Ints(n), func(v int) bool { return v%3 == 0 })
	checkFE := func(label string, err error) {
		t.Helper()
		var fe *sink.ForwardedError
		if !errors.As(err, &fe) || fe.Count != 100 || len(fe.Sample) != sink.SampleSize || sink.SampleSize != 8 {
			t.Errorf("%s: err %v: want a *sink.ForwardedError of 100 with 8 kept", label, err)
			return
		}
		for k, e := range fe.Sample {
			var se *stage.Error
			if !errors.As(e, &se) || se.Index != 3*k || se.Input != 3*k || se.Stage != "map#1" {
				t.Errorf("%s: sample %d is %v, want the *stage.Error of item %d (arrival order)", label, k, e, 3*k)
			}
		}
		if !errors.Is(err, r68ErrBoom) {
			t.Errorf("%s: errors.Is does not see through the ForwardedError", label)
		}
		if later != 0 {
			t.Errorf("%s: a later stage was called for %d forwarded errors", label, later)
		}
	}
	ctx := context.Background()
	var vals []int
	var err error
	runcheck.Run(t, "slice", func() { vals, err = sink.Slice(ctx, build()) })
	if !slices.Equal(vals, wantVals) {
		t.Errorf("Slice values %d, want %d", len(vals), len(wantVals))
	}
	checkFE("Slice", err)
	var cnt int
	runcheck.Run(t, "count", func() { cnt, err = sink.Count(ctx, build()) })
	if cnt != len(wantVals) {
		t.Errorf("Count %d", cnt)
	}
	checkFE("Count", err)
	var sum int
	runcheck.Run(t, "reduce", func() { sum, err = sink.Reduce(ctx, build(), 0, func(a, v int) int { return a + v }) })
	wantSum := 0
	for _, v := range wantVals {
		wantSum += v
	}
	if sum != wantSum {
		t.Errorf("Reduce %d, want %d", sum, wantSum)
	}
	checkFE("Reduce", err)
	calls := 0
	runcheck.Run(t, "foreach", func() {
		err = sink.ForEach(ctx, build(), func(context.Context, int) error { calls++; return nil })
	})
	if calls != len(wantVals) {
		t.Errorf("ForEach called %d times", calls)
	}
	checkFE("ForEach", err)
	out := make(chan int, n)
	runcheck.Run(t, "chan", func() { err = sink.Chan(ctx, build(), out) })
	if len(out) != len(wantVals) {
		t.Errorf("Chan sent %d", len(out))
	}
	checkFE("Chan", err)
	// All yields each forwarded error in its place.
	i := 0
	runcheck.Run(t, "all", func() {
		for v, e := range sink.All(ctx, build()) {
			if i%3 == 0 {
				var se *stage.Error
				if !errors.As(e, &se) || se.Index != i || v != 0 {
					t.Errorf("All pair %d = (%d, %v), want the forwarded error of item %d", i, v, e, i)
				}
			} else if e != nil || v != i {
				t.Errorf("All pair %d = (%d, %v)", i, v, e)
			}
			i++
		}
	})
	if i != n {
		t.Errorf("All yielded %d pairs, want %d", i, n)
	}
	// First returns it when it is the first item.
	var v int
	var ok bool
	runcheck.Run(t, "first", func() { v, ok, err = sink.First(ctx, build()) })
	var se *stage.Error
	if v != 0 || ok || !errors.As(err, &se) || se.Index != 0 {
		t.Errorf("First = %d, %v, %v; want the forwarded error of item 0", v, ok, err)
	}
}

// Sink doc: the ForwardedError is "joined with the error that ended the
// run, if any". A source's failure ends the run after every item it
// produced was delivered (SourceError doc), so what the sink returns is
// exact: the values and all four forwarded errors, joined with it.
func TestReview68ForwardedJoinedWithFailure(t *testing.T) {
	last := errors.New("r68: the end")
	i := 0
	src := source.Func(func(context.Context) (int, error) {
		if i == 10 {
			return 0, last
		}
		i++
		return i - 1, nil
	})
	m := stage.Map(src, r68FailEvery3, stage.Workers(1), stage.OnError(stage.Forward))
	s := stage.Map(m, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1))
	vals, err := sink.Slice(context.Background(), s)
	var fe *sink.ForwardedError
	var se *stage.SourceError
	if !errors.Is(err, last) || !errors.As(err, &se) || !errors.As(err, &fe) || fe.Count != 4 {
		t.Errorf("err %v: want the SourceError joined with a ForwardedError of 4 (items 0, 3, 6, 9)", err)
	}
	if !slices.Equal(vals, []int{1, 2, 4, 5, 7, 8}) {
		t.Errorf("values %v, want every one produced before the failure, [1 2 4 5 7 8]", vals)
	}
}

// The same when a FailFast error at item 10 ends the run: the items
// already on their way to the sink may be dropped (no item is delivered
// once the run is cancelled), so what arrived is some prefix of the run's
// outputs, in order (one worker a stage), and the forwarded errors among
// it, if any, are joined with the FailFast error.
func TestReview68ForwardedJoinedWithFailFast(t *testing.T) {
	last := errors.New("r68: the end")
	for range 50 {
		m := stage.Map(source.Slice(r68Ints(20)), r68FailEvery3, stage.Workers(1), stage.OnError(stage.Forward))
		s := stage.Map(m, func(_ context.Context, v int) (int, error) {
			if v == 10 {
				return 0, last
			}
			return v, nil
		}, stage.Workers(1))
		vals, err := sink.Slice(context.Background(), s)
		var fe *sink.ForwardedError
		count := 0
		if errors.As(err, &fe) {
			count = fe.Count
		}
		// Outputs in order: err 0, 1, 2, err 3, 4, 5, err 6, 7, 8, err 9.
		want := []int{1, 2, 4, 5, 7, 8}
		k := len(vals)
		if !errors.Is(err, last) || k > len(want) || !slices.Equal(vals, want[:k]) {
			t.Fatalf("values %v, err %v: want the FailFast error and a prefix of %v", vals, err, want)
		}
		// Before the k-th value came the errors of 0, 3, ... below it; after
		// it, at most the next one.
		lo := 0
		if k > 0 {
			lo = want[k-1]/3 + 1
		}
		if count < lo || count > lo+1 || count > 4 {
			t.Fatalf("values %v with %d forwarded errors (err %v): want %d or %d", vals, count, err, lo, min(lo+1, 4))
		}
	}
}

// README: "With Handle(h) each failed item goes to h (calls never overlap
// within a stage): nil drops the item and the run goes on, an error fails
// the run with it".
func TestReview68HandleNeverOverlaps(t *testing.T) {
	var g r68Gauge
	var seen []int // no lock: calls of h never overlap
	h := func(_ context.Context, e *stage.Error) error {
		g.enter()
		defer g.leave()
		for range 20 {
			g.cur.Load() // widen the window
		}
		seen = append(seen, e.Input.(int))
		return nil
	}
	var vals []int
	var err error
	runcheck.Run(t, "handle", func() {
		vals, err = sink.Slice(context.Background(), stage.Map(source.Slice(r68Ints(600)), r68FailEvery3,
			stage.Workers(8), stage.Buffer(1), stage.OnError(stage.Handle(h))))
	})
	if err != nil || len(vals) != 400 || len(seen) != 200 {
		t.Errorf("err %v, %d values, %d handled; want nil, 400, 200", err, len(vals), len(seen))
	}
	if g.max.Load() != 1 {
		t.Errorf("%d calls of h at once, want 1", g.max.Load())
	}
	// An error of h fails the run with it.
	herr := errors.New("r68: dead-letter queue full")
	var calls atomic.Int32
	runcheck.Run(t, "handle error", func() {
		_, err = sink.Slice(context.Background(), stage.Map(source.Slice(r68Ints(600)), r68FailEvery3,
			stage.Workers(8), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
				if calls.Add(1) == 3 {
					return herr
				}
				return nil
			}))))
	})
	if !errors.Is(err, herr) {
		t.Errorf("err = %v, want h's error", err)
	}
}

// README: "Budget(n, h) fails the run at the (n+1)th failure, with an
// error wrapping stage.ErrBudget."
func TestReview68Budget(t *testing.T) {
	for _, n := range []int{0, 1, 4} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var handled []int
			var err error
			var vals []int
			runcheck.Run(t, "budget", func() {
				vals, err = sink.Slice(context.Background(), stage.Map(source.Slice(r68Ints(100)), r68FailEvery3,
					stage.Workers(1), stage.OnError(stage.Budget(n, func(_ context.Context, e *stage.Error) error {
						handled = append(handled, e.Index)
						return nil
					}))))
			})
			var se *stage.Error
			if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || se.Index != 3*n || !errors.Is(err, r68ErrBoom) {
				t.Fatalf("err = %v, want ErrBudget with the *stage.Error of item %d", err, 3*n)
			}
			want := []int{}
			for k := range n {
				want = append(want, 3*k)
			}
			if !slices.Equal(handled, want) && !(len(handled) == 0 && n == 0) {
				t.Errorf("h saw %v, want %v (not the (n+1)th)", handled, want)
			}
			for _, v := range vals {
				if v%3 == 0 || v > 3*n {
					t.Errorf("value %d delivered", v)
				}
			}
		})
	}
	// Each run starts with a full budget.
	s := stage.Map(source.Slice(r68Ints(5)), r68FailEvery3, stage.Workers(1), stage.OnError(stage.Budget(2, nil)))
	for range 3 {
		if vals, err := sink.Slice(context.Background(), s); err != nil || !slices.Equal(vals, []int{1, 2, 4}) {
			t.Errorf("rerun: %v, %v", vals, err)
		}
	}
}

// README: "Under Retry the policy sees the last attempt's error, and
// Error.Attempts says how many calls were made."
func TestReview68RetryAttempts(t *testing.T) {
	var calls atomic.Int32
	_, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{7}), func(context.Context, int) (int, error) {
		return 0, fmt.Errorf("attempt %d: %w", calls.Add(1), r68ErrBoom)
	}, stage.Retry(4, 0)))
	var se *stage.Error
	if !errors.As(err, &se) || se.Attempts != 4 || calls.Load() != 4 || se.Err.Error() != "attempt 4: r68: boom" {
		t.Errorf("err %v (attempts %v), %d calls: want 4 attempts and the last attempt's error", err, se, calls.Load())
	}
	calls.Store(0)
	vals, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{7}), func(context.Context, int) (int, error) {
		if calls.Add(1) < 3 {
			return 0, r68ErrBoom
		}
		return 70, nil
	}, stage.Retry(4, 0)))
	if err != nil || !slices.Equal(vals, []int{70}) || calls.Load() != 3 {
		t.Errorf("%v, %v after %d calls; want [70] after 3", vals, err, calls.Load())
	}
	// A panic is not retried.
	calls.Store(0)
	_, err = sink.Slice(context.Background(), stage.Map(source.Slice([]int{7}), func(context.Context, int) (int, error) {
		calls.Add(1)
		panic("r68")
	}, stage.Retry(4, 0)))
	var pe *stage.PanicError
	if !errors.As(err, &se) || se.Attempts != 1 || calls.Load() != 1 || !errors.As(err, &pe) {
		t.Errorf("panic: err %v, %d calls; want 1 attempt with a *stage.PanicError", err, calls.Load())
	}
}

// README: "Cancelling ctx makes the sink return an error for which
// errors.Is(err, context.Canceled) holds (unless the sink's callback
// stopped the run with stage.ErrStop first)" and "A callback that returns
// stage.ErrStop ends the run with nil, whatever happened meanwhile (a
// failure elsewhere, a cancellation of ctx while it ran)".
func TestReview68ErrStopWinsWhateverHappened(t *testing.T) {
	for _, what := range []string{"cancel", "cancel userctx", "failure elsewhere", "source error", "wrapped errstop"} {
		t.Run(what, func(t *testing.T) {
			ctx, cancel := r68UserCancel(what == "cancel userctx")
			defer cancel()
			fail := make(chan struct{})
			srcFailed := make(chan struct{})
			var produced atomic.Int64
			src := source.Func(func(ctx context.Context) (int, error) {
				i := produced.Add(1) - 1
				if i > 0 && what == "source error" {
					<-fail
					close(srcFailed)
					return 0, r68ErrBoom
				}
				return int(i), nil
			})
			s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
				if v == 0 {
					return 0, nil
				}
				select {
				case <-fail:
					if what == "failure elsewhere" {
						return 0, r68ErrBoom
					}
				case <-ctx.Done():
				}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Workers(3), stage.Buffer(1))
			var err error
			runcheck.Run(t, what, func() {
				err = sink.ForEach(ctx, s, func(rctx context.Context, v int) error {
					switch what {
					case "cancel", "cancel userctx":
						cancel()
					default:
						close(fail)
					}
					switch what {
					case "source error":
						<-srcFailed // the source failed while the callback runs
					case "wrapped errstop":
					default:
						<-rctx.Done() // the run is cut short while the callback runs
					}
					if what == "wrapped errstop" {
						return fmt.Errorf("enough: %w", stage.ErrStop)
					}
					return stage.ErrStop
				})
			})
			if err != nil {
				t.Errorf("err = %v, want nil: the callback returned ErrStop", err)
			}
		})
	}
}

// README: "A source error is returned only once everything produced before
// it was delivered; a run cut short first reports what cut it."
func TestReview68SourceErrorAfterDelivery(t *testing.T) {
	for _, then := range []string{"nothing", "failfast", "cancel", "cancel userctx"} {
		t.Run(then, func(t *testing.T) {
			ctx, cancel := r68UserCancel(then == "cancel userctx")
			defer cancel()
			srcFailed := make(chan struct{})
			var produced atomic.Int64
			src := source.Func(func(context.Context) (int, error) {
				i := produced.Add(1) - 1
				if i == 5 {
					close(srcFailed)
					return 0, r68ErrBoom
				}
				return int(i), nil
			})
			s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
				<-srcFailed // every item is in flight when the source fails
				if v == 3 {
					switch then {
					case "failfast":
						return 0, errors.New("r68: item 3 failed")
					case "cancel", "cancel userctx":
						cancel()
						<-ctx.Done()
						return 0, ctx.Err()
					}
				}
				return v, nil
			}, stage.Workers(8), stage.Buffer(1))
			var vals []int
			var err error
			runcheck.Run(t, then, func() { vals, err = sink.Slice(ctx, s) })
			var srcErr *stage.SourceError
			isSrc := errors.As(err, &srcErr)
			switch then {
			case "nothing":
				slices.Sort(vals)
				if !isSrc || !errors.Is(err, r68ErrBoom) || !slices.Equal(vals, []int{0, 1, 2, 3, 4}) {
					t.Errorf("vals %v, err %v: want all 5 items and then the *stage.SourceError", vals, err)
				}
			case "failfast":
				var se *stage.Error
				if isSrc || !errors.As(err, &se) || se.Index != 3 {
					t.Errorf("err %v: want the *stage.Error of item 3 (not every item was delivered: no SourceError)", err)
				}
			default:
				if isSrc || !errors.Is(err, context.Canceled) {
					t.Errorf("err %v: want context.Canceled and no SourceError", err)
				}
			}
		})
	}
}

// README: "A sink never reports success for a run that failed." The
// failures happen where the sink sees no trace of them.
func TestReview68NeverSuccessForFailedRun(t *testing.T) {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	cases := map[string]func() stage.Stream[int]{
		"last item fails": func() stage.Stream[int] {
			return stage.Map(source.Slice(r68Ints(50)), func(_ context.Context, v int) (int, error) {
				if v == 49 {
					return 0, r68ErrBoom
				}
				return v, nil
			})
		},
		"filter fails on a dropped item": func() stage.Stream[int] {
			return stage.Filter(source.Slice(r68Ints(50)), func(_ context.Context, v int) (bool, error) {
				if v == 49 {
					return false, r68ErrBoom
				}
				return false, nil
			})
		},
		"flatmap fails with no outputs": func() stage.Stream[int] {
			return stage.FlatMap(source.Slice(r68Ints(5)), func(_ context.Context, v int) ([]int, error) {
				if v == 4 {
					return nil, r68ErrBoom
				}
				return nil, nil
			})
		},
		"apply emits then fails": func() stage.Stream[int] {
			return stage.Apply(source.Slice([]int{1}), func(_ context.Context, v int, emit func(int) bool) error {
				emit(v)
				return r68ErrBoom
			})
		},
		"handle error on the last item": func() stage.Stream[int] {
			return stage.Map(stage.Map(source.Slice(r68Ints(10)), id), func(_ context.Context, v int) (int, error) {
				if v == 9 {
					return 0, errors.New("x")
				}
				return v, nil
			}, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return r68ErrBoom })), stage.Workers(1))
		},
		"source fails at the end": func() stage.Stream[int] {
			i := 0
			return stage.Map(source.Func(func(context.Context) (int, error) {
				i++
				if i > 3 {
					return 0, r68ErrBoom
				}
				return i, nil
			}), id)
		},
		"seq2 fails": func() stage.Stream[int] {
			return source.Seq2(func(yield func(int, error) bool) {
				if yield(1, nil) {
					yield(0, r68ErrBoom)
				}
			})
		},
		"lines read error": func() stage.Stream[int] {
			return stage.Map(source.Lines(io.MultiReader(stringsReader("a\nb\n"), r68ErrReader{})), func(context.Context, string) (int, error) { return 1, nil })
		},
		"wrapped EOF": func() stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				i++
				if i > 2 {
					return 0, fmt.Errorf("truncated: %w", io.EOF)
				}
				return i, nil
			})
		},
		"in a tee branch": func() stage.Stream[int] {
			b := stage.Tee(source.Slice(r68Ints(10)), 2)
			return stage.Merge(b[0], stage.Filter(b[1], func(_ context.Context, v int) (bool, error) {
				if v == 9 {
					return false, r68ErrBoom
				}
				return false, nil
			}))
		},
		"before a batch": func() stage.Stream[int] {
			return stage.Unbatch(stage.Batch(stage.Map(source.Slice(r68Ints(10)), func(_ context.Context, v int) (int, error) {
				if v == 9 {
					return 0, r68ErrBoom
				}
				return v, nil
			}), 100, 0))
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			for _, sinkName := range []string{"slice", "count", "foreach", "all", "chan"} {
				var err error
				runcheck.Run(t, name, func() {
					ctx := context.Background()
					switch sinkName {
					case "slice":
						_, err = sink.Slice(ctx, build())
					case "count":
						_, err = sink.Count(ctx, build())
					case "foreach":
						err = sink.ForEach(ctx, build(), func(context.Context, int) error { return nil })
					case "all":
						for _, e := range sink.All(ctx, build()) {
							if e != nil {
								err = e
							}
						}
					case "chan":
						err = sink.Chan(ctx, build(), make(chan int, 100))
					}
				})
				if err == nil {
					t.Errorf("%s: a failed run reported success", sinkName)
				}
			}
		})
	}
}

type r68ErrReader struct{}

func (r68ErrReader) Read([]byte) (int, error) { return 0, r68ErrBoom }

type r68StringReader struct {
	s string
}

func (r *r68StringReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}

func stringsReader(s string) io.Reader { return &r68StringReader{s: s} }

// README: "sink.First(ctx, s) is always the first pair of sink.All(ctx, s)
// for a run that delivers the same first item".
func TestReview68FirstIsFirstPairOfAll(t *testing.T) {
	cases := map[string]func() stage.Stream[int]{
		"empty":       func() stage.Stream[int] { return source.Slice[int](nil) },
		"empty merge": func() stage.Stream[int] { return stage.Merge[int]() },
		"value":       func() stage.Stream[int] { return source.Slice([]int{4, 5}) },
		"forwarded first": func() stage.Stream[int] {
			return stage.Map(source.Slice([]int{0, 1}), r68FailEvery3, stage.OnError(stage.Forward), stage.Workers(1))
		},
		"source fails first": func() stage.Stream[int] {
			return source.Func(func(context.Context) (int, error) { return 0, r68ErrBoom })
		},
		"source fails after the first": func() stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				i++
				if i == 1 {
					return 9, nil
				}
				return 0, r68ErrBoom
			})
		},
		"failfast first": func() stage.Stream[int] {
			return stage.Map(source.Slice([]int{0}), r68FailEvery3)
		},
		"filter drops all": func() stage.Stream[int] {
			return stage.Filter(source.Slice(r68Ints(10)), func(context.Context, int) (bool, error) { return false, nil })
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			var fv int
			var fok bool
			var ferr error
			runcheck.Run(t, "first", func() { fv, fok, ferr = sink.First(context.Background(), build()) })
			av, aerr, seen := 0, error(nil), false
			runcheck.Run(t, "all", func() {
				for v, e := range sink.All(context.Background(), build()) {
					av, aerr, seen = v, e, true
					break
				}
			})
			if fv != av || fok != (seen && aerr == nil) || (ferr == nil) != (aerr == nil) || (ferr != nil && ferr.Error() != aerr.Error()) {
				t.Errorf("First = (%d, %v, %v), All's first pair = (%d, %v) seen %v", fv, fok, ferr, av, aerr, seen)
			}
		})
	}
}
