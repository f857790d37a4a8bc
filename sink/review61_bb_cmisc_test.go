package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func c61StopPanics(n int, v any) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
				if i == n {
					return 0, io.EOF
				}
				i++
				return i - 1, nil
			}, func() {
				panic(v)
			}
	})
}

// stage.Source: "A source that finds a failure after its last item ...
// reports it by panicking in stop with a *SourceError: the run fails with
// that error as it is, unless its result was decided first (a failure, a
// cancellation, an early stop)." IsStop: "that ErrStop is not inside an
// *Error, a *SourceError or a *PanicError ... Those are failures ... so a
// callback that returns one, say from a run of its own, fails the run with
// it". The stop's *SourceError wraps ErrStop: the inner run must return it as
// it is, and the outer callback that returns it must fail the outer run.
func TestReview61BBCStopPanicSourceErrorNested(t *testing.T) {
	se := &stage.SourceError{Err: fmt.Errorf("acks failed: %w", stage.ErrStop)}
	for _, sk := range []string{"foreach", "slice", "count", "all"} {
		t.Run(sk, func(t *testing.T) {
			var innerErr error
			inner := func(ctx context.Context) error {
				s := stage.Map(c61StopPanics(3, se), c61id, stage.Workers(2))
				switch sk {
				case "foreach":
					return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
				case "slice":
					_, err := sink.Slice(ctx, s)
					return err
				case "count":
					_, err := sink.Count(ctx, s)
					return err
				}
				var last error
				for _, e := range sink.All(ctx, s) {
					last = e
				}
				return last
			}
			var err error
			calls := 0
			runcheck.Run(t, "run", func() {
				err = sink.ForEach(context.Background(), source.Slice([]int{0, 1, 2}), func(ctx context.Context, _ int) error {
					calls++
					innerErr = inner(ctx)
					return innerErr
				})
			})
			if innerErr != se {
				t.Fatalf("inner run returned %v (%T); want the stop's *SourceError as it is", innerErr, innerErr)
			}
			var e *stage.Error
			if calls != 1 || !errors.As(err, &e) || e.Stage != "foreach" || e.Index != 0 || !errors.Is(err, se) {
				t.Fatalf("outer = %v after %d calls; want a foreach *Error at 0 wrapping the *SourceError", err, calls)
			}
		})
	}
}

// Same source, with the result decided first: "unless its result was
// decided first (a failure, a cancellation, an early stop)".
func TestReview61BBCStopPanicAfterDecided(t *testing.T) {
	se := &stage.SourceError{Err: errors.New("late")}
	var err error
	runcheck.Run(t, "stop", func() {
		err = sink.ForEach(context.Background(), stage.Map(c61StopPanics(3, se), c61id), func(context.Context, int) error { return stage.ErrStop })
	})
	if err != nil {
		t.Fatalf("ErrStop then a stop panic: %v; want nil", err)
	}
	runcheck.Run(t, "first", func() {
		_, _, err = sink.First(context.Background(), stage.Map(c61StopPanics(3, se), c61id, stage.Ordered(), stage.Workers(3)))
	})
	if err != nil {
		t.Fatalf("First then a stop panic: %v; want nil", err)
	}
	runcheck.Run(t, "failfast", func() {
		_, err = sink.Slice(context.Background(), stage.Map(c61StopPanics(3, se), func(_ context.Context, v int) (int, error) {
			if v == 1 {
				return 0, errC61
			}
			return v, nil
		}, stage.Workers(1), stage.Name("m")))
	})
	var e *stage.Error
	if !errors.As(err, &e) || e.Stage != "m" || e.Index != 1 || errors.Is(err, se) {
		t.Fatalf("FailFast then a stop panic: %v; want m's *Error at 1 only", err)
	}
	// and a value that is not a *SourceError: a *SourceError wrapping a *PanicError
	runcheck.Run(t, "plain", func() {
		_, err = sink.Count(context.Background(), c61StopPanics(2, "oops"))
	})
	var se2 *stage.SourceError
	var pe *stage.PanicError
	if !errors.As(err, &se2) || !errors.As(err, &pe) || pe.Value != "oops" {
		t.Fatalf("panic(\"oops\") in stop: %v; want a *SourceError wrapping a *PanicError", err)
	}
}

// KeyBy: "A panic in key fails the item as a panic in the stage's function
// does: an *Error wrapping a *PanicError goes to the stage's policy (the
// item's function is not called)." Error.Attempts: "0 when its KeyBy key
// function panicked". Retry: "unless the error is a *PanicError". With
// Ordered and Forward, the forwarded error keeps its item's place.
func TestReview61BBCKeyPanicPolicies(t *testing.T) {
	key := func(v int) int {
		if v == 2 {
			panic("key of 2")
		}
		return v % 2
	}
	for _, w := range []int{1, 3} {
		var called [5]int
		f := func(_ context.Context, v int) (int, error) { called[v]++; return v, nil }
		s := stage.Map(source.Slice([]int{0, 1, 2, 3, 4}), f, stage.Workers(w), stage.Ordered(), stage.Name("k"),
			stage.KeyBy(key), stage.Retry(3, 0), stage.OnError(stage.Forward))
		var seq []string
		var err error
		runcheck.Run(t, "run", func() {
			err = stage.Run(context.Background(), s, func(_ context.Context, v int, e error) error {
				if e != nil {
					var se *stage.Error
					var pe *stage.PanicError
					if !errors.As(e, &se) || se.Stage != "k" || se.Index != 2 || se.Attempts != 0 || !errors.As(e, &pe) || pe.Value != "key of 2" {
						return fmt.Errorf("forwarded %v (%+v); want k's *Error at 2, Attempts 0, a PanicError", e, se)
					}
					seq = append(seq, "E")
					return nil
				}
				seq = append(seq, fmt.Sprint(v))
				return nil
			})
		})
		if err != nil || fmt.Sprint(seq) != "[0 1 E 3 4]" || called[2] != 0 {
			t.Fatalf("w%d: %v, %v, f called %d times for 2; want [0 1 E 3 4], nil, 0", w, seq, err, called[2])
		}
		// Handle sees it too
		var hs []*stage.Error
		s = stage.Map(source.Slice([]int{0, 1, 2, 3, 4}), c61id, stage.Workers(w), stage.KeyBy(key),
			stage.Retry(3, 0), stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error { hs = append(hs, e); return nil })))
		var n int
		runcheck.Run(t, "handle", func() { n, err = sink.Count(context.Background(), s) })
		if err != nil || n != 4 || len(hs) != 1 || hs[0].Attempts != 0 || hs[0].Index != 2 {
			t.Fatalf("w%d handle: %d, %v, %d handled; want 4, nil, one at 2 with Attempts 0", w, n, err, len(hs))
		}
	}
}

// stage.Indexed: "A panic in at ends the run with a *SourceError once the
// items made have gone through: those of later positions whose at was
// called too (under Ordered in order, without the lost one)."
func TestReview61BBCIndexedPanicOrdered(t *testing.T) {
	for _, w := range []int{1, 2, 4, -1} {
		for range 20 {
			s := stage.Map(stage.Indexed(12, func(i int) int {
				if i == 5 {
					panic("at 5")
				}
				return i
			}), c61id, stage.Workers(w), stage.Ordered())
			var got []int
			var err error
			runcheck.Run(t, "run", func() { got, err = sink.Slice(context.Background(), s) })
			var se *stage.SourceError
			var pe *stage.PanicError
			if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "at 5" {
				t.Fatalf("w%d: err %v; want a *SourceError of the panic", w, err)
			}
			if len(got) < 5 {
				t.Fatalf("w%d: got %v; want at least 0..4", w, got)
			}
			for i, v := range got {
				want := i
				if i >= 5 {
					want = i + 1
				}
				if v != want {
					t.Fatalf("w%d: got %v; want 0..4 then 6.. in order, without 5", w, got)
				}
			}
		}
	}
}
