package sink_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errC61 = errors.New("c61 boom")

func c61id(_ context.Context, v int) (int, error) { return v, nil }

func c61ints(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// stage.Buffer: "Buffer lets the stage run n more items ahead of its consumer
// ... Buffer panics if n < 0." and "The buffer costs memory only for the items
// it holds". Workers: "n >= 1: at most n". Ordered: "the stage takes at most
// 2×workers+buffer items". Huge but valid sizes (whose sums overflow an int)
// must give a working stage: every item exactly once, in order under Ordered.
func TestReview61BBCHugeSizes(t *testing.T) {
	type cfg struct {
		name string
		opts []stage.Option
	}
	cfgs := []cfg{
		{"buf-max", []stage.Option{stage.Buffer(math.MaxInt)}},
		{"buf-max-w4", []stage.Option{stage.Workers(4), stage.Buffer(math.MaxInt)}},
		{"buf-max-ordered", []stage.Option{stage.Workers(4), stage.Buffer(math.MaxInt), stage.Ordered()}},
		{"buf-max-ordered-w1", []stage.Option{stage.Workers(1), stage.Buffer(math.MaxInt), stage.Ordered()}},
		{"buf-max-1-ordered", []stage.Option{stage.Workers(2), stage.Buffer(math.MaxInt - 3), stage.Ordered()}},
		{"w-max", []stage.Option{stage.Workers(math.MaxInt)}},
		{"w-max-ordered", []stage.Option{stage.Workers(math.MaxInt), stage.Ordered()}},
		{"w-max-buf-max", []stage.Option{stage.Workers(math.MaxInt), stage.Buffer(math.MaxInt)}},
		{"w-half-ordered", []stage.Option{stage.Workers(math.MaxInt/2 + 1), stage.Ordered()}},
		{"w-max-keyby", []stage.Option{stage.Workers(math.MaxInt), stage.KeyBy(func(v int) int { return v % 3 })}},
		{"buf-max-keyby-ordered", []stage.Option{stage.Workers(3), stage.Buffer(math.MaxInt), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 3 })}},
		{"w-1-buf-max-keyby", []stage.Option{stage.Workers(-1), stage.Buffer(math.MaxInt), stage.KeyBy(func(v int) int { return v % 3 })}},
	}
	srcs := map[string]func() stage.Stream[int]{
		"slice": func() stage.Stream[int] { return source.Slice(c61ints(50)) },
		"func": func() stage.Stream[int] {
			i := 0
			return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				i = 0
				return func(context.Context) (int, error) {
					if i == 50 {
						return 0, ioEOF
					}
					i++
					return i - 1, nil
				}, nil
			})
		},
	}
	for _, c := range cfgs {
		for sn, src := range srcs {
			t.Run(c.name+"/"+sn, func(t *testing.T) {
				var got []int
				var err error
				runcheck.NoHang(t, c.name, func() {
					s := stage.Map(src(), c61id, c.opts...)
					s = stage.Map(s, c61id, c.opts...)
					got, err = sink.Slice(context.Background(), s)
				})
				if err != nil || len(got) != 50 {
					t.Fatalf("got %d items, %v", len(got), err)
				}
				s2 := slices.Clone(got)
				slices.Sort(s2)
				if !slices.Equal(s2, c61ints(50)) {
					t.Fatalf("got %v", got)
				}
			})
		}
	}
}

// stage.Batch: "Each batch is a new slice that the consumer may keep; its
// capacity follows the batches' sizes (it starts small and grows), so a large
// size costs memory only when batches fill up." A Batch of math.MaxInt and
// a timeout of the longest duration: one batch at the end of the input.
func TestReview61BBCHugeBatch(t *testing.T) {
	for _, n := range []int{0, 1, 3} {
		var got [][]int
		var err error
		runcheck.NoHang(t, "batch", func() {
			got, err = sink.Slice(context.Background(), stage.Batch(source.Slice(c61ints(n)), math.MaxInt, time.Duration(math.MaxInt64)))
		})
		if n == 0 {
			if err != nil || got != nil {
				t.Fatalf("n=0: %v %v", got, err)
			}
			continue
		}
		if err != nil || len(got) != 1 || !slices.Equal(got[0], c61ints(n)) {
			t.Fatalf("n=%d: %v %v", n, got, err)
		}
	}
}
