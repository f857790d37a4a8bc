package source_test

import (
	"context"
	"errors"
	"io"
	"iter"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func TestSliceRepeats(t *testing.T) {
	s := source.Slice([]string{"a", "b"})
	for range 2 {
		got, err := sink.Slice(context.Background(), s)
		if err != nil || !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("got %v, %v; want [a b], nil", got, err)
		}
	}
}

func TestSeqIsStoppedBeforeTheSinkReturns(t *testing.T) {
	for _, early := range []bool{false, true} {
		stopped := false
		seq := func(yield func(int) bool) {
			defer func() { stopped = true }()
			for i := range 100 {
				if !yield(i) {
					return
				}
			}
		}
		s := stage.Map(source.Seq(seq), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4))
		if early {
			_, _, _ = sink.First(context.Background(), s)
		} else if n, err := sink.Count(context.Background(), s); n != 100 || err != nil {
			t.Fatalf("Count = %d, %v", n, err)
		}
		if !stopped {
			t.Fatalf("early=%v: the iterator was not stopped when the sink returned", early)
		}
	}
}

func TestSeqStepsOnlyWhenAsked(t *testing.T) {
	steps := 0
	seq := func(yield func(int) bool) {
		for i := 0; ; i++ {
			steps++
			if !yield(i) {
				return
			}
		}
	}
	v, ok, err := sink.First(context.Background(), source.Seq(seq))
	if v != 0 || !ok || err != nil || steps != 1 {
		t.Fatalf("First = %d, %v, %v after %d steps; want 0, true, nil after 1", v, ok, err, steps)
	}
}

func TestSeqPanicIsASourceError(t *testing.T) {
	seq := iter.Seq[int](func(yield func(int) bool) {
		yield(1)
		panic("seq broke")
	})
	got, err := sink.Slice(context.Background(), source.Seq(seq))
	var se *stage.SourceError
	var pe *stage.PanicError
	if !slices.Equal(got, []int{1}) || !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "seq broke" {
		t.Fatalf("got %v, %v; want [1] and a *stage.PanicError in a *stage.SourceError", got, err)
	}
}

func TestChanLeavesTheRestAfterCancellation(t *testing.T) {
	ch := make(chan int, 100)
	for i := range 100 {
		ch <- i
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := sink.ForEach(ctx, source.Chan(ch), func(context.Context, int) error {
		if n++; n == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(ch) != 90 {
		t.Fatalf("%d items left in the channel, want 90", len(ch))
	}
}

func TestChanEndsWhenClosed(t *testing.T) {
	ch := make(chan int)
	go func() {
		defer close(ch)
		for i := range 5 {
			ch <- i
		}
	}()
	got, err := sink.Slice(context.Background(), stage.Map(source.Chan(ch), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Ordered(), stage.Workers(3)))
	if err != nil || !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("got %v, %v; want 0..4 in order", got, err)
	}
}

// TestFuncEOFAndErrors pins Func's doc: io.EOF itself ends the stream; an
// error that wraps it is a failure (a truncated input is not a complete
// one), after the items before it.
func TestFuncEOFAndErrors(t *testing.T) {
	for _, end := range []error{io.EOF, errors.Join(errors.New("page 3"), io.EOF)} {
		i := 0
		s := source.Func(func(context.Context) (int, error) {
			if i == 3 {
				return 0, end
			}
			i++
			return i, nil
		})
		got, err := sink.Slice(context.Background(), s)
		var se *stage.SourceError
		switch {
		case !slices.Equal(got, []int{1, 2, 3}):
			t.Fatalf("%v: got %v, %v; want [1 2 3]", end, got, err)
		case end == io.EOF && err != nil:
			t.Fatalf("io.EOF: %v, want nil", err)
		case end != io.EOF && !(errors.As(err, &se) && errors.Is(err, end)):
			t.Fatalf("a wrapped io.EOF: %v, want a *stage.SourceError wrapping it", err)
		}
	}
}
