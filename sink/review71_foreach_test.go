package sink_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type review71Key struct{}

// "ForEach runs s and calls f for each value, one call at a time, in arrival
// order, with the run's context." (the run's context is "derived from" the
// caller's, so it carries the caller's values)
//
// Over an Ordered Map of 16 workers, f never overlaps, sees input order, and
// its ctx carries the caller's value; all items arrive once.
func TestReview71ForEachOneAtATimeInOrder(t *testing.T) {
	for _, n := range []int{0, 1, 2, 17, 500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ctx := context.WithValue(context.Background(), review71Key{}, "caller")
			s := stage.Map(source.Slice(review71Ints(n)), func(_ context.Context, v int) (int, error) { return v, nil },
				stage.Workers(16), stage.Ordered())
			var inflight atomic.Int32
			var got []int
			var err error
			review71Run(t, "foreach", func() {
				err = sink.ForEach(ctx, s, func(fctx context.Context, v int) error {
					if inflight.Add(1) != 1 {
						t.Errorf("two calls of f at once")
					}
					defer inflight.Add(-1)
					if fctx.Value(review71Key{}) != "caller" {
						t.Errorf("f's ctx does not carry the caller's value")
					}
					got = append(got, v)
					return nil
				})
			})
			if err != nil || len(got) != n {
				t.Fatalf("ForEach = %v after %d items, want nil after %d", err, len(got), n)
			}
			for i, v := range got {
				if v != i {
					t.Fatalf("got %v, want input order", got)
				}
			}
		})
	}
}

// "An error returned by f (or a panic in f) ends the run as a FailFast error
// does: the run's context is cancelled with a *stage.Error (Stage "foreach")
// as its cause, and ForEach returns that error once every goroutine has
// exited." and stage.Error's "The user's error is Err, unchanged; errors.Is
// and errors.As see through Error to it".
//
// f fails at its first item while another item's call is in flight (forced:
// the first item's call waits for the second to start); the in-flight call
// sees the run's ctx end with the very *stage.Error ForEach returns.
func TestReview71ForEachErrorIsTheCause(t *testing.T) {
	for _, mode := range []string{"error", "panic", "panic-error"} {
		t.Run(mode, func(t *testing.T) {
			started := make(chan struct{})
			cause := make(chan error, 1)
			s := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, v int) (int, error) {
				if v == 0 {
					select {
					case <-started:
					case <-time.After(runcheck.Watchdog):
						return 0, errors.New("hang: item 1 never started")
					}
					return v, nil
				}
				close(started)
				<-ctx.Done()
				cause <- context.Cause(ctx)
				return 0, ctx.Err()
			}, stage.Workers(2), stage.Buffer(1))
			var err error
			review71Run(t, "foreach", func() {
				err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
					switch mode {
					case "panic":
						panic("review71 callback panic")
					case "panic-error":
						panic(errReview71Boom)
					}
					return errReview71Boom
				})
			})
			var se *stage.Error
			if !errors.As(err, &se) || se.Stage != "foreach" || se.Input != 0 {
				t.Fatalf("ForEach = %v, want a *stage.Error of Stage foreach, Input 0", err)
			}
			switch mode {
			case "error":
				if se.Err != errReview71Boom || !errors.Is(err, errReview71Boom) {
					t.Fatalf("Err = %v, want the callback's own error", se.Err)
				}
			case "panic", "panic-error":
				var pe *stage.PanicError
				if !errors.As(err, &pe) {
					t.Fatalf("ForEach = %v, want a *stage.PanicError inside", err)
				}
				if mode == "panic" && pe.Value != "review71 callback panic" {
					t.Fatalf("PanicError.Value = %v", pe.Value)
				}
				if mode == "panic-error" && !errors.Is(err, errReview71Boom) {
					t.Fatalf("errors.Is does not see the panic's error value through %v", err)
				}
			}
			select {
			case c := <-cause:
				var ce *stage.Error
				if !errors.As(c, &ce) || ce != se {
					t.Fatalf("the run's cause = %v, want the *stage.Error ForEach returned (%v)", c, err)
				}
			default:
				t.Fatalf("the call in flight did not see the run's ctx end before ForEach returned")
			}
		})
	}
}

// "f may return stage.ErrStop (or an error wrapping it: see stage.IsStop) to
// end the run early without an error: ForEach then returns nil (or the
// *ForwardedError of what was forwarded before)." and stage.IsStop: "that
// ErrStop is not inside an *Error, a *SourceError or a *PanicError".
func TestReview71ForEachStop(t *testing.T) {
	build := func() stage.Stream[int] {
		return stage.Map(source.Slice(review71Ints(100)), func(_ context.Context, v int) (int, error) {
			if v == 1 || v == 2 {
				return 0, fmt.Errorf("item %d: %w", v, errReview71Boom)
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(stage.Forward))
	}
	stops := map[string]error{
		"ErrStop": stage.ErrStop,
		"wrapped": fmt.Errorf("done here: %w", stage.ErrStop),
		"joined":  errors.Join(errors.New("x"), stage.ErrStop),
	}
	for name, stop := range stops {
		for _, at := range []int{0, 3, 99} {
			t.Run(fmt.Sprintf("%s/at-%d", name, at), func(t *testing.T) {
				calls := 0
				var err error
				review71Run(t, "stop", func() {
					err = sink.ForEach(context.Background(), build(), func(_ context.Context, v int) error {
						calls++
						if v == at {
							return stop
						}
						return nil
					})
				})
				var fe *sink.ForwardedError
				switch {
				case at == 0:
					if err != nil || calls != 1 {
						t.Fatalf("ForEach = %v after %d calls, want nil after 1", err, calls)
					}
				default:
					if !errors.As(err, &fe) || fe.Count != 2 || len(fe.Sample) != 2 || !errors.Is(err, errReview71Boom) {
						t.Fatalf("ForEach = %v, want the *ForwardedError of items 1 and 2", err)
					}
					if calls != at-1 {
						t.Fatalf("f called %d times, want %d", calls, at-1)
					}
				}
			})
		}
	}
	t.Run("stop-inside-error-fails", func(t *testing.T) {
		inner := &stage.Error{Stage: "nested", Err: stage.ErrStop}
		var err error
		review71Run(t, "stop", func() {
			err = sink.ForEach(context.Background(), source.Slice([]int{1, 2}), func(context.Context, int) error { return inner })
		})
		if err == nil {
			t.Fatalf("ForEach = nil for a callback that returned an ErrStop inside a *stage.Error, want a failure")
		}
	})
}

// "An error returned by f ... ends the run", package stage: "when ctx was
// cancelled, an error for which errors.Is(err, context.Canceled) ... holds",
// "from the moment its Done channel is closed ... the sink delivers nothing
// more", and stage.Run: "a cancellation of ctx while f works on the last item
// comes before the end".
//
// f cancels the caller's ctx at item k (every k, the last included) and
// returns nil: no further call of f, and ForEach reports the cancellation.
func TestReview71ForEachCallbackCancels(t *testing.T) {
	const n = 6
	for _, kind := range review71Kinds {
		for _, workers := range []int{1, 4} {
			for k := range n {
				t.Run(fmt.Sprintf("%s/w%d/at-%d", kind, workers, k), func(t *testing.T) {
					ctx, cancel := ctxtest.New(kind)
					defer cancel()
					g := &review71Gen{n: n}
					s := stage.Map(source.Func(g.next), func(_ context.Context, v int) (int, error) { return v, nil },
						stage.Workers(workers))
					calls := 0
					var err error
					review71Run(t, "foreach", func() {
						err = sink.ForEach(ctx, s, func(context.Context, int) error {
							calls++
							if calls == k+1 {
								cancel()
								g.stopped.Store(true)
							}
							return nil
						})
					})
					if !errors.Is(err, context.Canceled) || calls != k+1 {
						t.Fatalf("ForEach = %v after %d calls, want context.Canceled after %d", err, calls, k+1)
					}
					// At most one call of next (never concurrent) may have
					// been on its way in a worker when f cancelled.
					if g.afterStop.Load() > 1 {
						t.Fatalf("next called %d times after the cancel", g.afterStop.Load())
					}
				})
			}
		}
	}
}

// "A function that calls Goexit on the sink's own goroutine ends that
// goroutine: the sink does not return, as with any function, and the run's
// goroutines exit." (stage.ErrGoexit: "The functions that run on the sink's
// goroutine: the sink's callback, ...")
func TestReview71ForEachGoexitInCallback(t *testing.T) {
	for _, sinkName := range []string{"foreach", "reduce", "all"} {
		t.Run(sinkName, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				opts := goleak.IgnoreCurrent()
				s := stage.Map(source.Slice(review71Ints(100)), func(_ context.Context, v int) (int, error) { return v, nil },
					stage.Workers(4), stage.Buffer(2))
				done := make(chan struct{})
				returned := false
				go func() {
					defer close(done)
					switch sinkName {
					case "foreach":
						_ = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
							if v >= 0 {
								runtime.Goexit()
							}
							return nil
						})
					case "reduce":
						_, _ = sink.Reduce(context.Background(), s, 0, func(acc, v int) int {
							runtime.Goexit()
							return acc
						})
					case "all":
						for range sink.All(context.Background(), s) {
							runtime.Goexit()
						}
					}
					returned = true
				}()
				if !review71Wait(t, "goexit", done) {
					return
				}
				if returned {
					t.Fatalf("the sink returned after its callback called runtime.Goexit")
				}
				if err := goleak.Find(opts); err != nil {
					t.Fatalf("goroutines of the run left: %v", err)
				}
			})
		})
	}
}

// "A nil f panics." (ForEach, Reduce) and "A nil out panics." (Chan): at the
// call, with no goroutine of a run left behind.
func TestReview71NilCallbacksPanic(t *testing.T) {
	s := source.Slice([]int{1})
	cases := map[string]func(){
		"foreach": func() { _ = sink.ForEach[int](context.Background(), s, nil) },
		"reduce":  func() { _, _ = sink.Reduce[int, int](context.Background(), s, 0, nil) },
		"chan":    func() { _ = sink.Chan(context.Background(), s, nil) },
	}
	for name, call := range cases {
		t.Run(name, func(t *testing.T) {
			var r any
			review71Run(t, name, func() {
				defer func() { r = recover() }()
				call()
			})
			if r == nil {
				t.Fatalf("%s with a nil callback did not panic", name)
			}
		})
	}
}
