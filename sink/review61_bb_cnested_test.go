package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// c61Inner is a run of its own: a Map named "inner" over 0..3 that fails at
// failAt (never when failAt < 0).
func c61Inner(ctx context.Context, failAt int) error {
	return sink.ForEach(ctx, stage.Map(source.Slice([]int{0, 1, 2, 3}), func(_ context.Context, v int) (int, error) {
		if v == failAt {
			return 0, errC61
		}
		return v, nil
	}, stage.Name("inner"), stage.Workers(1)), func(context.Context, int) error { return nil })
}

// stage.Handle: "if h returns an error, the run fails with it as with
// FailFast, and the sink returns h's error". Here h runs a pipeline of its
// own (a dead-letter write that fails) and returns that run's *Error: the
// outer sink must return it (errors.Is finds it, and errors.As finds the
// inner *Error's stage and index, since h's error is what the sink returns).
func TestReview61BBCNestedRunInHandler(t *testing.T) {
	for _, w := range []int{1, 3} {
		for _, sk := range []string{"slice", "foreach", "first"} {
			t.Run(fmt.Sprintf("w%d/%s", w, sk), func(t *testing.T) {
				var hErr error
				outer := stage.Map(source.Slice([]int{0, 1, 2}), func(_ context.Context, v int) (int, error) {
					if v == 1 {
						return 0, errC61
					}
					return v, nil
				}, stage.Name("outer"), stage.Workers(w), stage.Ordered(), stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error {
					hErr = c61Inner(ctx, 2)
					return hErr
				})))
				var err error
				runcheck.Run(t, "run", func() {
					switch sk {
					case "slice":
						_, err = sink.Slice(context.Background(), outer)
					case "foreach":
						err = sink.ForEach(context.Background(), outer, func(context.Context, int) error { return nil })
					case "first":
						// item 0 first: First returns it before or regardless of item 1
						_, _, err = sink.First(context.Background(), stage.Filter(outer, func(context.Context, int) (bool, error) { return false, nil }, stage.Workers(1)))
					}
				})
				var ie *stage.Error
				if !errors.As(hErr, &ie) || ie.Stage != "inner" || ie.Index != 2 {
					t.Fatalf("inner run returned %v; want the inner *Error at 2", hErr)
				}
				var e *stage.Error
				if !errors.Is(err, hErr) || !errors.As(err, &e) || e.Stage != "inner" || e.Index != 2 || !errors.Is(err, errC61) {
					t.Fatalf("sink returned %v (%#v); want h's error, the inner *Error at 2", err, e)
				}
			})
		}
	}
}

// stage.Timeout: "Timeout gives each call of the stage's function (each
// attempt, under Retry) a context that expires d after the call starts. A
// function that honours its ctx then returns an error for which
// errors.Is(err, context.DeadlineExceeded) holds ... Only that call's context
// expires, not the run's". stage.Run (the inner sink): "when ctx was
// cancelled, an error for which errors.Is(err, context.Canceled) (or
// context.DeadlineExceeded) holds". Error: "Attempts is how many times the
// stage tried the item". An outer call that runs an inner pipeline whose
// source waits for ctx: the attempt's deadline ends the inner run; under
// Forward and Retry(2), every item comes out as a forwarded *Error of the
// outer stage with Attempts 2 and DeadlineExceeded, and the outer run
// succeeds otherwise.
func TestReview61BBCNestedTimeoutForwarded(t *testing.T) {
	var calls atomic.Int32
	outer := stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, k int) (int, error) {
		calls.Add(1)
		if k == 1 {
			return 10, nil
		}
		return sink.Count(ctx, stage.Map(source.Func(func(ctx context.Context) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}), c61id, stage.Name("inner")))
	}, stage.Name("outer"), stage.Workers(2), stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.OnError(stage.Forward))
	var got []int
	var err error
	runcheck.Run(t, "run", func() { got, err = sink.Slice(context.Background(), outer) })
	var fe *sink.ForwardedError
	if len(got) != 1 || got[0] != 10 || !errors.As(err, &fe) || fe.Count != 2 {
		t.Fatalf("Slice = %v, %v; want [10] and 2 forwarded", got, err)
	}
	for _, e := range fe.Sample {
		var oe *stage.Error
		if !errors.As(e, &oe) || oe.Stage != "outer" || oe.Attempts != 2 || !errors.Is(e, context.DeadlineExceeded) {
			t.Fatalf("forwarded %v (%+v); want an outer *Error, Attempts 2, DeadlineExceeded", e, oe)
		}
		if errors.Is(e, context.Canceled) {
			t.Logf("note: %v is also Canceled", e)
		}
	}
	if calls.Load() != 5 {
		t.Fatalf("%d calls; want 5 (two items twice, one once)", calls.Load())
	}
}

// sink.ForEach: "f may return stage.ErrStop ... to end the run early without
// an error: ForEach then returns nil". stage.Run: "nil when f returned
// ErrStop, whatever else happened meanwhile". Ack: "Done is not called when
// the run ended before the item's fate was known: ... a sink that stopped
// early, an item whose function was cut short". Outer Map calls run inner
// pipelines that wait for ctx; the outer callback stops at the first value:
// the inner runs return a cancellation error that the outer calls return;
// ForEach must still return nil and leave those items unacknowledged.
func TestReview61BBCNestedStopCutsInnerRuns(t *testing.T) {
	for _, opts := range [][]stage.Option{
		{stage.Workers(4), stage.Buffer(1)},
		{stage.Workers(4), stage.Ordered()},
		{stage.Workers(4), stage.KeyBy(func(v int) int { return v })},
		{stage.Workers(4), stage.OnError(stage.Forward)},
		{stage.Workers(4), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return errC61 }))},
		{stage.Workers(-1), stage.Retry(3, time.Hour)},
	} {
		a := r61NewAcks(5)
		started := make(chan struct{}, 5)
		outer := stage.Map(a.src(), func(ctx context.Context, k int) (int, error) {
			if k == 0 {
				<-started
				<-started
				return k, nil
			}
			_, err := sink.Slice(ctx, stage.Map(source.Func(func(ctx context.Context) (int, error) {
				started <- struct{}{}
				<-ctx.Done()
				return 0, ctx.Err()
			}), c61id, stage.Workers(1)))
			if err == nil {
				err = errors.New("inner run not cut short")
			}
			return k, err
		}, opts...)
		var err error
		var seen []int
		runcheck.Run(t, "run", func() {
			err = sink.ForEach(context.Background(), outer, func(_ context.Context, v int) error {
				seen = append(seen, v)
				return fmt.Errorf("enough: %w", stage.ErrStop)
			})
		})
		if err != nil || len(seen) != 1 || seen[0] != 0 {
			t.Fatalf("%v: ForEach = %v, seen %v; want nil, [0]", opts, err, seen)
		}
		a.mu.Lock()
		if a.done[0] != 1 || a.errs[0] != nil {
			t.Errorf("%v: item 0 committed but told %d times (%v)", opts, a.done[0], a.errs[0])
		}
		for i := 1; i < 5; i++ {
			if a.done[i] != 0 {
				t.Errorf("%v: item %d cut short but told %d times (%v)", opts, i, a.done[i], a.errs[i])
			}
		}
		a.mu.Unlock()
	}
}

// sink (package doc): "A sink returns the error that ended the run: the
// first *stage.Error of a stage with the FailFast policy". Item 1 fails
// only once item 0's inner run is going on; item 0's inner run then returns
// a cancellation error (its ctx is the outer run's), which item 0's call
// returns once the run is ending: cut short, not the run's error.
func TestReview61BBCNestedFailFastFirstErrorWins(t *testing.T) {
	for _, w := range []int{2, -1} {
		for _, ord := range []bool{false, true} {
			started := make(chan struct{})
			opts := []stage.Option{stage.Workers(w), stage.Name("outer"), stage.Buffer(1)}
			if ord {
				opts = append(opts, stage.Ordered())
			}
			outer := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, k int) (int, error) {
				if k == 1 {
					<-started
					return 0, errC61
				}
				return sink.Count(ctx, stage.Map(source.Func(func(ctx context.Context) (int, error) {
					close(started)
					<-ctx.Done()
					return 0, ctx.Err()
				}), c61id, stage.Name("inner")))
			}, opts...)
			var err error
			runcheck.Run(t, "run", func() { _, err = sink.Slice(context.Background(), outer) })
			var e *stage.Error
			if !errors.As(err, &e) || e.Stage != "outer" || e.Index != 1 || e.Err != errC61 {
				t.Fatalf("w%d ordered=%v: err = %v (%+v); want outer's *Error at 1 with errC61", w, ord, err, e)
			}
		}
	}
}

// sink.First: "over a bare source, exactly one item is taken". source.Chan:
// "a run that stops early ... leaves the rest in ch". A callback of an outer
// run takes one value from a shared channel per call with a run of its own.
func TestReview61BBCNestedFirstTakesOne(t *testing.T) {
	ch := make(chan int, 10)
	for i := range 10 {
		ch <- i
	}
	var got []int
	var err error
	runcheck.Run(t, "run", func() {
		err = sink.ForEach(context.Background(), stage.Map(source.Slice([]int{0, 1, 2, 3, 4}), c61id, stage.Workers(1)), func(ctx context.Context, _ int) error {
			v, ok, err := sink.First(ctx, source.Chan(ch))
			if !ok || err != nil {
				return fmt.Errorf("first: %v %v", ok, err)
			}
			got = append(got, v)
			return nil
		})
	})
	if err != nil || fmt.Sprint(got) != "[0 1 2 3 4]" || len(ch) != 5 {
		t.Fatalf("err %v, got %v, %d left; want [0 1 2 3 4] and 5 left", err, got, len(ch))
	}
}
