package stage_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Finished: "A call that runtime.Goexit ended (see ErrGoexit) is reported as
// cut short too, naming ErrGoexit, from the ending goroutine: before the run
// has recorded the Goexit as its failure." ErrGoexit: "the run fails with
// ErrGoexit". Buffer(1) keeps the calls on the stage's own goroutines.
func TestReview70GoexitInFunctionReported(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var exitG atomic.Int64
		s := stage.Map(source.Slice(ints(8)), func(_ context.Context, v int) (int, error) {
			if v == 2 {
				exitG.Store(r70gid())
				runtime.Goexit()
			}
			return v, nil
		}, stage.Name("g"), stage.Workers(2), stage.Buffer(1))
		o := &r70obs{}
		var fromG atomic.Int64
		o.armW = func(w *r70watch) {
			w.onFinished = func(_ time.Duration, err error) {
				if r70kind(err) == "cut" && strings.Contains(err.Error(), stage.ErrGoexit.Error()) {
					fromG.Store(r70gid())
				}
			}
		}
		var err error
		runcheck.Run(t, "slice", func() {
			o.arm()
			_, err = sink.Slice(stage.Observe(context.Background(), o), s)
		})
		if !errors.Is(err, stage.ErrGoexit) {
			t.Fatalf("err %v, want ErrGoexit", err)
		}
		for _, v := range o.check() {
			t.Error(v)
		}
		if fromG.Load() == 0 || fromG.Load() != exitG.Load() {
			t.Errorf("no cut-short Finished naming ErrGoexit from the ending goroutine (%d, want %d); cut errors %v",
				fromG.Load(), exitG.Load(), o.byName("g").cutErrs())
		}
	})
}

// An observer is user code ("a panic in Stage or in a Watcher's method fails
// the run"); ErrGoexit: "the error of a run one of whose goroutines was ended
// by runtime.Goexit in user code". A Received or Finished that calls Goexit
// on a stage's own goroutine (Buffer(1)) fails the run with ErrGoexit, and
// the sink returns with nothing left running.
func TestReview70GoexitInWatcherOnWorker(t *testing.T) {
	for _, where := range []string{"Received", "Finished"} {
		t.Run(where, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				o := &r70obs{}
				var once atomic.Bool
				o.armW = func(w *r70watch) {
					hook := func() {
						if w.recv.Load() >= 3 && once.CompareAndSwap(false, true) {
							w.panicked.Store(true)
							runtime.Goexit()
						}
					}
					if where == "Received" {
						w.onReceived = hook
					} else {
						w.onFinished = func(time.Duration, error) { hook() }
					}
				}
				s := stage.Map(source.Slice(ints(10)), double, stage.Workers(2), stage.Buffer(1))
				var err error
				runcheck.Run(t, "slice", func() {
					o.arm()
					_, err = sink.Slice(stage.Observe(context.Background(), o), s)
				})
				if !errors.Is(err, stage.ErrGoexit) {
					t.Errorf("err %v, want ErrGoexit", err)
				}
				ws, _ := o.snapshot()
				for _, w := range ws {
					if c := w.closed.Load(); c > 1 {
						t.Errorf("Closed %d times", c)
					}
				}
			})
		})
	}
}

// ErrGoexit: "A function that calls Goexit on the sink's own goroutine ends
// that goroutine: the sink does not return, as with any function, and the
// run's goroutines exit. The functions that run on the sink's goroutine: ...
// an observer's Stage and Closed". Stage and Closed are called from the sink's
// goroutine; a Goexit there ends it, and nothing of the run is left running.
func TestReview70GoexitInStageOrClosed(t *testing.T) {
	for _, where := range []string{"Stage", "Closed", "Closed-failed"} {
		t.Run(where, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				o := &r70obs{}
				if where == "Stage" {
					o.stageHook = func(info stage.Info) {
						if info.Name == "second" {
							runtime.Goexit()
						}
					}
				} else {
					o.armW = func(w *r70watch) {
						if w.info.Name == "first" {
							w.onClosed = runtime.Goexit
						}
					}
				}
				s := stage.Map(source.Slice(ints(30)), func(_ context.Context, v int) (int, error) {
					if where == "Closed-failed" && v == 4 {
						return 0, errR70
					}
					return v, nil
				}, stage.Name("first"), stage.Workers(3))
				s = stage.Map(s, double, stage.Name("second"), stage.Workers(2), stage.Buffer(1))
				_, before := runcheck.Goroutines()
				returned := false
				ended := make(chan struct{})
				go func() {
					defer close(ended)
					o.arm()
					_, _ = sink.Slice(stage.Observe(context.Background(), o), s)
					returned = true
				}()
				runcheck.NoHang(t, "sink goroutine", func() { <-ended })
				if returned {
					t.Error("the sink returned after a Goexit on its own goroutine")
				}
				if left := runcheck.LeakedSince(before); len(left) > 0 {
					t.Errorf("%d goroutines left after the sink's goroutine ended:\n%s", len(left), left[0])
				}
			})
		})
	}
}
