package stage_test

// Review 51: a Goexit in the Done method of a context the run does not own,
// on the sink's goroutine, before the run has started: as the run is made
// from the caller's context, and as an Until is opened over a stop context.
// The promises (package doc, Leaks; ErrGoexit's doc): a Goexit on the
// sink's goroutine ends that goroutine, the run's goroutines exit, and the
// sources opened release what they hold.

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r51DoneGoexits is a context of the user's whose Done calls
// runtime.Goexit on the goroutine that called the sink (t.FailNow in a
// fake context's Done, off the test's goroutine).
type r51DoneGoexits struct {
	context.Context
	sink    atomic.Int64
	goexits atomic.Int64
}

func (c *r51DoneGoexits) Done() <-chan struct{} {
	if id := c.sink.Load(); id != 0 && r47Goid() == id {
		c.goexits.Add(1)
		runtime.Goexit()
	}
	return c.Context.Done()
}

// r51Opened is a waiting source of 0, 1, 2, ... that records whether it
// was opened and whether it was stopped.
func r51Opened(opened, stopped *atomic.Bool) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		opened.Store(true)
		n := 0
		return func(context.Context) (int, error) { n++; return n, nil }, func() { stopped.Store(true) }
	})
}

// r51Run runs in into a Run on a goroutine of its own, whose id c
// records first, and checks that the Goexit happened, that Run did not
// return, that no goroutine of the run outlived the sink's goroutine, and
// that every source opened was stopped.
func r51Run(t *testing.T, c *r51DoneGoexits, parent context.Context, in stage.Stream[int], sources ...[2]*atomic.Bool) {
	t.Helper()
	_, before := runcheck.Goroutines()
	returned := false
	runcheck.NoHang(t, "the sink's goroutine", func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.sink.Store(r47Goid())
			_ = stage.Run(parent, in, func(context.Context, int, error) error { return nil })
			returned = true
		}()
		<-done
	})
	if c.goexits.Load() == 0 {
		t.Fatal("the scenario did not happen: nothing asked the context's Done on the sink's goroutine")
	}
	if returned {
		t.Fatal("stage.Run returned after a Goexit on its goroutine")
	}
	if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
		t.Fatalf("%d goroutine(s) of the run alive after the sink's goroutine ended:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	}
	for i, s := range sources {
		if s[0].Load() && !s[1].Load() {
			t.Fatalf("source %d was opened and never stopped", i)
		}
	}
}

// TestReview51ParentDoneGoexitsBeforeStart: the caller's context's Done
// Goexits as the run is made from it: nothing of the run runs yet.
func TestReview51ParentDoneGoexitsBeforeStart(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		for _, workers := range []int{1, 2, 4} {
			for range 20 {
				ctx, cancel := context.WithCancel(context.Background())
				c := &r51DoneGoexits{Context: ctx}
				var opened, stopped atomic.Bool
				in := stage.Map(r51Opened(&opened, &stopped), double, stage.Workers(workers))
				r51Run(t, c, c, in, [2]*atomic.Bool{&opened, &stopped})
				cancel()
				if t.Failed() {
					return
				}
			}
		}
	})
}

// TestReview51UntilStopDoneGoexitsAtOpen: a stop context's Done Goexits as
// its Until is opened, after another source of the run was opened (Merge
// opens its inputs in turn): that source must be stopped, and nothing of
// the run left running.
func TestReview51UntilStopDoneGoexitsAtOpen(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		for _, workers := range []int{1, 2, 4} {
			for range 20 {
				ctx, cancel := context.WithCancel(context.Background())
				c := &r51DoneGoexits{Context: ctx}
				var o1, s1, o2, s2 atomic.Bool
				in := stage.Map(stage.Merge(r51Opened(&o1, &s1), stage.Until(r51Opened(&o2, &s2), c)), double, stage.Workers(workers))
				r51Run(t, c, context.Background(), in, [2]*atomic.Bool{&o1, &s1}, [2]*atomic.Bool{&o2, &s2})
				cancel()
				if !o1.Load() {
					t.Fatal("the scenario did not happen: the first source was not opened before the Until")
				}
				if t.Failed() {
					return
				}
			}
		}
	})
}

// TestReview51UntilStopGoexitInWatcher: Until's stop context is a context
// type of the user's with a Done channel of its own, which a goroutine of
// the run watches; once it is done, its Err, asked there, Goexits. The
// package doc (Leaks): such a Goexit ends the goroutine "as a Goexit in a
// stage's function does", so the run fails with ErrGoexit (a stop is not a
// cancellation), no goroutine of the run is left, and the source is
// stopped. The control run (a stop whose Err does not Goexit) drains and
// returns nil.
func TestReview51UntilStopGoexitInWatcher(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		run := func(armed bool, workers int) (stop *r49OwnDone, opened, stopped bool, err error) {
			stop = newR49OwnDone(context.Canceled, armed)
			var o, s atomic.Bool
			var once sync.Once
			in := stage.Map(stage.Until(r51Opened(&o, &s), stop), func(_ context.Context, v int) (int, error) {
				// The first call stops the source and returns only once the
				// watcher has asked the stop's Err: the run, which waits for
				// this call, cannot finish first. (Until also sees the stop's
				// Done itself and takes no more items, so without this wait a
				// run could drain and stop the watcher before it asked.)
				once.Do(func() {
					stop.cancel()
					r49Wait(stop.watcherAsked)
				})
				return v, nil
			}, stage.Workers(workers))
			runcheck.Run(t, "the stopped run", func() {
				err = stage.Run(context.Background(), in, func(context.Context, int, error) error { return nil })
			})
			return stop, o.Load(), s.Load(), err
		}
		for _, workers := range []int{1, 2, 4} {
			if _, _, stopped, err := run(false, workers); err != nil || !stopped {
				t.Fatalf("control, workers=%d: stage.Run = %v, source stopped %v; want nil and true", workers, err, stopped)
			}
			for range 20 {
				stop, opened, stopped, err := run(true, workers)
				if t.Failed() {
					return
				}
				if stop.goexits.Load() == 0 {
					t.Fatal("the scenario did not happen: the stop's Err never Goexited in the run's watcher")
				}
				if !errors.Is(err, stage.ErrGoexit) {
					t.Fatalf("workers=%d: stage.Run = %v, want ErrGoexit", workers, err)
				}
				if opened && !stopped {
					t.Fatalf("workers=%d: the source was not stopped", workers)
				}
			}
		}
	})
}
