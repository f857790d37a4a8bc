package stage_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "An observer is user code: a panic in Stage or in a Watcher's method fails
// the run, and the process goes on. The sink returns an error wrapping a
// *PanicError (unless the run had failed already ...). After a panic, the
// watcher is told nothing more in that run but its Closed." and (Observe)
// "Observers attached by several calls all see every stage, each on its own:
// one that panics (see Watcher) is told nothing more, the others are told
// everything." With one worker the calls are sequential, so "nothing more"
// is exact: no Received nor Finished after the one that panicked.
func TestReview70PanicInWatcherMethod(t *testing.T) {
	for _, where := range []string{"Received", "Finished"} {
		for _, m := range modes {
			t.Run(where+"/"+m.String(), func(t *testing.T) {
				var calls atomic.Int64
				var panicked atomic.Bool
				bad := &r70obs{}
				bad.armW = func(w *r70watch) {
					if w.info.Name != "m" {
						return
					}
					hook := func() {
						if panicked.Load() && m.workers == 1 {
							bad.violate("%s told after its panic", where)
						}
						if w.recv.Load() >= 5 && panicked.CompareAndSwap(false, true) {
							w.panicked.Store(true)
							panic(io.ErrUnexpectedEOF)
						}
					}
					if where == "Received" {
						w.onReceived = hook
					} else {
						w.onFinished = func(time.Duration, error) { hook() }
					}
				}
				good := &r70obs{}
				s := stage.Map(source.Slice(ints(40)), func(_ context.Context, v int) (int, error) {
					calls.Add(1)
					return v, nil
				}, m.opts(stage.Name("m"))...)
				s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, stage.Name("f"))
				var err error
				runcheck.Run(t, "slice", func() {
					bad.arm()
					good.sinkG.Store(bad.sinkG.Load())
					_, err = sink.Slice(stage.Observe(stage.Observe(context.Background(), bad), good), s)
				})
				var pe *stage.PanicError
				if !errors.As(err, &pe) || pe.Value != io.ErrUnexpectedEOF || len(pe.Stack) == 0 || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("err %v; want one wrapping a *PanicError of the observer's panic value", err)
				}
				_, vs := bad.snapshot()
				for _, v := range vs {
					t.Error("panicking observer:", v)
				}
				for _, w := range bad.watchers {
					if c := w.closed.Load(); c != 1 {
						t.Errorf("panicking observer, stage %s: Closed %d times, want 1", w.info.Name, c)
					}
				}
				for _, v := range good.check() {
					t.Error("other observer:", v)
				}
				if g := good.byName("m"); g == nil || g.recv.Load() != calls.Load() {
					t.Errorf("other observer was not told every call: %d received, %d calls", g.recv.Load(), calls.Load())
				}
			})
		}
	}
}

// "a panic in Stage ... fails the run, and the process goes on. The sink
// returns an error wrapping a *PanicError". Every watcher either observer
// returned is closed once.
func TestReview70PanicInStage(t *testing.T) {
	for _, at := range []string{"first", "second"} {
		t.Run(at, func(t *testing.T) {
			bad := &r70obs{}
			bad.stageHook = func(info stage.Info) {
				if info.Name == at {
					panic("stage hook boom")
				}
			}
			good := &r70obs{}
			s := stage.Map(source.Slice(ints(10)), double, stage.Name("first"))
			s = stage.Map(s, double, stage.Name("second"))
			var err error
			runcheck.Run(t, "slice", func() {
				bad.arm()
				good.sinkG.Store(bad.sinkG.Load())
				_, err = sink.Slice(stage.Observe(stage.Observe(context.Background(), good), bad), s)
			})
			var pe *stage.PanicError
			if !errors.As(err, &pe) || pe.Value != "stage hook boom" {
				t.Fatalf("err %v; want one wrapping the Stage hook's *PanicError", err)
			}
			for _, v := range good.check() {
				t.Error("other observer:", v)
			}
			ws, vs := bad.snapshot()
			for _, v := range vs {
				t.Error("panicking observer:", v)
			}
			for _, w := range ws {
				if c := w.closed.Load(); c > 1 {
					t.Errorf("stage %s closed %d times", w.info.Name, c)
				}
			}
		})
	}
}

// "a panic in Closed, which comes once the run is over, is returned unless
// the run failed or the sink's callback stopped it with ErrStop".
func TestReview70PanicInClosed(t *testing.T) {
	build := func(fail bool) stage.Stream[int] {
		return stage.Map(source.Slice(ints(20)), func(_ context.Context, v int) (int, error) {
			if fail && v == 3 {
				return 0, errR70
			}
			return v, nil
		}, stage.Name("m"), stage.Workers(2))
	}
	closedPanics := func() *r70obs {
		o := &r70obs{}
		o.armW = func(w *r70watch) { w.onClosed = func() { panic("closed boom") } }
		return o
	}
	t.Run("success", func(t *testing.T) {
		o := closedPanics()
		_, err := sink.Slice(stage.Observe(context.Background(), o), build(false))
		var pe *stage.PanicError
		if !errors.As(err, &pe) || pe.Value != "closed boom" {
			t.Fatalf("err %v; want the *PanicError of Closed", err)
		}
	})
	t.Run("forwarded", func(t *testing.T) {
		o := closedPanics()
		s := stage.Map(build(false), func(_ context.Context, v int) (int, error) {
			if v%2 == 0 {
				return 0, errR70
			}
			return v, nil
		}, stage.OnError(stage.Forward))
		_, err := sink.Slice(stage.Observe(context.Background(), o), s)
		var pe *stage.PanicError
		if !errors.As(err, &pe) || pe.Value != "closed boom" {
			t.Fatalf("err %v; want the *PanicError of Closed", err)
		}
	})
	t.Run("failed", func(t *testing.T) {
		o := closedPanics()
		_, err := sink.Slice(stage.Observe(context.Background(), o), build(true))
		var e *stage.Error
		var pe *stage.PanicError
		if !errors.As(err, &e) || e.Index != 3 || errors.As(err, &pe) {
			t.Fatalf("err %v; want the item's *Error, not the Closed panic", err)
		}
	})
	t.Run("errstop", func(t *testing.T) {
		o := closedPanics()
		err := sink.ForEach(stage.Observe(context.Background(), o), build(false), func(context.Context, int) error { return stage.ErrStop })
		if err != nil {
			t.Fatalf("err %v; want nil (the callback stopped the run)", err)
		}
	})
	t.Run("first", func(t *testing.T) {
		o := closedPanics()
		v, ok, err := sink.First(stage.Observe(context.Background(), o), build(false))
		if err != nil || !ok {
			t.Fatalf("First = %v, %v, %v; want the first item and nil (never changed by what follows it)", v, ok, err)
		}
	})
	t.Run("all-break", func(t *testing.T) {
		o := closedPanics()
		for _, err := range sink.All(stage.Observe(context.Background(), o), build(false)) {
			if err != nil {
				t.Fatalf("All yielded %v before the break", err)
			}
			break
		}
	})
	// (Added with the doc's "returned only where the sink would otherwise
	// have returned nil: not when ... a source failed, the caller's context
	// ended it".)
	t.Run("cancelled", func(t *testing.T) {
		o := closedPanics()
		ctx, cancel := context.WithCancelCause(stage.Observe(context.Background(), o))
		err := sink.ForEach(ctx, build(false), func(context.Context, int) error {
			cancel(errR70)
			return nil
		})
		var pe *stage.PanicError
		if !errors.Is(err, context.Canceled) || errors.As(err, &pe) {
			t.Fatalf("err %v; want the caller's cancellation, not the Closed panic", err)
		}
	})
	t.Run("source-error", func(t *testing.T) {
		o := closedPanics()
		n := 0
		s := stage.Map(source.Func(func(context.Context) (int, error) {
			if n++; n > 3 {
				return 0, errR70
			}
			return n, nil
		}), func(_ context.Context, v int) (int, error) { return v, nil })
		_, err := sink.Slice(stage.Observe(context.Background(), o), s)
		var se *stage.SourceError
		var pe *stage.PanicError
		if !errors.As(err, &se) || !errors.Is(err, errR70) || errors.As(err, &pe) {
			t.Fatalf("err %v; want the *SourceError, not the Closed panic", err)
		}
	})
}

// "The sink returns an error wrapping a *PanicError (unless the run had
// failed already ...)": a watcher that panics on the calls cut short by a
// FailFast error leaves the run's result the *Error that ended it.
func TestReview70PanicAfterFailure(t *testing.T) {
	const w = 4
	started := newR70gate(w - 1)
	s := stage.Map(source.Slice(ints(w)), func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			<-started.Wait()
			return 0, errR70
		}
		started.Arrive()
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Name("m"), stage.Workers(w), stage.Buffer(1))
	o := &r70obs{}
	o.armW = func(wt *r70watch) {
		wt.onFinished = func(_ time.Duration, err error) {
			if r70kind(err) == "cut" {
				panic("cut boom")
			}
		}
	}
	var err error
	runcheck.Run(t, "slice", func() { _, err = sink.Slice(stage.Observe(context.Background(), o), s) })
	var e *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &e) || e.Index != 0 || errors.As(err, &pe) {
		t.Fatalf("err %v; want the *Error of item 0 and no *PanicError", err)
	}
}
