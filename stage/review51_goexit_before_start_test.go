package stage_test

// Review 51: a Goexit in the Done method of a context the run does not own,
// on the sink's goroutine, before the run has started: as the run is made
// from the caller's context, and as an Until is opened over a stop context.
// The promises (package doc, Leaks; ErrGoexit's doc): a Goexit on the
// sink's goroutine ends that goroutine, the run's goroutines exit, and the
// sources opened release what they hold.

import (
	"context"
	"runtime"
	"strings"
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
