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

// r30Pipes are pipelines of 5 items (0..4) in input order, over each kind of
// source and stage path.
func r30Pipes() map[string]func() stage.Stream[int] {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	ints := []int{0, 1, 2, 3, 4}
	return map[string]func() stage.Stream[int]{
		"slice": func() stage.Stream[int] { return source.Slice(ints) },
		"func": func() stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				if i == 5 {
					return 0, io.EOF
				}
				i++
				return i - 1, nil
			})
		},
		"map1":     func() stage.Stream[int] { return stage.Map(source.Slice(ints), id, stage.Workers(1)) },
		"map4-ord": func() stage.Stream[int] { return stage.Map(source.Slice(ints), id, stage.Workers(4), stage.Ordered()) },
		"map4-ord-b": func() stage.Stream[int] {
			return stage.Map(source.Slice(ints), id, stage.Workers(4), stage.Ordered(), stage.Buffer(8))
		},
		"seq": func() stage.Stream[int] {
			return source.Seq(func(yield func(int) bool) {
				for _, v := range ints {
					if !yield(v) {
						return
					}
				}
			})
		},
	}
}

// TestReview30CancelInsideTheLastCallback attacks stage.Run's result rule, on
// which every sink rests ("A sink never reports success for a run that
// failed, and its result is a function of the items and errors it saw, never
// of timing"): "the error that cut the run short before f saw the end of s:
// ... when ctx was cancelled, an error for which errors.Is(err,
// context.Canceled) ... holds". A callback that cancels the caller's ctx
// while it handles the last item, and returns nil, has cut the run short
// before the end of s was seen (the end comes after the last item), so the
// sink must report the cancellation, whatever the source knew.
func TestReview30CancelInsideTheLastCallback(t *testing.T) {
	for name, mk := range r30Pipes() {
		for at := range 5 {
			for range 20 {
				label := fmt.Sprintf("%s, cancel at %d", name, at)
				runcheck.Run(t, label+" ForEach", func() {
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					err := sink.ForEach(ctx, mk(), func(_ context.Context, v int) error {
						if v == at {
							cancel()
						}
						return nil
					})
					if !errors.Is(err, context.Canceled) {
						t.Errorf("%s ForEach: err = %v, want context.Canceled", label, err)
					}
				})
				runcheck.Run(t, label+" Reduce", func() {
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					_, err := sink.Reduce(ctx, mk(), 0, func(acc, v int) int {
						if v == at {
							cancel()
						}
						return acc + v
					})
					if !errors.Is(err, context.Canceled) {
						t.Errorf("%s Reduce: err = %v, want context.Canceled", label, err)
					}
				})
				runcheck.Run(t, label+" All", func() {
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					var last error
					for v, err := range sink.All(ctx, mk()) {
						last = err
						if err == nil && v == at {
							cancel()
						}
					}
					if !errors.Is(last, context.Canceled) {
						t.Errorf("%s All: last pair's error = %v, want context.Canceled", label, last)
					}
				})
			}
		}
	}
}
