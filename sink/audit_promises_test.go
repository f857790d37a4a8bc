package sink_test

// Audit of documented promises of package sink that no other test pins,
// written from the documentation only. No verdict depends on a duration.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/internal/acktest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Slice: "When s knows its length (stage.Stream.Len), the slice is made with
// room for that many values before the run": 100 values into a slice made
// for 100 need no growth, so its capacity is 100 (append's growth would give
// another).
func TestAuditSlicePresizedToTheKnownLength(t *testing.T) {
	for name, s := range map[string]stage.Stream[int]{
		"slice":    source.Slice(rvInts(100)),
		"map":      stage.Map(source.Slice(rvInts(100)), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4)),
		"indexed":  stage.Indexed(100, func(i int) int { return i }),
		"ordered2": stage.Map(source.Slice(rvInts(100)), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(2), stage.Ordered()),
	} {
		if s.Len() != 100 {
			t.Fatalf("%s: Len %d", name, s.Len())
		}
		var got []int
		var err error
		runcheck.Run(t, name, func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil || len(got) != 100 || cap(got) != 100 {
			t.Errorf("%s: len %d cap %d, %v; want a slice made for the 100 values", name, len(got), cap(got), err)
		}
	}
}

// A stage function that returns stage.ErrStop fails its item (FailFast):
// ErrStop ends a run without an error only when a sink callback returns it.
// "A sink never reports success for a run that failed."
func TestAuditEverySinkReportsAStagesErrStop(t *testing.T) {
	type sinkFn func(ctx context.Context, s stage.Stream[int]) error
	sinks := map[string]sinkFn{
		"ForEach": func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
		},
		"Slice": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err },
		"Count": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Count(ctx, s); return err },
		"Reduce": func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Reduce(ctx, s, 0, func(a, v int) int { return a + v })
			return err
		},
		"Chan": func(ctx context.Context, s stage.Stream[int]) error { return sink.Chan(ctx, s, make(chan int, 100)) },
		"First": func(ctx context.Context, s stage.Stream[int]) error {
			_, ok, err := sink.First(ctx, s)
			if ok {
				return errors.New("First found a value")
			}
			return err
		},
		"All": func(ctx context.Context, s stage.Stream[int]) error {
			var last error
			for _, err := range sink.All(ctx, s) {
				last = err
			}
			return last
		},
	}
	for name, run := range sinks {
		for _, workers := range []int{1, 4} {
			for _, at := range []int{0, 30} {
				// First with one worker: item 0 comes first, so First
				// returns its failure. With 4, an item after it may reach
				// First before it, and then First's value is the answer.
				if name == "First" && (at != 0 || workers != 1) {
					continue
				}
				t.Run(fmt.Sprintf("%s/workers=%d/at=%d", name, workers, at), func(t *testing.T) {
					s := stage.Map(source.Slice(rvInts(60)), func(_ context.Context, x int) (int, error) {
						if x == at {
							return 0, stage.ErrStop
						}
						return x, nil
					}, stage.Workers(workers))
					var err error
					runcheck.Run(t, name, func() { err = run(context.Background(), s) })
					var se *stage.Error
					if err == nil || !errors.As(err, &se) || se.Index != at || !errors.Is(err, stage.ErrStop) {
						t.Fatalf("%s: %v; want the *stage.Error of item %d wrapping ErrStop", name, err, at)
					}
				})
			}
		}
	}
}

// stage.Error: "Index is the item's 0-based position in the stage's input.
// Forwarded errors count as items", and Stage is "for a sink callback, the
// sink's kind". A ForEach callback that fails at value 8 of 0..9 whose 3 and
// 7 were forwarded (one worker: input order) fails at position 8 of its input.
func TestAuditSinkCallbackIndexCountsForwardedErrors(t *testing.T) {
	errCb := errors.New("callback failed")
	var err error
	runcheck.Run(t, "foreach", func() {
		err = sink.ForEach(context.Background(), checked(), func(_ context.Context, v int) error {
			if v == 8 {
				return errCb
			}
			return nil
		})
	})
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "foreach" || se.Input != 8 || se.Index != 8 || !errors.Is(err, errCb) {
		t.Errorf("ForEach: %v (%+v); want the foreach *stage.Error of input 8 at index 8", err, se)
	}
	runcheck.Run(t, "reduce", func() {
		_, err = sink.Reduce(context.Background(), checked(), 0, func(a, v int) int {
			if v == 9 {
				panic("reduce at 9")
			}
			return a + v
		})
	})
	if !errors.As(err, &se) || se.Stage != "reduce" || se.Index != 9 {
		t.Errorf("Reduce: %v (%+v); want the reduce *stage.Error at index 9", err, se)
	}
}

// Package doc: the sinks other than All and First "return what succeeded
// together with a *ForwardedError ... (joined with the error that ended the
// run, if any)": also when a sink callback's error or panic, or a
// cancellation, ended it.
func TestAuditForwardedErrorsJoinedWithTheCallbacksFailure(t *testing.T) {
	errCb := errors.New("callback failed")
	var err error
	runcheck.Run(t, "foreach", func() {
		err = sink.ForEach(context.Background(), checked(), func(_ context.Context, v int) error {
			if v == 8 {
				return errCb
			}
			return nil
		})
	})
	var fe *sink.ForwardedError
	if !errors.Is(err, errCb) || !errors.As(err, &fe) || fe.Count != 2 || !errors.Is(err, errBad) {
		t.Errorf("ForEach error after 2 forwarded: %v; want the callback's error joined with a *ForwardedError of 2", err)
	}
	var acc int
	runcheck.Run(t, "reduce", func() {
		acc, err = sink.Reduce(context.Background(), checked(), 0, func(a, v int) int {
			if v == 9 {
				panic("reduce at 9")
			}
			return a + v
		})
	})
	var pe *stage.PanicError
	if !errors.As(err, &pe) || !errors.As(err, &fe) || fe.Count != 2 || acc != 0+1+2+4+5+6+8 {
		t.Errorf("Reduce panic after 2 forwarded: %d, %v; want 26 and the panic joined with a *ForwardedError of 2", acc, err)
	}
	// Cancelled: item 9's call cancels the caller's ctx once item 8 was
	// committed (its Ack told nil: the sink delivered it), so the forwarded
	// errors of 3 and 7, which arrive before it (one worker a stage), were
	// delivered too. (Not "once item 8's call returned": outputs still on
	// their way when the run is cancelled may be dropped.)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src, committed8 := acktest.CommitGated(10, 8)
	fwd := stage.Map(src, func(_ context.Context, x int) (int, error) {
		if x == 3 || x == 7 {
			return 0, errBad
		}
		return x, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var got []int
	runcheck.Run(t, "slice-cancel", func() {
		// Buffer(1): item 9's call waits for its consumer to take item 8
		// (see stage.Workers).
		got, err = sink.Slice(ctx, stage.Map(fwd, func(ctx context.Context, v int) (int, error) {
			if v == 9 {
				<-committed8()
				cancel()
				<-ctx.Done()
				return 0, ctx.Err()
			}
			return v, nil
		}, stage.Workers(1), stage.Buffer(1)))
	})
	if !errors.Is(err, context.Canceled) || !errors.As(err, &fe) || fe.Count != 2 || !slices.Equal(got, []int{0, 1, 2, 4, 5, 6, 8}) {
		t.Errorf("Slice cancelled after 2 forwarded: %v, %v; want [0 1 2 4 5 6 8] and context.Canceled joined with a *ForwardedError of 2", got, err)
	}
}
