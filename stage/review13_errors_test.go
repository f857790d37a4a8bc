package stage_test

// Review 13: error classification. User code that returns (or panics with) a
// context error or ErrStop while the run is alive is an ordinary failure: it
// must never be mistaken for a cancellation or an early stop, and nothing may
// be lost or reported as success because of it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var r13ModeOpts = map[string][]stage.Option{
	"w1":           {stage.Workers(1)},
	"w4":           {stage.Workers(4)},
	"w4ordered":    {stage.Workers(4), stage.Ordered()},
	"w4buffer":     {stage.Workers(4), stage.Buffer(3)},
	"unlimited":    {stage.Workers(-1)},
	"keyby":        {stage.Workers(4), stage.KeyBy(func(v int) int { return v % 3 })},
	"huge-workers": {stage.Workers(100000)},
}

func r13Modes() []string {
	names := make([]string, 0, len(r13ModeOpts))
	for k := range r13ModeOpts {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func r13With(name string, more ...stage.Option) []stage.Option {
	return append(slices.Clone(r13ModeOpts[name]), more...)
}

// Doc (README, Errors): "With Forward the *stage.Error takes the item's place
// downstream ... the other sinks return what succeeded plus a
// *sink.ForwardedError: how many were forwarded". A function that returns
// context.Canceled / DeadlineExceeded while the run is alive failed its item;
// the item must be counted, not dropped as "cut short".
func TestReview13ContextErrorFromFunctionIsAnItemError(t *testing.T) {
	for _, cause := range []error{context.Canceled, context.DeadlineExceeded, fmt.Errorf("wrapped: %w", context.Canceled)} {
		for _, m := range r13Modes() {
			t.Run(fmt.Sprintf("%v/%s", cause, m), func(t *testing.T) {
				const n = 60
				var got []int
				var err error
				runcheck.Run(t, "forward", func() {
					got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(n)),
						func(_ context.Context, v int) (int, error) {
							if v%5 == 0 {
								return 0, cause
							}
							return v, nil
						}, r13With(m, stage.OnError(stage.Forward))...))
				})
				var fe *sink.ForwardedError
				if !errors.As(err, &fe) {
					t.Fatalf("err = %v, want a *sink.ForwardedError", err)
				}
				if fe.Count != n/5 || len(got) != n-n/5 {
					t.Fatalf("forwarded %d, delivered %d; want %d and %d (items lost)", fe.Count, len(got), n/5, n-n/5)
				}
				for _, e := range fe.Sample {
					var se *stage.Error
					if !errors.As(e, &se) || !errors.Is(e, cause) {
						t.Fatalf("sample %v: want a *stage.Error wrapping %v", e, cause)
					}
				}
			})
		}
	}
}

// Doc: "With FailFast (default) the first item error cancels the run's
// context with the *stage.Error as cause, ... and the sink returns that
// error." "A sink never reports success for a run that failed."
func TestReview13ContextErrorFromFunctionFailsFailFastRun(t *testing.T) {
	for _, cause := range []error{context.Canceled, context.DeadlineExceeded} {
		for _, m := range r13Modes() {
			t.Run(fmt.Sprintf("%v/%s", cause, m), func(t *testing.T) {
				var err error
				runcheck.Run(t, "failfast", func() {
					_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(40)),
						func(_ context.Context, v int) (int, error) {
							if v == 7 {
								return 0, cause
							}
							return v, nil
						}, r13With(m)...))
				})
				var se *stage.Error
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want a *stage.Error", err)
				}
				if se.Index != 7 || se.Input != 7 || !errors.Is(err, cause) {
					t.Fatalf("error %+v: want index 7 wrapping %v", se, cause)
				}
			})
		}
	}
}

// Doc (IsStop): "the ErrStop is not inside an *Error or a *SourceError. Those
// are failures that some run reported (a stage's function, or a source,
// returned ErrStop)". A stage function returning ErrStop fails the run.
func TestReview13ErrStopFromStageFunctionFails(t *testing.T) {
	for _, m := range r13Modes() {
		t.Run(m, func(t *testing.T) {
			var err error
			runcheck.Run(t, "errstop", func() {
				err = sink.ForEach(context.Background(), stage.Map(source.Slice(ints(30)),
					func(_ context.Context, v int) (int, error) {
						if v == 3 {
							return 0, stage.ErrStop
						}
						return v, nil
					}, r13With(m)...), func(context.Context, int) error { return nil })
			})
			var se *stage.Error
			if !errors.As(err, &se) || se.Index != 3 {
				t.Fatalf("err = %v, want the *stage.Error of item 3", err)
			}
		})
	}
}

// Doc (Source): "any other error (or a panic in open, next or stop) becomes a
// *SourceError that ends the run: items produced before it still go
// through". Only io.EOF itself ends the stream; a context error from next
// while the run is alive (no Until, nothing cancelled) is a failure, and so
// is ErrStop.
func TestReview13SourceReturnsContextErrorWhileRunAlive(t *testing.T) {
	for _, cause := range []error{context.Canceled, context.DeadlineExceeded, stage.ErrStop, fmt.Errorf("x: %w", io.EOF)} {
		for _, m := range r13Modes() {
			t.Run(fmt.Sprintf("%v/%s", cause, m), func(t *testing.T) {
				var got []int
				var err error
				runcheck.Run(t, "source", func() {
					i := 0
					src := source.Func(func(context.Context) (int, error) {
						if i == 5 {
							return 0, cause
						}
						i++
						return i - 1, nil
					})
					got, err = sink.Slice(context.Background(), stage.Map(src, double, r13With(m)...))
				})
				var se *stage.SourceError
				if !errors.As(err, &se) || !errors.Is(se.Err, cause) {
					t.Fatalf("err = %v, want a *stage.SourceError wrapping %v", err, cause)
				}
				slices.Sort(got)
				if !slices.Equal(got, []int{0, 2, 4, 6, 8}) {
					t.Fatalf("delivered %v, want every item produced before the failure", got)
				}
			})
		}
	}
}

// Doc: "ForEach ... An error returned by f (or a panic in f) ends the run as a
// FailFast error does". A callback that panics with ErrStop, or returns an
// ErrStop inside an *Error or a *SourceError, fails the run.
func TestReview13CallbackErrStopInsideErrorOrPanicFails(t *testing.T) {
	cases := map[string]func() error{
		"panic":       func() error { panic(stage.ErrStop) },
		"inError":     func() error { return &stage.Error{Stage: "mine", Err: stage.ErrStop} },
		"inSourceErr": func() error { return fmt.Errorf("ctx: %w", &stage.SourceError{Err: stage.ErrStop}) },
	}
	for name, cb := range cases {
		t.Run(name, func(t *testing.T) {
			var err error
			runcheck.Run(t, "callback", func() {
				err = sink.ForEach(context.Background(), stage.Map(source.Slice(ints(10)), double, stage.Workers(2)),
					func(_ context.Context, v int) error {
						if v == 4 {
							return cb()
						}
						return nil
					})
			})
			if err == nil {
				t.Fatal("ForEach returned nil for a failed run")
			}
			var se *stage.Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *stage.Error", err)
			}
		})
	}
}

// Doc (Handle): "if h returns an error, the run fails with it as with
// FailFast, and the sink returns h's error." An h that returns ErrStop (or a
// context error) must not turn the failure into success.
func TestReview13HandlerReturningStopOrCanceledFails(t *testing.T) {
	for _, herr := range []error{stage.ErrStop, context.Canceled} {
		for _, pol := range []string{"handle", "budget"} {
			t.Run(fmt.Sprintf("%v/%s", herr, pol), func(t *testing.T) {
				h := func(context.Context, *stage.Error) error { return herr }
				p := stage.Handle(h)
				if pol == "budget" {
					p = stage.Budget(5, h)
				}
				var err error
				runcheck.Run(t, "handler", func() {
					err = sink.ForEach(context.Background(), stage.Map(source.Slice(ints(20)),
						func(_ context.Context, v int) (int, error) {
							if v == 6 {
								return 0, errors.New("boom")
							}
							return v, nil
						}, stage.Workers(3), stage.OnError(p)), func(context.Context, int) error { return nil })
				})
				if err == nil || !errors.Is(err, herr) {
					t.Fatalf("err = %v, want the handler's error %v (a failed run)", err, herr)
				}
			})
		}
	}
}

// Doc (PanicError.Unwrap): "Unwrap returns Value when it is an error (for
// example a runtime.Error)". panic(nil) is a *runtime.PanicNilError since Go
// 1.21; a stage function that does it fails its item like any panic.
func TestReview13PanicNilIsAPanicError(t *testing.T) {
	for _, m := range r13Modes() {
		t.Run(m, func(t *testing.T) {
			var err error
			runcheck.Run(t, "panicnil", func() {
				_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(10)),
					func(_ context.Context, v int) (int, error) {
						if v == 2 {
							panic(nil)
						}
						return v, nil
					}, r13With(m)...))
			})
			var se *stage.Error
			var pe *stage.PanicError
			var pn *runtime.PanicNilError
			if !errors.As(err, &se) || !errors.As(err, &pe) || !errors.As(err, &pn) || se.Index != 2 {
				t.Fatalf("err = %v, want *stage.Error(index 2) > *PanicError > *runtime.PanicNilError", err)
			}
		})
	}
}

// Doc: "A panic in your code never crashes the process. In a stage function,
// a KeyBy key function, ...": with Forward, a panicking item is forwarded and
// the run goes on; the item's function is not called when key panics.
func TestReview13PanicsForwardedInEveryMode(t *testing.T) {
	for _, m := range r13Modes() {
		for _, withKey := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/keypanics=%v", m, withKey), func(t *testing.T) {
				const n = 50
				var calls atomic.Int32
				opts := r13With(m, stage.OnError(stage.Forward))
				keyPanics := 0
				if withKey {
					if m == "keyby" {
						opts = r13With("w4", stage.OnError(stage.Forward))
					}
					keyPanics = 5
					opts = append(opts, stage.KeyBy(func(v int) int {
						if v%10 == 9 {
							panic(fmt.Sprintf("key %d", v))
						}
						return v % 4
					}))
				}
				var got []int
				var err error
				runcheck.Run(t, "panics", func() {
					got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(n)),
						func(_ context.Context, v int) (int, error) {
							calls.Add(1)
							if withKey && v%10 == 9 {
								t.Errorf("the function was called for item %d whose key panicked", v)
							}
							if v%10 == 4 {
								panic(v)
							}
							return v, nil
						}, opts...))
				})
				failed := 5 + keyPanics
				var fe *sink.ForwardedError
				if !errors.As(err, &fe) || fe.Count != failed || len(got) != n-failed {
					t.Fatalf("err = %v, %d values: want %d forwarded panics and %d values", err, len(got), failed, n-failed)
				}
				for _, e := range fe.Sample {
					var se *stage.Error
					var pe *stage.PanicError
					if !errors.As(e, &se) || !errors.As(e, &pe) || se.Input != se.Index {
						t.Fatalf("sample %v (%+v): want *stage.Error > *PanicError, Index == Input", e, se)
					}
					// A key that panicked leaves its item untried: 0 attempts.
					if want := map[bool]int{true: 0, false: 1}[se.Index%10 == 9]; se.Attempts != want {
						t.Fatalf("sample %v: %d attempts, want %d", e, se.Attempts, want)
					}
				}
				if int(calls.Load()) != n-keyPanics {
					t.Fatalf("function called %d times, want %d", calls.Load(), n-keyPanics)
				}
			})
		}
	}
}

// r13Ack is an Ack that panics with its value when told anything.
type r13PanicAck struct{ v any }

func (a r13PanicAck) Done(error) { panic(a.v) }

// Doc (README): "A panic in your code never crashes the process. In a stage
// function, a KeyBy key function, a source, a sink callback, an Ack, an
// observer ...: it becomes an error". Doc (Run): "A sink never reports
// success for a run that failed"; IsStop: only a returned ErrStop outside an
// *Error / *SourceError stops a run. A panic whose value is ErrStop is a
// panic, never a stop: every one of these runs must fail.
func TestReview13PanicWithErrStopValueFailsTheRun(t *testing.T) {
	for _, val := range []any{stage.ErrStop, fmt.Errorf("wrapped: %w", stage.ErrStop)} {
		boom := func() { panic(val) }
		fails := func(v int) bool { return v == 3 }
		mapf := func(_ context.Context, v int) (int, error) { return v, nil }
		cases := map[string]func() error{
			"stage-function": func() error {
				return sink.ForEach(context.Background(), stage.Map(source.Slice(ints(10)), func(_ context.Context, v int) (int, error) {
					if fails(v) {
						boom()
					}
					return v, nil
				}, stage.Workers(2)), func(context.Context, int) error { return nil })
			},
			"key": func() error {
				return sink.ForEach(context.Background(), stage.Map(source.Slice(ints(10)), mapf, stage.Workers(2),
					stage.KeyBy(func(v int) int {
						if fails(v) {
							boom()
						}
						return v
					})), func(context.Context, int) error { return nil })
			},
			"retry-predicate": func() error {
				return sink.ForEach(context.Background(), stage.Map(source.Slice(ints(10)), func(_ context.Context, v int) (int, error) {
					if fails(v) {
						return 0, errors.New("retry me")
					}
					return v, nil
				}, stage.Workers(2), stage.RetryIf(3, 0, func(error) bool { boom(); return true })), func(context.Context, int) error { return nil })
			},
			"handler": func() error {
				return sink.ForEach(context.Background(), stage.Map(source.Slice(ints(10)), func(_ context.Context, v int) (int, error) {
					if fails(v) {
						return 0, errors.New("to the handler")
					}
					return v, nil
				}, stage.Workers(2), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { boom(); return nil }))),
					func(context.Context, int) error { return nil })
			},
			"source-next": func() error {
				i := 0
				return sink.ForEach(context.Background(), stage.Map(source.Func(func(context.Context) (int, error) {
					if i == 3 {
						boom()
					}
					i++
					return i, nil
				}), mapf, stage.Workers(2)), func(context.Context, int) error { return nil })
			},
			"source-stop": func() error {
				return sink.ForEach(context.Background(), stage.Map(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(context.Context) (int, error) {
						if i == 3 {
							return 0, io.EOF
						}
						i++
						return i, nil
					}, boom
				}), mapf, stage.Workers(2)), func(context.Context, int) error { return nil })
			},
			"ack-done": func() error {
				return sink.ForEach(context.Background(), stage.Map(stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
					i := 0
					return func(context.Context) (int, stage.Ack, error) {
						if i == 5 {
							return 0, nil, io.EOF
						}
						i++
						if i == 3 {
							return i, r13PanicAck{val}, nil
						}
						return i, nil, nil
					}, nil
				}), mapf, stage.Workers(2)), func(context.Context, int) error { return nil })
			},
			"indexed-at": func() error {
				return sink.ForEach(context.Background(), stage.Map(stage.Indexed(10, func(i int) int {
					if fails(i) {
						boom()
					}
					return i
				}), mapf, stage.Workers(2)), func(context.Context, int) error { return nil })
			},
			"seq": func() error {
				return sink.ForEach(context.Background(), stage.Map(source.Seq(func(yield func(int) bool) {
					for i := range 10 {
						if fails(i) {
							boom()
						}
						if !yield(i) {
							return
						}
					}
				}), mapf, stage.Workers(2)), func(context.Context, int) error { return nil })
			},
			"foreach-callback": func() error {
				return sink.ForEach(context.Background(), stage.Map(source.Slice(ints(10)), mapf, stage.Workers(2)),
					func(_ context.Context, v int) error {
						if fails(v) {
							boom()
						}
						return nil
					})
			},
			"reduce-callback": func() error {
				_, err := sink.Reduce(context.Background(), stage.Map(source.Slice(ints(10)), mapf, stage.Workers(2)), 0,
					func(acc, v int) int {
						if fails(v) {
							boom()
						}
						return acc + v
					})
				return err
			},
		}
		names := make([]string, 0, len(cases))
		for k := range cases {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, name := range names {
			t.Run(fmt.Sprintf("%v/%s", val, name), func(t *testing.T) {
				var err error
				runcheck.Run(t, name, func() { err = cases[name]() })
				var pe *stage.PanicError
				if err == nil || !errors.As(err, &pe) {
					t.Fatalf("err = %v: want a failed run with a *stage.PanicError (the panic's value was ErrStop)", err)
				}
			})
		}
	}
}
