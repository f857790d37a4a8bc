package sink_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errBad = errors.New("bad")

// checked is 0..9 through a one-worker stage that forwards an error for 3
// and 7 (so the order of everything is the input order).
func checked() stage.Stream[int] {
	return stage.Map(source.Slice([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}), func(_ context.Context, x int) (int, error) {
		if x == 3 || x == 7 {
			return 0, errBad
		}
		return x, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
}

var checkedValues = []int{0, 1, 2, 4, 5, 6, 8, 9}

// forwardedTwice checks that err joins the two forwarded errors.
func forwardedTwice(t *testing.T, err error) {
	t.Helper()
	j, ok := err.(interface{ Unwrap() []error })
	if !ok || len(j.Unwrap()) != 2 || !errors.Is(err, errBad) {
		t.Fatalf("err = %v, want the two forwarded errors joined", err)
	}
}

func TestSinksWithForwardedErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("Slice", func(t *testing.T) {
		got, err := sink.Slice(ctx, checked())
		forwardedTwice(t, err)
		if !slices.Equal(got, checkedValues) {
			t.Fatalf("got %v, want %v", got, checkedValues)
		}
	})
	t.Run("Count", func(t *testing.T) {
		n, err := sink.Count(ctx, checked())
		forwardedTwice(t, err)
		if n != len(checkedValues) {
			t.Fatalf("n = %d, want %d", n, len(checkedValues))
		}
	})
	t.Run("Reduce in arrival order", func(t *testing.T) {
		got, err := sink.Reduce(ctx, checked(), []int(nil), func(acc []int, v int) []int { return append(acc, v) })
		forwardedTwice(t, err)
		if !slices.Equal(got, checkedValues) {
			t.Fatalf("got %v, want %v", got, checkedValues)
		}
	})
	t.Run("ForEach", func(t *testing.T) {
		var got []int
		err := sink.ForEach(ctx, checked(), func(_ context.Context, v int) error { got = append(got, v); return nil })
		forwardedTwice(t, err)
		if !slices.Equal(got, checkedValues) {
			t.Fatalf("got %v, want %v", got, checkedValues)
		}
	})
	t.Run("Chan", func(t *testing.T) {
		out := make(chan int, 10)
		err := sink.Chan(ctx, checked(), out)
		forwardedTwice(t, err)
		close(out) // still open: Chan does not close it
		var got []int
		for v := range out {
			got = append(got, v)
		}
		if !slices.Equal(got, checkedValues) {
			t.Fatalf("got %v, want %v", got, checkedValues)
		}
	})
	t.Run("All yields errors in place", func(t *testing.T) {
		var got []int
		for v, err := range sink.All(ctx, checked()) {
			if err != nil {
				got = append(got, -1)
				continue
			}
			got = append(got, v)
		}
		if want := []int{0, 1, 2, -1, 4, 5, 6, -1, 8, 9}; !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	})
}

func TestAllYieldsTheEndingErrorLast(t *testing.T) {
	i := 0
	src := source.Func(func(context.Context) (int, error) {
		if i == 3 {
			return 0, errBad
		}
		i++
		return i, nil
	})
	var got []int
	var last error
	for v, err := range sink.All(context.Background(), src) {
		if last != nil {
			t.Fatalf("yielded (%d, %v) after the ending error", v, err)
		}
		if err != nil {
			last = err
			continue
		}
		got = append(got, v)
	}
	var se *stage.SourceError
	if !slices.Equal(got, []int{1, 2, 3}) || !errors.As(last, &se) {
		t.Fatalf("got %v then %v, want 1 2 3 then a *stage.SourceError", got, last)
	}
}

func TestRunStopsEarly(t *testing.T) {
	seen := 0
	err := stage.Run(context.Background(), source.Slice([]int{1, 2, 3, 4}), func(_ context.Context, v int, err error) error {
		if seen++; v == 2 {
			return stage.ErrStop
		}
		return nil
	})
	if err != nil || seen != 2 {
		t.Fatalf("Run = %v after %d items, want nil after 2", err, seen)
	}
}
