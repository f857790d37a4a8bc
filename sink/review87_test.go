package sink_test

// review87: sinks downstream of retried, timed, ordered stages (black-box,
// from the documentation).

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR87Fail = errors.New("r87: fail")

// TestReview87ChanStopsWaitingOnFailure attacks:
//
//	Chan: "If the run fails while Chan waits on out, Chan stops waiting and
//	returns the error that ended the run."
//
// Nobody reads out; item 1 fails FailFast after its retries (its calls end
// by their Timeout). Chan must return item 1's error.
func TestReview87ChanStopsWaitingOnFailure(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		for _, w := range []int{1, 2, -1} {
			t.Run(fmt.Sprintf("w=%d/o=%v", w, ordered), func(t *testing.T) {
				opts := []stage.Option{stage.Workers(w), stage.Timeout(time.Millisecond), stage.Retry(3, 0)}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				out := make(chan int)
				var err error
				runcheck.Run(t, "chan", func() {
					err = sink.Chan(context.Background(), stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, x int) (int, error) {
						if x == 1 {
							<-ctx.Done()
							return 0, ctx.Err()
						}
						return x, nil
					}, opts...), out)
				})
				var e *stage.Error
				if !errors.As(err, &e) || e.Index != 1 || e.Attempts != 3 || !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err = %v, want item 1's *Error", err)
				}
			})
		}
	}
}

// TestReview87ReduceCountForwardedAndFailed attacks:
//
//	Reduce: "returns the accumulator as it stands when the run ends, with
//	the error that ended it and a *ForwardedError, joined."
//	Count: "returns how many values reached the end (forwarded errors are
//	not counted but returned in a *ForwardedError)"
//	ForwardedError: "Sample []error // the first min(Count, SampleSize) of
//	them, in arrival order"
func TestReview87ReduceCountForwardedAndFailed(t *testing.T) {
	const n = 40
	build := func(failAt int) stage.Stream[int] {
		s1 := stage.Map(source.Slice(func() []int {
			xs := make([]int, n)
			for i := range xs {
				xs[i] = i
			}
			return xs
		}()), func(ctx context.Context, x int) (int, error) {
			if x%3 == 0 {
				return 0, errR87Fail
			}
			return x, nil
		}, stage.Workers(1), stage.Retry(2, 0), stage.Timeout(time.Minute), stage.OnError(stage.Forward))
		return stage.Map(s1, func(ctx context.Context, x int) (int, error) {
			if x == failAt {
				return 0, errors.New("r87: second stage fails")
			}
			return x, nil
		}, stage.Workers(1), stage.Retry(2, 0))
	}
	var c int
	var err error
	runcheck.Run(t, "count", func() { c, err = sink.Count(context.Background(), build(-1)) })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 14 || len(fe.Sample) != sink.SampleSize || c != n-14 {
		t.Errorf("Count = %d, %v; want %d and a ForwardedError of 14 (sample 8)", c, err, n-14)
	}
	for i, e := range fe.Sample {
		var se *stage.Error
		if !errors.As(e, &se) || se.Index != 3*i || se.Attempts != 2 {
			t.Errorf("sample %d: %v, want the error of index %d (arrival order)", i, e, 3*i)
		}
	}
	var acc int
	runcheck.Run(t, "reduce", func() {
		acc, err = sink.Reduce(context.Background(), build(20), 0, func(a, v int) int { return a + v })
	})
	var se *stage.Error
	// At most the values before 20 arrived (FailFast may drop some): 1, 2,
	// 4, 5, ..., 19 (not multiples of 3).
	want := 0
	for x := 1; x < 20; x++ {
		if x%3 != 0 {
			want += x
		}
	}
	if !errors.As(err, &fe) || !errors.Is(err, errR87Fail) {
		t.Errorf("Reduce err = %v, want a ForwardedError joined", err)
	}
	found := false
	for u := range r87unwrapAll(err) {
		if x, ok := u.(*stage.Error); ok && x.Index == 20 && x.Stage == "map#2" {
			found = true
			se = x
		}
	}
	if !found || se.Attempts != 2 {
		t.Errorf("Reduce err = %v, want map#2's *Error at index 20 after 2 attempts", err)
	}
	if acc < 0 || acc > want {
		t.Errorf("acc = %d, want at most %d", acc, want)
	}
}

// r87unwrapAll yields every error in err's tree.
func r87unwrapAll(err error) func(func(error) bool) {
	return func(yield func(error) bool) {
		var walk func(error) bool
		walk = func(e error) bool {
			if e == nil {
				return true
			}
			if !yield(e) {
				return false
			}
			switch u := e.(type) {
			case interface{ Unwrap() []error }:
				for _, c := range u.Unwrap() {
					if !walk(c) {
						return false
					}
				}
			case interface{ Unwrap() error }:
				return walk(u.Unwrap())
			}
			return true
		}
		walk(err)
	}
}
