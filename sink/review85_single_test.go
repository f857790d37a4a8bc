package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r85Shapes are one-stage pipelines over a source whose stage may call its
// function in the sink's goroutine (a single item, a source that never
// waits): f is the stage's function.
func r85Shapes(f func(context.Context, int) (int, error)) map[string]func() stage.Stream[int] {
	return map[string]func() stage.Stream[int]{
		"1 item ordered w4": func() stage.Stream[int] {
			return stage.Map(source.Slice([]int{0}), f, stage.Workers(4), stage.Ordered())
		},
		"1 item w4": func() stage.Stream[int] { return stage.Map(source.Slice([]int{0}), f, stage.Workers(4)) },
		"1 item w1": func() stage.Stream[int] { return stage.Map(source.Slice([]int{0}), f, stage.Workers(1)) },
		"1 item chain": func() stage.Stream[int] {
			return stage.Map(stage.Map(source.Slice([]int{0}), r85ID, stage.Workers(2), stage.Ordered()), f, stage.Workers(3), stage.Ordered())
		},
		"1 item indexed": func() stage.Stream[int] {
			return stage.Map(stage.Indexed(1, func(int) int { return 0 }), f, stage.Workers(2), stage.Ordered())
		},
		"never waits, cheap first": func() stage.Stream[int] {
			i := 0
			next := func(context.Context) (int, error) {
				if i == 2000 {
					return 0, io.EOF
				}
				i++
				return 2000 - i, nil // the item f acts on (0) comes last
			}
			return stage.Map(stage.NeverWaits(source.Func(next)), f, stage.Workers(4))
		},
		"slice ordered, cheap first": func() stage.Stream[int] {
			items := r85Ints(2000)
			for i := range items {
				items[i] = 1999 - i
			}
			return stage.Map(source.Slice(items), f, stage.Workers(4), stage.Ordered())
		},
	}
}

// Cancellation: "A caller's ctx of a context type the context package cannot
// see into (its Done channel is not a standard context's) is watched from a
// goroutine of the run, so the functions' ctx ends a moment after it"; "calls
// in flight see ctx.Done()"; a sink returns "when ctx was cancelled, an error
// for which errors.Is(err, context.Canceled)".
//
// The stage's function (perhaps called in the sink's goroutine, where a
// 1-item run starts no goroutine of its own) waits for its ctx; the caller's
// own context type is then done: the call must see it, and the sink return
// the cancellation. And the same with a standard context.
func TestReview85CallInTheSinksGoroutineSeesTheCancellation(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, ctxKind := range []string{ctxtest.Own, ctxtest.Std} {
			started := make(chan struct{}, 1)
			f := func(ctx context.Context, v int) (int, error) {
				if v != 0 {
					return v, nil
				}
				started <- struct{}{}
				<-ctx.Done()
				return 0, ctx.Err()
			}
			for name, mk := range r85Shapes(f) {
				for _, kind := range []string{"foreach", "first", "slice", "all", "chan"} {
					t.Run(fmt.Sprintf("%s/%s/%s", ctxKind, name, kind), func(t *testing.T) {
						ctx, cancel := ctxtest.New(ctxKind)
						defer cancel()
						go func() {
							if r85Wait(t, "the call", started) {
								cancel()
							}
						}()
						var err error
						runcheck.Run(t, kind, func() {
							s := mk()
							switch kind {
							case "foreach":
								err = sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
							case "first":
								var ok bool
								var v int
								v, ok, err = sink.First(ctx, stage.Filter(s, func(_ context.Context, v int) (bool, error) { return v == 0, nil }, stage.Workers(1)))
								if ok {
									t.Errorf("First = %d", v)
								}
							case "slice":
								_, err = sink.Slice(ctx, s)
							case "all":
								for _, e := range sink.All(ctx, s) {
									err = e
								}
							case "chan":
								out := make(chan int, 5000)
								err = sink.Chan(ctx, s, out)
							}
						})
						if !errors.Is(err, context.Canceled) {
							t.Fatalf("err %v, want the cancellation", err)
						}
					})
				}
			}
		}
	})
}

// PanicError: "It reaches the caller wrapped in an *Error or a *SourceError,
// so the process never crashes because a user function panicked"; Error:
// "Stage is the stage's name"; ForEach's "foreach" *Error is for f's own
// failure. A panic in the stage's function called in the sink's goroutine is
// the stage's *Error, at its item, not the sink's.
func TestReview85PanicInACallInTheSinksGoroutineIsTheStages(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		f := func(_ context.Context, v int) (int, error) {
			if v == 0 {
				panic("f at 0")
			}
			return v, nil
		}
		for name, mk := range r85Shapes(f) {
			for _, kind := range []string{"foreach", "first", "slice", "all", "reduce"} {
				t.Run(name+"/"+kind, func(t *testing.T) {
					var err error
					cb := 0
					runcheck.Run(t, kind, func() {
						s := mk()
						switch kind {
						case "foreach":
							err = sink.ForEach(context.Background(), s, func(context.Context, int) error { cb++; return nil })
						case "first":
							_, _, err = sink.First(context.Background(), stage.Filter(s, func(_ context.Context, v int) (bool, error) { return v == 0, nil }, stage.Workers(1)))
						case "slice":
							_, err = sink.Slice(context.Background(), s)
						case "all":
							for _, e := range sink.All(context.Background(), s) {
								if e != nil {
									err = e
								}
							}
						case "reduce":
							_, err = sink.Reduce(context.Background(), s, 0, func(a, v int) int { cb++; return a + v })
						}
					})
					var se *stage.Error
					var pe *stage.PanicError
					if !errors.As(err, &se) || se.Stage == "foreach" || se.Stage == "reduce" || se.Input != any(0) || !errors.As(err, &pe) || pe.Value != "f at 0" {
						t.Fatalf("err %v (%#v), want the map stage's *Error wrapping the panic", err, se)
					}
				})
			}
		}
	})
}

// Apply: "so an item may emit without end once its turn has come, and may
// wait for its own outputs to be consumed"; Workers: "Add Buffer(1) to keep
// every worker a goroutine of the stage's own: the stage's function may then
// wait for its consumer". A single item emits outputs one by one, each only
// once the sink's callback has seen the one before (Buffer(1)), ordered or
// not; and a single item emits many outputs without waiting (no Buffer), all
// delivered in order.
func TestReview85SingleItemEmitsManyOutputs(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, opts := range map[string][]stage.Option{
			"w1":         {stage.Workers(1)},
			"w4":         {stage.Workers(4)},
			"w4 ordered": {stage.Workers(4), stage.Ordered()},
		} {
			// Ping-pong with Buffer(1).
			seen := make(chan int, 1)
			s := stage.Apply(source.Slice([]int{0}), func(_ context.Context, _ int, emit func(int) bool) error {
				for i := range 200 {
					if !emit(i) {
						return errors.New("emit refused")
					}
					select {
					case v := <-seen:
						if v != i {
							return fmt.Errorf("callback saw %d, want %d", v, i)
						}
					case <-r85Timeout():
						return errors.New("hung")
					}
				}
				return nil
			}, append(append([]stage.Option(nil), opts...), stage.Buffer(1))...)
			n := 0
			var err error
			runcheck.Run(t, "foreach", func() {
				err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
					n++
					seen <- v
					return nil
				})
			})
			if err != nil || n != 200 {
				t.Fatalf("%v: ping-pong: %d outputs, %v", opts, n, err)
			}

			// Many outputs, no waiting, no Buffer.
			s2 := stage.Apply(source.Slice([]int{0}), func(_ context.Context, _ int, emit func(int) bool) error {
				for i := range 100000 {
					if !emit(i) {
						return errors.New("emit refused")
					}
				}
				return nil
			}, opts...)
			next := 0
			runcheck.Run(t, "foreach", func() {
				err = sink.ForEach(context.Background(), s2, func(_ context.Context, v int) error {
					if v != next {
						return fmt.Errorf("got %d, want %d", v, next)
					}
					next++
					return nil
				})
			})
			if err != nil || next != 100000 {
				t.Fatalf("%v: %d outputs, %v", opts, next, err)
			}
		}
	})
}

func r85Timeout() <-chan time.Time { return time.After(runcheck.Watchdog) }

// Retry: "The wait holds the worker and ends early, without a retry, when the
// run is cancelled"; Cancellation: a caller's own context type "is watched
// from a goroutine of the run". A call that fails once waits an hour's
// backoff, perhaps in the sink's goroutine (a 1-item run); the caller's ctx
// is then done: the wait ends, no retry is made, the sink returns the
// cancellation.
func TestReview85RetryWaitInTheSinksGoroutineEndsAtCancellation(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, ctxKind := range []string{ctxtest.Own, ctxtest.Std} {
			for _, name := range []string{"1 item ordered w4", "1 item w1", "1 item w4", "cheap first"} {
				t.Run(fmt.Sprintf("%s/%s", ctxKind, name), func(t *testing.T) {
					ctx, cancel := ctxtest.New(ctxKind)
					defer cancel()
					var attempts int
					f := func(_ context.Context, v int) (int, error) {
						if v != 0 {
							return v, nil
						}
						attempts++
						if attempts == 1 {
							cancel() // the wait for the retry comes after
						}
						return 0, errR85Boom
					}
					opts := []stage.Option{stage.Retry(2, time.Hour)}
					var s stage.Stream[int]
					switch name {
					case "1 item ordered w4":
						s = stage.Map(source.Slice([]int{0}), f, append(opts, stage.Workers(4), stage.Ordered())...)
					case "1 item w1":
						s = stage.Map(source.Slice([]int{0}), f, append(opts, stage.Workers(1))...)
					case "1 item w4":
						s = stage.Map(source.Slice([]int{0}), f, append(opts, stage.Workers(4))...)
					default:
						items := r85Ints(2000)
						for i := range items {
							items[i] = 1999 - i
						}
						s = stage.Map(source.Slice(items), f, append(opts, stage.Workers(4))...)
					}
					var err error
					runcheck.Run(t, "slice", func() { _, err = sink.Slice(ctx, s) })
					if !errors.Is(err, context.Canceled) || attempts != 1 {
						t.Fatalf("err %v after %d attempts, want the cancellation after 1", err, attempts)
					}
				})
			}
		}
	})
}

// Chan: "If the run fails while Chan waits on out, Chan stops waiting";
// Cancellation: "from the moment its Done channel is closed the run takes no
// new step". Chan waits on an out nobody reads after two values; the
// caller's ctx (standard, or of its own type) ends: Chan returns the
// cancellation.
func TestReview85ChanStopsWaitingAtTheCallersDone(t *testing.T) {
	for _, ctxKind := range []string{ctxtest.Std, ctxtest.Own} {
		for name, mk := range r85Streams() {
			t.Run(fmt.Sprintf("%s/%s", ctxKind, name), func(t *testing.T) {
				ctx, cancel := ctxtest.New(ctxKind)
				defer cancel()
				out := make(chan int) // unbuffered: after two values nobody reads
				var err error
				runcheck.Run(t, "chan", func() {
					done := make(chan struct{})
					go func() {
						defer close(done)
						err = sink.Chan(ctx, mk(), out)
					}()
					for range 2 {
						select {
						case <-out:
						case <-done:
							t.Errorf("Chan returned %v early", err)
							return
						}
					}
					cancel()
					r85Wait(t, "chan", done)
				})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Chan = %v", err)
				}
			})
		}
	}
}
