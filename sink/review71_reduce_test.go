package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "Reduce runs s and folds its values into an accumulator, starting from
// init, in arrival order: acc = f(acc, v). f is called one value at a time."
func TestReview71ReduceFoldsInOrder(t *testing.T) {
	for _, n := range []int{0, 1, 3, 1000} {
		s := stage.Map(source.Slice(review71Ints(n)), func(_ context.Context, v int) (int, error) { return v, nil },
			stage.Workers(12), stage.Ordered())
		var inflight atomic.Int32
		var acc []int
		var err error
		review71Run(t, "reduce", func() {
			acc, err = sink.Reduce(context.Background(), s, []int{-1}, func(acc []int, v int) []int {
				if inflight.Add(1) != 1 {
					t.Errorf("two calls of f at once")
				}
				defer inflight.Add(-1)
				return append(acc, v)
			})
		})
		if err != nil || len(acc) != n+1 || acc[0] != -1 {
			t.Fatalf("n=%d: Reduce = %v, %v", n, acc, err)
		}
		for i, v := range acc[1:] {
			if v != i {
				t.Fatalf("n=%d: acc %v not in input order", n, acc)
			}
		}
	}
}

// "A panic in f ends the run with a *stage.Error (Stage "reduce") wrapping a
// *stage.PanicError. Reduce returns the accumulator as it stands when the run
// ends".
//
// f panics at item k: the accumulator is the fold of the k items before it.
func TestReview71ReducePanicKeepsAccumulator(t *testing.T) {
	for _, workers := range []int{1, 8} {
		for _, k := range []int{0, 1, 5, 49} {
			t.Run(fmt.Sprintf("w%d/at-%d", workers, k), func(t *testing.T) {
				s := stage.Map(source.Slice(review71Ints(50)), func(_ context.Context, v int) (int, error) { return v, nil },
					stage.Workers(workers), stage.Ordered())
				var acc int
				var err error
				review71Run(t, "reduce", func() {
					acc, err = sink.Reduce(context.Background(), s, 1000, func(acc, v int) int {
						if v == k {
							panic(fmt.Sprintf("review71 at %d", v))
						}
						return acc + v
					})
				})
				want := 1000 + k*(k-1)/2
				var se *stage.Error
				var pe *stage.PanicError
				if !errors.As(err, &se) || se.Stage != "reduce" || !errors.As(err, &pe) || pe.Value != fmt.Sprintf("review71 at %d", k) {
					t.Fatalf("Reduce error = %v, want a *stage.Error of Stage reduce wrapping the *stage.PanicError", err)
				}
				if acc != want {
					t.Fatalf("Reduce acc = %d, want %d (the fold before the panic)", acc, want)
				}
			})
		}
	}
}

// "Reduce returns the accumulator as it stands when the run ends, with the
// error that ended it and a *ForwardedError, joined."
//
// Items 2 and 3 are forwarded, item 6 fails FailFast in a later stage of one
// worker once the fold has seen item 5: the accumulator holds 0, 1, 4, 5, and the error holds both the
// FailFast *stage.Error and the *ForwardedError.
func TestReview71ReduceJoinedErrors(t *testing.T) {
	src := source.Slice(review71Ints(10))
	fwd := stage.Map(src, func(_ context.Context, v int) (int, error) {
		if v == 2 || v == 3 {
			return 0, errReview71Boom
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward), stage.Name("fwd"))
	errSix := errors.New("six")
	seen5 := make(chan struct{})
	ff := stage.Map(fwd, func(_ context.Context, v int) (int, error) {
		if v == 6 {
			<-seen5 // fail only once the fold has seen item 5
			return 0, errSix
		}
		return v, nil
	}, stage.Workers(1), stage.Buffer(1), stage.Name("ff"))
	var acc []int
	var err error
	review71Run(t, "reduce", func() {
		acc, err = sink.Reduce(context.Background(), ff, nil, func(acc []int, v int) []int {
			if v == 5 {
				close(seen5)
			}
			return append(acc, v)
		})
	})
	if fmt.Sprint(acc) != "[0 1 4 5]" {
		t.Fatalf("acc = %v, want [0 1 4 5]", acc)
	}
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 2 || !errors.Is(err, errReview71Boom) {
		t.Fatalf("Reduce error = %v, want a *ForwardedError of 2", err)
	}
	if !errors.Is(err, errSix) {
		t.Fatalf("Reduce error = %v, want the FailFast error of item 6 joined", err)
	}
	found := false
	for _, e := range fe.Sample {
		var se *stage.Error
		if errors.As(e, &se) && se.Stage == "fwd" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the sample %v does not hold the fwd stage's *stage.Error", fe.Sample)
	}
}

// package stage: "from the moment its Done channel is closed ... the sink
// delivers nothing more", with Reduce's "returns the accumulator as it stands
// when the run ends, with the error that ended it".
//
// f cancels the caller's ctx while folding item k: f is not called again, the
// accumulator holds items 0..k, and the error is the cancellation.
func TestReview71ReduceCancelInFold(t *testing.T) {
	for _, kind := range review71Kinds {
		for _, k := range []int{0, 3, 9} {
			t.Run(fmt.Sprintf("%s/at-%d", kind, k), func(t *testing.T) {
				ctx, cancel := ctxtest.New(kind)
				defer cancel()
				s := stage.Map(source.Slice(review71Ints(10)), func(_ context.Context, v int) (int, error) { return v, nil },
					stage.Workers(1))
				var acc []int
				var err error
				review71Run(t, "reduce", func() {
					acc, err = sink.Reduce(ctx, s, nil, func(acc []int, v int) []int {
						if v == k {
							cancel()
						}
						return append(acc, v)
					})
				})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Reduce error = %v, want context.Canceled", err)
				}
				if len(acc) != k+1 || acc[k] != k {
					t.Fatalf("acc = %v, want 0..%d", acc, k)
				}
			})
		}
	}
}
