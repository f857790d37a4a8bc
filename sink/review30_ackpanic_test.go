package sink_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

var errR30AckBoom = errors.New("review30: Done panicked")

// TestReview30AckDonePanicFailsEverySink attacks stage.Ack's "A panic in
// Done ends the run with a *SourceError, which the sink returns unless its
// own result was decided first (its callback returned an error, or ErrStop:
// see Run)" and the sink package's "A sink never reports success for a run
// that failed", for the sinks whose callback never decides the result
// (Slice, Count, Reduce, Chan, ForEach returning nil), with the panic in the
// Done of each item in turn, the last one included (its Done comes after its
// commit, when the sink may already know the input has ended); and, for
// First and a break out of All, whose stop decides the result, that the
// result is the item.
func TestReview30AckDonePanicFailsEverySink(t *testing.T) {
	const n = 6
	ctx := context.Background()
	isPanicSource := func(err error) bool {
		var se *stage.SourceError
		var pe *stage.PanicError
		return errors.As(err, &se) && errors.As(err, &pe) && errors.Is(err, errR30AckBoom)
	}
	sinks := map[string]func(s stage.Stream[int]) error{
		"Slice": func(s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err },
		"Count": func(s stage.Stream[int]) error { _, err := sink.Count(ctx, s); return err },
		"Reduce": func(s stage.Stream[int]) error {
			_, err := sink.Reduce(ctx, s, 0, func(a, v int) int { return a + v })
			return err
		},
		"ForEach": func(s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
		},
		"Chan": func(s stage.Stream[int]) error {
			out := make(chan int, n)
			return sink.Chan(ctx, s, out)
		},
		"All": func(s stage.Stream[int]) error {
			var last error
			for _, err := range sink.All(ctx, s) {
				last = err
			}
			return last
		},
	}
	out, ok := runcheck.InChild(t, func() string {
		var bad []string
		for sname, run := range sinks {
			for shname, shape := range r30AckShapes() {
				for at := range n {
					for range 5 {
						a := r30NewAcks()
						a.onDone = func(id int, _ error) {
							if id == at {
								panic(errR30AckBoom)
							}
						}
						var err error
						done := make(chan struct{})
						go func() { defer close(done); err = run(shape(a.source(n))) }()
						select {
						case <-done:
						case <-time.After(30 * time.Second):
							return sname + "/" + shname + ": hung"
						}
						if !isPanicSource(err) {
							bad = append(bad, fmt.Sprintf("%s/%s: panic in Done of item %d: err = %v", sname, shname, at, err))
							break
						}
					}
				}
			}
		}
		// First and a break: the stop decides the result.
		for shname, shape := range r30AckShapes() {
			a := r30NewAcks()
			a.onDone = func(int, error) { panic(errR30AckBoom) }
			v, found, err := sink.First(ctx, shape(a.source(n)))
			if v != 0 || !found || err != nil {
				bad = append(bad, fmt.Sprintf("First/%s: (%v, %v, %v), want (0, true, nil)", shname, v, found, err))
			}
		}
		if len(bad) == 0 {
			return "ok"
		}
		return strings.Join(bad, " || ")
	})
	if ok && out != "ok" {
		t.Fatal(out)
	}
}

// TestReview30AckDoneGoexit attacks stage.ErrGoexit for an Ack's Done, user
// code that the run calls "from the goroutine that settled the item (a
// worker, or the sink's)": a Done that calls runtime.Goexit (t.FailNow in a
// test's Ack) must either make the sink return an error for which
// errors.Is(err, stage.ErrGoexit) holds (a worker's goroutine ended: "the
// run fails with ErrGoexit rather than return what it has as if complete")
// or end the sink's goroutine without its return ("the sink does not
// return ... and the run's goroutines exit"); never success, never a hang,
// and no goroutine of the run left.
func TestReview30AckDoneGoexit(t *testing.T) {
	const n = 6
	out, ok := runcheck.InChild(t, func() string {
		var bad []string
		for shname, shape := range r30AckShapes() {
			for _, at := range []int{0, 3, n - 1} {
				a := r30NewAcks()
				a.onDone = func(id int, _ error) {
					if id == at {
						runtime.Goexit()
					}
				}
				_, before := runcheck.Goroutines()
				var got []int
				var err error
				returned := false
				done := make(chan struct{})
				go func() {
					defer close(done)
					got, err = sink.Slice(context.Background(), shape(a.source(n)))
					returned = true
				}()
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					return shname + ": hung"
				}
				if returned && !errors.Is(err, stage.ErrGoexit) {
					bad = append(bad, fmt.Sprintf("%s@%d: returned %v, %v", shname, at, got, err))
				}
				deadline := time.Now().Add(30 * time.Second)
				for len(runcheck.LeakedSince(before)) > 0 {
					if time.Now().After(deadline) {
						bad = append(bad, fmt.Sprintf("%s@%d: goroutines left: %s", shname, at,
							strings.Join(runcheck.LeakedSince(before), "\n\n")))
						break
					}
					runtime.Gosched()
				}
			}
		}
		if len(bad) == 0 {
			return "ok"
		}
		return strings.Join(bad, " || ")
	})
	if ok && out != "ok" {
		t.Fatal(out)
	}
}
