package stage_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// The caller cancels its ctx inside the first Stage, under every kind of
// context (the own kind is heard from the run's watcher): nothing is
// taken, nothing delivered, the sink returns context.Canceled (Run's doc),
// the source is stopped, the observer closed once, and every goroutine has
// exited. An Until over a stop context of the caller's own type is in the
// pipeline, so that two watchers start with the run.
func TestReview74ParentCancelledInStage(t *testing.T) {
	for _, kind := range []string{ctxtest.Std, ctxtest.Own, ctxtest.Wrap, ctxtest.Cause} {
		t.Run(kind, func(t *testing.T) {
			parent, cancel := ctxtest.New(kind)
			defer cancel()
			stop := ctxtest.NewDoneCtx()
			o := &r74obs{watch: true, hook: func(n int, _ stage.Info) {
				if n == 1 {
					cancel()
				}
			}}
			src := &r74src{n: 10}
			a := stage.Map(src.stream(), double)
			s := stage.Map(stage.Until(a, stop), double, stage.Workers(2))
			var calls atomic.Int32
			var err error
			runcheck.Run(t, "run", func() {
				err = stage.Run(stage.Observe(parent, o), s, func(context.Context, int, error) error {
					calls.Add(1)
					return nil
				})
			})
			if !r74isCanceled(err) {
				t.Errorf("err = %v; want context.Canceled", err)
			}
			if calls.Load() != 0 || src.nexts.Load() != 0 {
				t.Errorf("f called %d times, next %d times; want none", calls.Load(), src.nexts.Load())
			}
			if !src.stopped.Load() || o.closed.Load() != 2 {
				t.Errorf("source stopped %v, Closed called %d times; want true, 2", src.stopped.Load(), o.closed.Load())
			}
		})
	}
}

// Until's stop context is cancelled inside the Stage of a stage it drains
// (while the run is opened): the drain still happens. Until: once stop is
// done "no source upstream is asked for another item" and the sink
// returns nil "as at the end of the input"; Source: the source's context
// ends "under Until when the stop context is done" (by its stop, every
// goroutine has exited). Under a Background and an own parent, with stop
// contexts of every kind (the own kind is heard from the run's watcher).
func TestReview74StopCancelledInStageDrains(t *testing.T) {
	for _, pk := range []string{"background", ctxtest.Own} {
		for _, sk := range []string{ctxtest.Std, ctxtest.Own, ctxtest.Wrap, ctxtest.Cause} {
			t.Run(pk+"/"+sk, func(t *testing.T) {
				var parent context.Context = context.Background()
				if pk == ctxtest.Own {
					p := ctxtest.NewDoneCtx()
					defer p.Cancel()
					parent = p
				}
				stop, cancelStop := ctxtest.New(sk)
				defer cancelStop()
				o := &r74obs{hook: func(_ int, info stage.Info) {
					if info.Name == "inside" {
						cancelStop()
					}
				}}
				src := &r74src{n: 10}
				in := stage.Map(src.stream(), double, stage.Name("inside"), stage.Workers(2))
				out := stage.Map(stage.Until(in, stop), double, stage.Name("outside"), stage.Workers(2))
				var got []int
				var err error
				runcheck.Run(t, "slice", func() { got, err = sink.Slice(stage.Observe(parent, o), out) })
				if err != nil || len(got) != 0 || src.nexts.Load() != 0 {
					t.Errorf("got %v, err %v, %d nexts; want nothing, nil, 0", got, err, src.nexts.Load())
				}
				if !src.stopped.Load() || !src.doneAtStop.Load() {
					t.Errorf("source stopped %v, its context done at stop %v; want both", src.stopped.Load(), src.doneAtStop.Load())
				}
			})
		}
	}
}

// A stop context of the caller's own type cancelled after the run started,
// while the source waits in next on its context: only the run's watcher of
// the stop context can end that context. Source: the
// context "ends ... under Until when the stop context is done"; "an error
// next returns once stop is done ends the stream quietly". And the same for
// a parent of the caller's own type cancelled while next waits: the run
// ends with context.Canceled. Gated: the cancellation comes once next
// waits. A watcher that never ran would hang (watchdog in a child process).
func TestReview74WatcherWakesWaitingSource(t *testing.T) {
	for _, what := range []string{"stop", "parent"} {
		t.Run(what, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				parent, stop := ctxtest.NewDoneCtx(), ctxtest.NewDoneCtx()
				defer parent.Cancel()
				defer stop.Cancel()
				waiting := make(chan struct{})
				src := &r74src{n: 100, blockAt: 2, block: func(ctx context.Context) error {
					close(waiting)
					<-ctx.Done()
					return ctx.Err()
				}}
				go func() {
					<-waiting
					if what == "stop" {
						stop.Cancel()
					} else {
						parent.Cancel()
					}
				}()
				var got []int
				var err error
				runcheck.Run(t, "slice", func() { got, err = sink.Slice(parent, stage.Until(src.stream(), stop)) })
				if what == "stop" {
					if err != nil || len(got) != 1 {
						t.Fatalf("got %v, err %v; want [1], nil (drained)", got, err)
					}
					return
				}
				if !r74isCanceled(err) {
					t.Fatalf("err = %v; want context.Canceled", err)
				}
			})
		})
	}
}

// A run that fails its checks (a Tee branch nobody reads) under a parent
// and a stop context of the caller's own type, whose watchers run: the
// run's failure stops them, and the sink returns the check's error once
// every goroutine exited (Tee: "fails before any goroutine of it starts"
// is not asked of the run's watchers of contexts: Observer.Stage's
// exception).
func TestReview74CheckFailureStopsWatchers(t *testing.T) {
	parent, stop := ctxtest.NewDoneCtx(), ctxtest.NewDoneCtx()
	defer parent.Cancel()
	defer stop.Cancel()
	src := &r74src{n: 10}
	b := stage.Tee(stage.Until(stage.Map(src.stream(), double), stop), 2)
	var err error
	runcheck.Run(t, "count", func() { _, err = sink.Count(parent, stage.Map(b[0], double)) })
	if !errors.Is(err, stage.ErrUnconsumedBranch) || src.nexts.Load() != 0 || !src.stopped.Load() {
		t.Fatalf("err %v, %d nexts, stopped %v; want ErrUnconsumedBranch, 0, true", err, src.nexts.Load(), src.stopped.Load())
	}
}

// A watcher is counted in run.hooks until it returns: Run "returns only
// when every goroutine of the run has exited". The parent (own type) is
// cancelled by f, which returns once the run's watcher of it asks its Err
// (which waits at a gate); the sink sees the parent's Done closed and
// finishes. The gate
// opens only once the sink's goroutine waits in finish for the run's hooks,
// so a sink that returned first did not wait for the watcher.
func TestReview74WatcherCountedUntilItReturns(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		parent := newR74ctx()
		defer parent.Cancel()
		entered, gate := make(chan struct{}), make(chan struct{})
		var sinkG atomic.Int64
		var once atomic.Bool
		parent.onErr = func() {
			if parent.DoneCtx.Err() != nil && r74calledFrom("(*watched).AfterFunc") && once.CompareAndSwap(false, true) {
				close(entered)
				<-gate
			}
		}
		returned := make(chan error, 1)
		go func() {
			id, _ := runcheck.Goroutines()
			sinkG.Store(id)
			returned <- stage.Run(parent, stage.Map((&r74src{n: 100}).stream(), double, stage.Workers(2)),
				func(context.Context, int, error) error {
					parent.Cancel()
					<-entered // the watcher heard it, and waits in Err
					return nil
				})
		}()
		<-entered
		for {
			select {
			case err := <-returned:
				close(gate)
				t.Fatalf("the sink returned (%v) while the run's watcher of its ctx was still in the ctx's Err", err)
			default:
			}
			if r74inSettleWait(sinkG.Load()) {
				break
			}
			runtime.Gosched()
		}
		close(gate)
		if err := <-returned; !r74isCanceled(err) {
			t.Fatalf("err = %v; want context.Canceled", err)
		}
	})
}

// The opening ends early (a panic or a Goexit) once watchers were made:
// the parent's (own type, from newRun) and an outer Until's (own type).
// The sink's finish stops and waits for them (no hang), none is left
// running (no leak), and the panic
// reaches the caller (the package doc's Leaks section; ErrGoexit: "on the
// sink's goroutine it ends the sink, and the run's goroutines still
// exit"). Each ending:
//   - done-panic, done-goexit: the inner stop's Done, asked as Until is
//     opened (not guarded: "a panic goes on through the sink's deferred
//     finish");
//   - hook-value-goexit: the inner stop's Value, asked by context.AfterFunc
//     as Until's hook is registered (the hook is released);
//   - hook-done3-goexit: the inner stop's Done as the run's
//     watched.AfterFunc asks it (its fourth call), before it keeps its
//     watcher;
//   - stage-goexit: an observer's Stage (after both watchers were made and
//     the inner stop's too).
//
// hook-done3-panic is the guarded case: the panic is kept, the run goes
// on to start (launching the parent's and the outer stop's watchers),
// and the sink raises the panic once they exited.
func TestReview74OpeningEndsWithWatchersKept(t *testing.T) {
	const value = "review74: the stop context's method panicked"
	for _, how := range []string{"done-panic", "done-goexit", "hook-value-goexit", "hook-done3-goexit", "hook-done3-panic", "stage-goexit"} {
		t.Run(how, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				parent, outer := ctxtest.NewDoneCtx(), ctxtest.NewDoneCtx()
				defer parent.Cancel()
				defer outer.Cancel()
				inner := newR74ctx()
				defer inner.Cancel()
				var o *r74obs
				switch how {
				case "done-panic", "done-goexit":
					inner.onDone = func(int32) {
						if how == "done-panic" {
							panic(value)
						}
						runtime.Goexit()
					}
				case "hook-value-goexit":
					inner.onValue = func(any) {
						if r74calledFrom("context.AfterFunc") {
							runtime.Goexit()
						}
					}
				case "hook-done3-goexit", "hook-done3-panic":
					inner.onDone = func(int32) {
						if r74calledFrom("(*watched).AfterFunc") {
							if how == "hook-done3-panic" {
								panic(value)
							}
							runtime.Goexit()
						}
					}
				case "stage-goexit":
					o = &r74obs{watch: true, hook: func(n int, _ stage.Info) {
						if n == 2 {
							runtime.Goexit()
						}
					}}
				}
				src := &r74src{n: 10}
				a := stage.Map(stage.Until(src.stream(), inner), double)
				s := stage.Map(stage.Until(a, outer), double)
				var ctx context.Context = parent
				if o != nil {
					ctx = stage.Observe(parent, o)
				}
				leaked, panicked, returned := r74sinkGoexits(t, func() { _, _ = sink.Count(ctx, s) })
				if len(leaked) > 0 {
					t.Errorf("%d goroutine(s) of the run alive once the sink ended:\n%s", len(leaked), leaked[0])
				}
				wantPanic := how == "done-panic" || how == "hook-done3-panic"
				switch {
				case wantPanic && panicked != value:
					t.Errorf("the sink panicked with %v (returned %v); want the context's own %q", panicked, returned, value)
				case !wantPanic && (panicked != nil || returned):
					t.Errorf("the sink panicked with %v, returned %v; want it ended by Goexit", panicked, returned)
				}
				if how == "stage-goexit" && o.closed.Load() != 1 {
					t.Errorf("Closed called %d times; want 1 (the first stage's watcher)", o.closed.Load())
				}
				if how != "done-panic" && how != "done-goexit" && !src.stopped.Load() && src.openCtx() != nil {
					t.Errorf("the source was opened and not stopped")
				}
			})
		})
	}
}
