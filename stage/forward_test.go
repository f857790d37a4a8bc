package stage_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// forwarding is a two-stage pipeline over 0..19 whose first stage forwards
// an error for every multiple of 5, and whose second stage counts its calls.
func forwarding(m mode, calls *atomic.Int64) stage.Stream[int] {
	s := stage.Map(source.Slice(ints(20)), func(_ context.Context, x int) (int, error) {
		if x%5 == 0 {
			return 0, errBoom
		}
		return x, nil
	}, m.opts(stage.OnError(stage.Forward), stage.Name("check"))...)
	return stage.Map(s, func(_ context.Context, x int) (int, error) {
		calls.Add(1)
		return x, nil
	}, m.opts()...)
}

var forwardWant = []int{1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 16, 17, 18, 19}

// checkForwarded checks that err joins exactly the four forwarded errors.
func checkForwarded(t *testing.T, err error) {
	t.Helper()
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("err = %v, want errors.Join of the forwarded errors", err)
	}
	var idx []int
	for _, e := range joined.Unwrap() {
		var se *stage.Error
		if !errors.As(e, &se) || se.Stage != "check" || !errors.Is(e, errBoom) {
			t.Fatalf("joined error %v, want a *stage.Error of stage check", e)
		}
		idx = append(idx, se.Index)
	}
	slices.Sort(idx)
	if !slices.Equal(idx, []int{0, 5, 10, 15}) {
		t.Fatalf("forwarded indexes %v, want [0 5 10 15]", idx)
	}
}

func TestForwardPassesErrorsThrough(t *testing.T) {
	ctx := context.Background()
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			t.Run("All", func(t *testing.T) {
				var calls atomic.Int64
				var got []int
				var errs []error
				for v, err := range sink.All(ctx, forwarding(m, &calls)) {
					if err != nil {
						if v != 0 {
							t.Fatalf("error item with value %d, want zero", v)
						}
						errs = append(errs, err)
						continue
					}
					got = append(got, v)
				}
				checkForwarded(t, errors.Join(errs...))
				if m.workers == 1 || m.ordered {
					if !slices.Equal(got, forwardWant) {
						t.Fatalf("got %v, want %v", got, forwardWant)
					}
				}
				if calls.Load() != 16 {
					t.Fatalf("the second stage ran %d times, want 16: forwarded errors skip it", calls.Load())
				}
			})
			t.Run("Slice", func(t *testing.T) {
				var calls atomic.Int64
				got, err := sink.Slice(ctx, forwarding(m, &calls))
				checkForwarded(t, err)
				slices.Sort(got)
				if !slices.Equal(got, forwardWant) {
					t.Fatalf("got %v, want %v", got, forwardWant)
				}
			})
			t.Run("Count", func(t *testing.T) {
				var calls atomic.Int64
				n, err := sink.Count(ctx, forwarding(m, &calls))
				checkForwarded(t, err)
				if n != 16 {
					t.Fatalf("n = %d, want 16", n)
				}
			})
			t.Run("Reduce", func(t *testing.T) {
				var calls atomic.Int64
				sum, err := sink.Reduce(ctx, forwarding(m, &calls), 0, func(a, b int) int { return a + b })
				checkForwarded(t, err)
				if sum != 190-30 {
					t.Fatalf("sum = %d, want 160", sum)
				}
			})
			t.Run("ForEach", func(t *testing.T) {
				var calls atomic.Int64
				n := 0
				err := sink.ForEach(ctx, forwarding(m, &calls), func(context.Context, int) error { n++; return nil })
				checkForwarded(t, err)
				if n != 16 {
					t.Fatalf("%d callbacks, want 16", n)
				}
			})
			t.Run("Chan", func(t *testing.T) {
				var calls atomic.Int64
				out := make(chan int, 20)
				err := sink.Chan(ctx, forwarding(m, &calls), out)
				checkForwarded(t, err)
				if len(out) != 16 {
					t.Fatalf("%d values sent, want 16", len(out))
				}
			})
		})
	}
}

func TestFirstOfForwardedError(t *testing.T) {
	s := stage.Map(source.Slice(ints(5)), func(context.Context, int) (int, error) { return 0, errBoom },
		stage.OnError(stage.Forward))
	v, ok, err := sink.First(context.Background(), s)
	var se *stage.Error
	if v != 0 || ok || !errors.As(err, &se) || !errors.Is(err, errBoom) {
		t.Fatalf("First = %d, %v, %v; want 0, false, the forwarded *stage.Error", v, ok, err)
	}
	// An empty stream is not an error.
	v, ok, err = sink.First(context.Background(), source.Slice([]int(nil)))
	if v != 0 || ok || err != nil {
		t.Fatalf("First(empty) = %d, %v, %v; want 0, false, nil", v, ok, err)
	}
}

func TestForwardThenFailFastReportsTheFailureFirst(t *testing.T) {
	var calls atomic.Int64
	s := stage.Map(forwarding(mode{1, false}, &calls), func(_ context.Context, x int) (int, error) {
		if x == 12 {
			return 0, errors.New("fatal")
		}
		return x, nil
	}, stage.Workers(1), stage.Name("last"))
	_, err := sink.Slice(context.Background(), s)
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "last" || se.Index != 12 {
		t.Fatalf("errors.As found %v, want the FailFast error of stage last, item 12", se)
	}
}
