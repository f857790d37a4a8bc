package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r68PanicErr is an error whose methods panic (errors.Is / As / Unwrap
// call them).
type r68PanicErr struct{}

func (r68PanicErr) Error() string { return "r68: an error whose methods panic" }
func (r68PanicErr) Is(error) bool { panic("r68: Is") }
func (r68PanicErr) As(any) bool   { panic("r68: As") }
func (r68PanicErr) Unwrap() error { panic("r68: Unwrap") }

// r68PanicObserver panics in the method named by where.
type r68PanicObserver struct{ where string }

func (o r68PanicObserver) Stage(stage.Info) stage.Watcher {
	if o.where == "Stage" {
		panic(r68PanicValue(o.where))
	}
	return r68PanicWatcher(o)
}

type r68PanicWatcher struct{ where string }

func (w r68PanicWatcher) Received() {
	if w.where == "Received" {
		panic(r68PanicValue(w.where))
	}
}
func (w r68PanicWatcher) Finished(time.Duration, error) {
	if w.where == "Finished" {
		panic(r68PanicValue(w.where))
	}
}
func (w r68PanicWatcher) Closed() {
	if w.where == "Closed" {
		panic(r68PanicValue(w.where))
	}
}

// r68NilPanics says whether the scenarios panic with nil (panic(nil)).
var r68NilPanics bool

func r68PanicValue(where string) any {
	if r68NilPanics {
		return nil
	}
	return "r68 panic in " + where
}

// r68PanicScenarios: README "A panic in your code never crashes the
// process. In a stage function, a KeyBy key function, a source, a sink
// callback, an Ack, an observer ...: it becomes an error (*stage.PanicError
// inside a *stage.Error, a *stage.SourceError, or the observer's error). So
// does a panic in the methods of your values that sluice calls (an error's
// Is/Unwrap, a key's hash), and panic(nil), even under GODEBUG=panicnil=1."
// Each returns the sink's error and what kind it must be.
func r68PanicScenarios() map[string]struct {
	run  func() error
	want string // "item", "source", "observer", "any"
} {
	ctx := context.Background()
	items := func() stage.Stream[int] { return source.Slice(r68Ints(50)) }
	p := func(where string) { panic(r68PanicValue(where)) }
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	type sc = struct {
		run  func() error
		want string
	}
	return map[string]sc{
		"map": {func() error {
			_, err := sink.Slice(ctx, stage.Map(items(), func(_ context.Context, v int) (int, error) {
				if v == 20 {
					p("map")
				}
				return v, nil
			}, stage.Workers(4)))
			return err
		}, "item"},
		"map single item": {func() error {
			_, err := sink.Slice(ctx, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) { p("map1"); return 0, nil }))
			return err
		}, "item"},
		"filter ordered": {func() error {
			_, err := sink.Slice(ctx, stage.Filter(items(), func(_ context.Context, v int) (bool, error) {
				if v == 20 {
					p("filter")
				}
				return true, nil
			}, stage.Workers(4), stage.Ordered()))
			return err
		}, "item"},
		"flatmap": {func() error {
			_, err := sink.Slice(ctx, stage.FlatMap(items(), func(_ context.Context, v int) ([]int, error) {
				if v == 20 {
					p("flatmap")
				}
				return []int{v}, nil
			}))
			return err
		}, "item"},
		"apply after emit": {func() error {
			_, err := sink.Slice(ctx, stage.Apply(items(), func(_ context.Context, v int, emit func(int) bool) error {
				emit(v)
				if v == 20 {
					p("apply")
				}
				return nil
			}, stage.Workers(3)))
			return err
		}, "item"},
		"concurrent task": {func() error {
			_, err := sink.Slice(ctx, stage.Concurrent(source.Slice([]func(context.Context) (int, error){
				func(context.Context) (int, error) { return 1, nil },
				func(context.Context) (int, error) { p("task"); return 0, nil },
			})))
			return err
		}, "item"},
		"keyby key": {func() error {
			_, err := sink.Slice(ctx, stage.Map(items(), id, stage.KeyBy(func(v int) int {
				if v == 20 {
					p("key")
				}
				return v % 3
			})))
			return err
		}, "item"},
		"keyby hash of an uncomparable key": {func() error {
			_, err := sink.Slice(ctx, stage.Map(items(), id, stage.Workers(3), stage.KeyBy(func(v int) any {
				if v == 20 {
					return []int{v} // hashing it panics
				}
				return v % 3
			})))
			return err
		}, "item"},
		"retryif predicate": {func() error {
			_, err := sink.Slice(ctx, stage.Map(items(), func(context.Context, int) (int, error) { return 0, r68ErrBoom },
				stage.RetryIf(3, 0, func(error) bool { p("retryif"); return true })))
			return err
		}, "item"},
		"handle": {func() error {
			_, err := sink.Slice(ctx, stage.Map(items(), r68FailEvery3, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
				p("handle")
				return nil
			}))))
			return err
		}, "item"},
		"budget": {func() error {
			_, err := sink.Slice(ctx, stage.Map(items(), r68FailEvery3, stage.OnError(stage.Budget(3, func(context.Context, *stage.Error) error {
				p("budget")
				return nil
			}))))
			return err
		}, "item"},
		"func source": {func() error {
			i := 0
			_, err := sink.Slice(ctx, stage.Map(source.Func(func(context.Context) (int, error) {
				i++
				if i == 5 {
					p("next")
				}
				return i, nil
			}), id, stage.Workers(3)))
			return err
		}, "source"},
		"seq source": {func() error {
			_, err := sink.Slice(ctx, source.Seq(func(yield func(int) bool) {
				for i := range 5 {
					if !yield(i) {
						return
					}
				}
				p("seq")
			}))
			return err
		}, "source"},
		"seq2 source": {func() error {
			_, err := sink.Count(ctx, stage.Map(source.Seq2(func(yield func(int, error) bool) {
				yield(1, nil)
				p("seq2")
			}), id, stage.Workers(2)))
			return err
		}, "source"},
		"lines reader": {func() error {
			_, err := sink.Count(ctx, source.Lines(io.MultiReader(strings.NewReader("a\nb\n"), r68PanicReader{})))
			return err
		}, "source"},
		"indexed at": {func() error {
			_, err := sink.Count(ctx, stage.Map(stage.Indexed(100, func(i int) int {
				if i == 30 {
					p("at")
				}
				return i
			}), id, stage.Workers(4)))
			return err
		}, "source"},
		"source open": {func() error {
			_, err := sink.Count(ctx, stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				p("open")
				return nil, nil
			}))
			return err
		}, "source"},
		"source stop": {func() error {
			_, err := sink.Count(ctx, stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				return func(context.Context) (int, error) { return 0, io.EOF }, func() { p("stop") }
			}))
			return err
		}, "source"},
		"ack done": {func() error {
			i := 0
			_, err := sink.Count(ctx, stage.Map(stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
				return func(context.Context) (int, stage.Ack, error) {
					i++
					if i > 10 {
						return 0, nil, io.EOF
					}
					return i, r68AckFunc(func(error) { p("ack") }), nil
				}, nil
			}), id, stage.Workers(2)))
			return err
		}, "source"},
		"foreach callback": {func() error {
			return sink.ForEach(ctx, items(), func(_ context.Context, v int) error {
				if v == 10 {
					p("foreach")
				}
				return nil
			})
		}, "item"},
		"reduce": {func() error {
			_, err := sink.Reduce(ctx, items(), 0, func(a, v int) int {
				if v == 10 {
					p("reduce")
				}
				return a + v
			})
			return err
		}, "item"},
		"observer Stage": {func() error {
			_, err := sink.Count(stage.Observe(ctx, r68PanicObserver{"Stage"}), stage.Map(items(), id))
			return err
		}, "observer"},
		"observer Received": {func() error {
			_, err := sink.Count(stage.Observe(ctx, r68PanicObserver{"Received"}), stage.Map(items(), id, stage.Workers(3)))
			return err
		}, "observer"},
		"observer Finished": {func() error {
			_, err := sink.Count(stage.Observe(ctx, r68PanicObserver{"Finished"}), stage.Map(items(), id, stage.Workers(3)))
			return err
		}, "observer"},
		"observer Closed": {func() error {
			_, err := sink.Count(stage.Observe(ctx, r68PanicObserver{"Closed"}), stage.Map(items(), id, stage.Workers(3)))
			return err
		}, "observer"},
		"error methods, failfast": {func() error {
			_, err := sink.Slice(ctx, stage.Map(items(), func(_ context.Context, v int) (int, error) {
				if v == 20 {
					return 0, r68PanicErr{}
				}
				return v, nil
			}, stage.Retry(2, 0)))
			return err
		}, "item, not walked"},
		"error methods, cut short": {func() error {
			_, err := sink.Slice(ctx, stage.Map(items(), func(ctx context.Context, v int) (int, error) {
				if v == 20 {
					return 0, r68ErrBoom
				}
				if v > 20 {
					<-ctx.Done()
					return 0, r68PanicErr{}
				}
				return v, nil
			}, stage.Workers(4), stage.Buffer(1)))
			return err
		}, "any"},
		"error methods, handle": {func() error {
			_, err := sink.Slice(ctx, stage.Map(items(), func(_ context.Context, v int) (int, error) { return 0, r68PanicErr{} },
				stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return r68PanicErr{} }))))
			return err
		}, "any"},
		"error methods, forwarded": {func() error {
			_, err := sink.Slice(ctx, stage.Map(items(), func(_ context.Context, v int) (int, error) { return 0, r68PanicErr{} },
				stage.OnError(stage.Forward)))
			return err
		}, "any"},
		"error methods, callback": {func() error {
			return sink.ForEach(ctx, items(), func(context.Context, int) error { return r68PanicErr{} })
		}, "any"},
		"error methods, source": {func() error {
			_, err := sink.Count(ctx, source.Func(func(context.Context) (int, error) { return 0, r68PanicErr{} }))
			return err
		}, "any"},
	}
}

type r68PanicReader struct{}

func (r68PanicReader) Read([]byte) (int, error) { panic(r68PanicValue("read")) }

func r68CheckPanicErr(t *testing.T, name, want string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: the run reported success", name)
		return
	}
	if want == "any" {
		return
	}
	if want == "item, not walked" { // errors.As would call the panicking methods in this test
		var se *stage.Error
		if !errors.As(err, &se) || se.Err != (r68PanicErr{}) || se.Index != 20 {
			t.Errorf("%s: err %v, want the *stage.Error of item 20 around the error", name, err)
		}
		return
	}
	// The sentinel of a panicking error is not walked: r68PanicErr is not
	// among these scenarios' causes.
	var pe *stage.PanicError
	if !errors.As(err, &pe) {
		t.Errorf("%s: err %v, want a *stage.PanicError inside", name, err)
		return
	}
	if !r68NilPanics && !strings.Contains(fmt.Sprint(pe.Value), "r68 panic in") && name != "keyby hash of an uncomparable key" {
		t.Errorf("%s: PanicError.Value %v", name, pe.Value)
	}
	if len(pe.Stack) == 0 {
		t.Errorf("%s: PanicError without a stack", name)
	}
	var se *stage.Error
	var src *stage.SourceError
	switch want {
	case "item":
		if !errors.As(err, &se) {
			t.Errorf("%s: err %v, want a *stage.Error around the PanicError", name, err)
		}
	case "source":
		if !errors.As(err, &src) {
			t.Errorf("%s: err %v, want a *stage.SourceError around the PanicError", name, err)
		}
	}
}

// r68RunPanicScenario runs one of r68PanicScenarios' runs under
// runcheck.Run: the sink must return (its goroutine not ended) with an
// error of the kind want.
func r68RunPanicScenario(t *testing.T, name string, run func() error, want string) {
	t.Helper()
	var err error
	returned := false
	runcheck.Run(t, name, func() { err = run(); returned = true })
	if !returned {
		t.Fatalf("%s: the sink did not return: its goroutine was ended", name)
	}
	r68CheckPanicErr(t, name, want, err)
}

// README: "A panic in your code never crashes the process", each user
// function in turn, in a child process; every run must end with an error
// of the right kind and no goroutine left.
func TestReview68PanicsBecomeErrors(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for name, sc := range r68PanicScenarios() {
			t.Run(name, func(t *testing.T) { r68RunPanicScenario(t, name, sc.run, sc.want) })
		}
	})
}

// README: "... and panic(nil), even under GODEBUG=panicnil=1".
func TestReview68PanicNilBecomesError(t *testing.T) {
	for _, godebug := range []string{"", "panicnil=1"} {
		t.Run("godebug="+godebug, func(t *testing.T) {
			if os.Getenv("SLUICE_RUNCHECK_CHILD") == "" {
				t.Setenv("GODEBUG", godebug)
			}
			runcheck.InChildTest(t, func(t *testing.T) {
				r68NilPanics = true
				defer func() { r68NilPanics = false }()
				if godebug != "" {
					var r any = "unset"
					func() {
						defer func() { r = recover() }()
						panic(nil)
					}()
					if r != nil {
						t.Fatalf("GODEBUG=%s not in force in the child: recover() = %v", godebug, r)
					}
				}
				for name, sc := range r68PanicScenarios() {
					if strings.HasPrefix(name, "error methods") || name == "keyby hash of an uncomparable key" {
						continue
					}
					t.Run(name, func(t *testing.T) { r68RunPanicScenario(t, name, sc.run, sc.want) })
				}
			})
		})
	}
}
