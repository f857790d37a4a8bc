package sink_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview30SinkCallbackErrorFields attacks stage.Error's fields for a sink
// callback ("Stage ... for a sink callback, the sink's kind ("foreach",
// "reduce")"; "Index is the item's 0-based position in the stage's input.
// Forwarded errors count as items"; "Input is the item the function was
// called with"; "Attempts is how many times the stage tried the item: 1";
// "Err is the error the function returned, or a *PanicError") and the
// cause of the run's context: ForEach's "the run's context is cancelled
// with a *stage.Error (Stage "foreach") as its cause, and ForEach returns
// that error". Items 0..9; item 2 is forwarded; the callback fails at 6.
func TestReview30SinkCallbackErrorFields(t *testing.T) {
	boom := errors.New("callback failure")
	fwd := errors.New("forwarded")
	pipe := func() stage.Stream[int] {
		ints := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		return stage.Map(source.Slice(ints), func(_ context.Context, v int) (int, error) {
			if v == 2 {
				return 0, fwd
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(stage.Forward))
	}
	check := func(label string, err error, kind string, input int, inner func(error) bool) *stage.Error {
		t.Helper()
		var se *stage.Error
		// the outermost *stage.Error that names the sink
		for e := err; e != nil; {
			var x *stage.Error
			if !errors.As(e, &x) {
				break
			}
			if x.Stage == kind {
				se = x
				break
			}
			e = x.Err
		}
		if se == nil {
			t.Fatalf("%s: err = %v, no *stage.Error of stage %q", label, err, kind)
		}
		if se.Index != 6 || se.Input != any(input) || se.Attempts != 1 || !inner(se.Err) {
			t.Fatalf("%s: *stage.Error{Stage %q, Index %d, Input %v, Attempts %d, Err %v}, want Index 6, Input %d, Attempts 1",
				label, se.Stage, se.Index, se.Input, se.Attempts, se.Err, input)
		}
		return se
	}
	isBoom := func(e error) bool { return e == boom }
	isPanic := func(e error) bool {
		pe, ok := e.(*stage.PanicError)
		return ok && pe.Value == any(boom)
	}
	err := sink.ForEach(context.Background(), pipe(), func(ctx context.Context, v int) error {
		if v == 6 {
			return boom
		}
		return nil
	})
	check("ForEach error", err, "foreach", 6, isBoom)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 1 || !errors.Is(err, fwd) {
		t.Fatalf("ForEach error: err = %v, want it joined with a *ForwardedError of 1", err)
	}
	// The cause, seen by a stage's call in flight when the callback fails.
	seen := make(chan error, 1)
	started := make(chan struct{})
	slow := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, v int) (int, error) {
		if v == 1 {
			close(started)
			<-ctx.Done()
			seen <- context.Cause(ctx)
			return 0, ctx.Err()
		}
		return v, nil
	}, stage.Workers(2), stage.Buffer(1))
	err = sink.ForEach(context.Background(), slow, func(_ context.Context, v int) error {
		<-started // item 1's call is under way (Buffer(1): on a worker of the stage's own)
		return boom
	})
	var cause error
	select {
	case cause = <-seen:
	case <-time.After(30 * time.Second):
		t.Fatal("hung (watchdog)")
	}
	var ce, re *stage.Error
	if !errors.As(cause, &ce) || !errors.As(err, &re) || ce != re || ce.Stage != "foreach" || ce.Err != boom {
		t.Fatalf("cause %v (%T) and result %v: want the same *stage.Error of stage foreach", cause, cause, err)
	}
	err = sink.ForEach(context.Background(), pipe(), func(ctx context.Context, v int) error {
		if v == 6 {
			panic(boom)
		}
		return nil
	})
	check("ForEach panic", err, "foreach", 6, isPanic)
	_, err = sink.Reduce(context.Background(), pipe(), 0, func(acc, v int) int {
		if v == 6 {
			panic(boom)
		}
		return acc + v
	})
	check("Reduce panic", err, "reduce", 6, isPanic)
}
