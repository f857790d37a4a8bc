package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review 58: a gap (an Indexed at that panicked while a later position's
// at had returned) meeting the other ends of a run: Until's stop, a run
// that at cancels, a FailFast failure in the stage, a sink that stops at
// its first item. Each must end (no hang: the window behind the gap is
// closed, or the cancellation wakes it), leave no goroutine, and return
// what its doc says.
//
// Promises attacked:
//   - Indexed: "A panic in at ends the run with a *[SourceError] once the
//     items made have gone through: those of later positions whose at was
//     called too (under [Ordered] in order, without the lost one)."
//   - Until: "every item they already produced goes on through the stages".
//   - sink.First: "always the first pair of `for v, err := range All(ctx,
//     s) { ...; break }`, so what happens in the run after the first item
//     (a worker that read ahead into a failing source, say) never changes
//     it."
//   - engine.go: a producer leaves items stranded "only once the run is
//     cancelled" (here: at cancels it, or FailFast does): and then the
//     run ends, no worker parked for ever in the window.

// TestReview58IndexedGapUntilStop: Until's stop comes, then at(1) panics
// (item 2 made before both). The panic is a source failure whatever the
// drain: *SourceError, with every item made delivered in order.
func TestReview58IndexedGapUntilStop(t *testing.T) {
	for _, kind := range []string{"Map", "Apply"} {
		t.Run(kind, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				stop, drain := context.WithCancel(context.Background())
				defer drain()
				g := newGapSource(20, 2, 0, 1) // released by hand below (no call to seen)
				in := stage.Until(g.stream(), stop)
				f := func(v int) {
					if v == 2 {
						drain() // stop comes first, then at(1) panics
						close(g.release)
					}
				}
				var s stage.Stream[int]
				if kind == "Map" {
					s = stage.Map(in, func(_ context.Context, v int) (int, error) {
						f(v)
						return v, nil
					}, stage.Workers(2), stage.Ordered())
				} else {
					s = stage.Apply(in, func(_ context.Context, v int, emit func(int) bool) error {
						f(v)
						for range 3 * 4 { // more further outputs than the window parks
							if !emit(v) {
								return nil
							}
						}
						return nil
					}, stage.Workers(2), stage.Ordered())
				}
				got, err := collect58(t, kind, s)
				var se *stage.SourceError
				if !errors.As(err, &se) {
					t.Errorf("err = %v (%T), want a *stage.SourceError: at panicked", err, err)
				}
				got = slices.Compact(got)
				if made := g.madeSorted(); !slices.Equal(got, made) {
					t.Errorf("made %v, delivered %v: every item made goes on through the stages, in order", made, got)
				}
			})
		})
	}
}

// TestReview58IndexedGapCancelledRun: at(2) cancels the run's context and
// returns, then at(1) panics: the gap comes to a cancelled run, the window
// behind it may strand items (the run is cancelled), but the run ends,
// with the cancellation, and no goroutine is left. With an Apply whose item
// 3 emits more than the window parks.
func TestReview58IndexedGapCancelledRun(t *testing.T) {
	for _, kind := range []string{"Map", "Apply"} {
		t.Run(kind, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				cancelled := make(chan struct{})
				threeSeen := make(chan struct{})
				src := stage.Indexed(30, func(i int) int {
					switch i {
					case 1:
						<-cancelled
						panic("review58: at 1")
					case 2:
						<-threeSeen // item 3 is in the window behind 1
						cancel()
						close(cancelled)
					}
					return i
				})
				f := func(v int) {
					if v == 3 {
						close(threeSeen)
					}
				}
				var s stage.Stream[int]
				if kind == "Map" {
					s = stage.Map(src, func(_ context.Context, v int) (int, error) {
						f(v)
						return v, nil
					}, stage.Workers(3), stage.Ordered())
				} else {
					s = stage.Apply(src, func(_ context.Context, v int, emit func(int) bool) error {
						f(v)
						for range 4 * 3 {
							if !emit(v) {
								return nil
							}
						}
						return nil
					}, stage.Workers(3), stage.Ordered())
				}
				var got []int
				var err error
				runcheck.Run(t, kind, func() {
					err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
						got = append(got, v)
						return nil
					})
				})
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v (%T), want context.Canceled: at cancelled the run before at(1) panicked", err, err)
				}
				if !slices.IsSorted(got) {
					t.Errorf("delivered %v: not in input order", got)
				}
				if slices.Contains(got, 3) {
					t.Errorf("delivered %v: item 3 left the window behind position 1, which never completed before the run was cancelled", got)
				}
			})
		})
	}
}

// TestReview58IndexedGapFailFast: item 2's call fails (FailFast) after it
// released at(1)'s panic: a stage failure and a source failure race; the
// run ends with one of them, and nothing hangs (an Apply's item 2 parks
// further outputs behind the gap before it fails).
func TestReview58IndexedGapFailFast(t *testing.T) {
	boom := errors.New("review58: boom")
	for _, kind := range []string{"Map", "Apply"} {
		t.Run(kind, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				g := newGapSource(30, 2, 0, 1)
				var s stage.Stream[int]
				if kind == "Map" {
					s = stage.Map(g.stream(), func(_ context.Context, v int) (int, error) {
						g.seen(v)
						if v == 2 {
							<-g.panicking
							return 0, boom
						}
						return v, nil
					}, stage.Workers(2), stage.Ordered())
				} else {
					s = stage.Apply(g.stream(), func(_ context.Context, v int, emit func(int) bool) error {
						g.seen(v) // before the outputs: at(1) must not wait for room in the window
						n := 1
						if v == 2 {
							n = 3 * 4
						}
						for range n {
							if !emit(v) {
								return nil
							}
						}
						if v == 2 {
							<-g.panicking
							return boom
						}
						return nil
					}, stage.Workers(2), stage.Ordered())
				}
				got, err := collect58(t, kind, s)
				var se *stage.SourceError
				var e *stage.Error
				switch {
				case errors.As(err, &e):
					if !errors.Is(err, boom) {
						t.Errorf("err = %v: a *stage.Error, not item 2's", err)
					}
				case errors.As(err, &se):
				default:
					t.Errorf("err = %v (%T), want item 2's *stage.Error or the *stage.SourceError", err, err)
				}
				if !slices.IsSorted(got) {
					t.Errorf("delivered %v: not in input order", got)
				}
			})
		})
	}
}

// TestReview58IndexedGapFirst: at(0) panics once item 1 is made: sink.First
// returns item 1 (All's first pair: the items made go through before the
// *SourceError), or, over a gap at 1 (item 0's call waits for the panic),
// item 0.
func TestReview58IndexedGapFirst(t *testing.T) {
	for _, c := range []struct {
		gap, trigger, want int
		workers            int
	}{{0, 1, 1, 2}, {0, 1, 1, 8}, {1, 2, 0, 3}, {0, 3, 1, 100}} {
		t.Run(fmt.Sprintf("gap%d/w%d", c.gap, c.workers), func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				build := func() (*gapSource, stage.Stream[int]) {
					g := newGapSource(200, c.trigger, 0, c.gap)
					return g, stage.Map(g.stream(), func(_ context.Context, v int) (int, error) {
						g.seen(v)
						if c.gap > 0 && v == 0 {
							<-g.panicking // item 0 leaves only once the gap is made
						}
						return v, nil
					}, stage.Workers(c.workers), stage.Ordered())
				}
				var v int
				var found bool
				var err error
				runcheck.Run(t, "First", func() {
					_, s := build()
					v, found, err = sink.First(context.Background(), s)
				})
				if v != c.want || !found || err != nil {
					t.Errorf("First = (%d, %v, %v), want (%d, true, nil): the first item delivered", v, found, err, c.want)
				}
				var av int
				var aerr error
				n := 0
				runcheck.Run(t, "All", func() {
					_, s := build()
					for x, e := range sink.All(context.Background(), s) {
						av, aerr, n = x, e, n+1
						break
					}
				})
				if n != 1 || av != v || (aerr == nil) != (err == nil) {
					t.Errorf("All's first pair (%d, %v), First (%d, %v, %v): they differ", av, aerr, v, found, err)
				}
			})
		})
	}
}

// TestReview58IndexedGapGoexit: at(1) calls runtime.Goexit once item 2 was
// made (an Ordered Apply's item 2 parks more outputs than the window
// holds, behind position 1). Not a gap (the worker is gone, lost is never
// reached): the Goexit cancels the run, which wakes the park; the sink
// returns ErrGoexit and leaves no goroutine.
func TestReview58IndexedGapGoexit(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		twoSeen := make(chan struct{})
		src := stage.Indexed(20, func(i int) int {
			if i == 1 {
				<-twoSeen
				runtime.Goexit()
			}
			return i
		})
		s := stage.Apply(src, func(_ context.Context, v int, emit func(int) bool) error {
			n := 1
			if v == 2 {
				close(twoSeen)
				n = 3 * 4
			}
			for range n {
				if !emit(v) {
					return nil
				}
			}
			return nil
		}, stage.Workers(2), stage.Ordered())
		var got []int
		var err error
		runcheck.Run(t, "Goexit", func() {
			err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
				got = append(got, v)
				return nil
			})
		})
		if !errors.Is(err, stage.ErrGoexit) {
			t.Errorf("err = %v (%T), want stage.ErrGoexit", err, err)
		}
		if !slices.IsSorted(got) {
			t.Errorf("delivered %v: not in input order", got)
		}
	})
}

// collect58 runs s into sink.ForEach under runcheck.Run (no leak, no hang)
// and returns what it delivered and the run's error.
func collect58(t *testing.T, label string, s stage.Stream[int]) (got []int, err error) {
	t.Helper()
	runcheck.Run(t, label, func() {
		err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
			got = append(got, v)
			return nil
		})
	})
	return got, err
}
