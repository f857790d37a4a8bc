package stage_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review 57: an Indexed source's positions are claimed with one atomic add
// each, outside any lock, so two workers of an Ordered stage hold positions
// i and i+1 at once. If at(i) panics after at(i+1) has returned, position i
// never reaches the stage (indexPuller.pull returns ok == false for it), but
// i+1 does: it is processed and parked in the reorder window behind the head
// i, which no worker will ever complete. The source's failure is a drain, not
// a cancellation, so the run ends normally and the sink returns the
// *SourceError with item i+1 stranded in the window.
//
// Promises attacked:
//   - SourceError: "the source stops, the items it produced before the
//     failure still complete and are delivered, and then the sink returns
//     the SourceError";
//   - Run: "once f saw the end of s: the *SourceError if a source failed
//     (every item produced before the failure was delivered)";
//   - engine.go's invariant: a producer "leaves items stranded (an Ordered
//     window behind a lost item ...) only once the run is cancelled" (or a
//     Goexit, or the parent's end), never on a drain.
//
// Gates decide the order: at(1) waits until the stage's function has been
// called with item 2 (so at(2) has returned, the item was produced), and
// only then panics.
func TestReview57IndexedPanicBehindOrderedWindow(t *testing.T) {
	stages := map[string]func(stage.Stream[int], func(int)) stage.Stream[int]{
		"Map": func(in stage.Stream[int], seen func(int)) stage.Stream[int] {
			return stage.Map(in, func(_ context.Context, v int) (int, error) {
				seen(v)
				return v, nil
			}, stage.Workers(2), stage.Ordered())
		},
		"Apply": func(in stage.Stream[int], seen func(int)) stage.Stream[int] {
			return stage.Apply(in, func(_ context.Context, v int, emit func(int) bool) error {
				seen(v)
				emit(v)
				return nil
			}, stage.Workers(2), stage.Ordered())
		},
		"MapBuffer": func(in stage.Stream[int], seen func(int)) stage.Stream[int] {
			return stage.Map(in, func(_ context.Context, v int) (int, error) {
				seen(v)
				return v, nil
			}, stage.Workers(2), stage.Ordered(), stage.Buffer(4))
		},
		// The control: without Ordered the same run delivers item 2 (it
		// passes on the current code), so the loss is the window's.
		"MapUnordered": func(in stage.Stream[int], seen func(int)) stage.Stream[int] {
			return stage.Map(in, func(_ context.Context, v int) (int, error) {
				seen(v)
				return v, nil
			}, stage.Workers(2), stage.Buffer(1))
		},
	}
	for name, build := range stages {
		t.Run(name, func(t *testing.T) {
			twoSeen := make(chan struct{})
			src := panicsAt1After(twoSeen)
			s := build(src, func(v int) {
				if v == 2 {
					close(twoSeen)
				}
			})
			var got []int
			var err error
			runcheck.Run(t, name, func() {
				err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
					got = append(got, v)
					return nil
				})
			})
			var se *stage.SourceError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SourceError", err)
			}
			if name != "MapUnordered" && !slices.IsSorted(got) {
				t.Errorf("delivered %v: not in input order", got)
			}
			if !slices.Contains(got, 2) {
				t.Errorf("delivered %v, err %v: item 2 was produced (at(2) returned and the stage's function saw it) before at(1) panicked, but it was never delivered: it is stranded in the Ordered window behind position 1, which the source's failure lost", got, err)
			}
			if !slices.Contains(got, 0) {
				t.Errorf("delivered %v: item 0 lost", got)
			}
		})
	}
}

// Review 57, the same lost position with an Ordered Apply whose stranded
// item emits more than the window holds: its further outputs wait in
// reorder.park "until the head moves on, parked outputs leave or the
// emitter role is free; once the run is cancelled, it is abandoned". The
// head is the position at(1) lost, which never moves; the run is drained
// (a source failed), not cancelled, so nothing wakes the park: the worker
// sleeps for ever, the stage's queue never ends, and the sink never
// returns. The watchdog (a hang detector, no verdict depends on a
// duration) then cancels the caller's ctx, which frees the run, so that the
// failure is reported rather than the process killed; the scenario runs in
// a child process all the same.
//
// Promises attacked:
//   - SourceError / Source: "items produced before it still go through,
//     then the sink returns it" (the sink does not return at all);
//   - Apply: "a further output waits while the window holds 2×workers +
//     buffer outputs waiting so (an f must then not wait for a later item of
//     its stage ...)": here f waits for nothing of the user's; the wait is
//     the window's own, behind a position no worker holds;
//   - Ordered: "The window always moves: the head's item is running or done
//     (items start in order)" (engine_reorder.go).
func TestReview57IndexedPanicStrandsOrderedApplyPark(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const workers = 2
		window := 2 * workers // 2×workers + buffer, Buffer(0)
		twoSeen := make(chan struct{})
		src := panicsAt1After(twoSeen)
		s := stage.Apply(src, func(_ context.Context, v int, emit func(int) bool) error {
			n := 1
			if v == 2 {
				close(twoSeen)
				n = 2*window + 2 // more further outputs than the window parks
			}
			for j := range n {
				if !emit(100*v + j) {
					return nil
				}
			}
			return nil
		}, stage.Workers(workers), stage.Ordered())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var got []int
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				got = append(got, v)
				return nil
			})
		}()
		select {
		case <-done:
		case <-time.After(runcheck.Watchdog):
			t.Errorf("the sink did not return within the watchdog: item 2's worker sleeps in the reorder window's park behind position 1, which the source's failure lost; the run is drained, not cancelled, so nothing wakes it")
			cancel() // free the run, so that the report is ours
			<-done
		}
		var se *stage.SourceError
		if !errors.As(err, &se) {
			t.Errorf("err = %v, want a *SourceError", err)
		}
		if !slices.Contains(got, 200) {
			t.Errorf("delivered %v: item 2 was produced before at(1) panicked, but none of its outputs was delivered", got)
		}
	})
}

// panicsAt1After is review 57's source: the items 0..9, but at(1) waits
// until twoSeen is closed (by the stage's function, given item 2: at(2) has
// returned, the item was made) and then panics.
func panicsAt1After(twoSeen <-chan struct{}) stage.Stream[int] {
	return stage.Indexed(10, func(i int) int {
		if i == 1 {
			<-twoSeen
			panic("at 1")
		}
		return i
	})
}
