package stage_test

// Review 64: documented limits of package stage's options at their
// extremes. The options accept any n >= their minimum (Workers(n) "n >=
// 1", Buffer "panics if n < 0", Batch "panics if ... size < 1"), and the
// doc says a large value costs only what is used: "a large n over a small
// input costs neither goroutines nor memory"; a Buffer "costs memory only
// for the items it holds"; Batch: "a large size costs memory only when
// batches fill up". So math.MaxInt is a valid value, and read-ahead sums
// (workers+buffer, 2×workers+buffer) must not overflow into a hang or a
// crash. Each case runs 3 items in a child process.

import (
	"context"
	"math"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func TestReview64APIHugeOptionValues(t *testing.T) {
	const huge = math.MaxInt
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	for _, tc := range []struct {
		name string
		opts []stage.Option
	}{
		{"Workers(MaxInt)", []stage.Option{stage.Workers(huge)}},
		{"Workers(MaxInt)+Ordered", []stage.Option{stage.Workers(huge), stage.Ordered()}},
		{"Buffer(MaxInt)", []stage.Option{stage.Buffer(huge)}},
		{"Workers(8)+Buffer(MaxInt)", []stage.Option{stage.Workers(8), stage.Buffer(huge)}},
		{"Workers(8)+Buffer(MaxInt)+Ordered", []stage.Option{stage.Workers(8), stage.Buffer(huge), stage.Ordered()}},
		{"Workers(MaxInt)+Buffer(MaxInt)", []stage.Option{stage.Workers(huge), stage.Buffer(huge)}},
		{"RateLimit(1,MaxInt)", []stage.Option{stage.RateLimit(1, huge)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				// Over a slice (Len known) and over a waiting source
				// (Len unknown, where up to 64 workers start at once).
				for _, src := range []stage.Stream[int]{
					source.Slice([]int{1, 2, 3}),
					source.Chan(func() <-chan int {
						ch := make(chan int, 3)
						ch <- 1
						ch <- 2
						ch <- 3
						close(ch)
						return ch
					}()),
				} {
					got, err := sink.Slice(context.Background(), stage.Map(src, id, tc.opts...))
					slices.Sort(got)
					if err != nil || !slices.Equal(got, []int{1, 2, 3}) {
						t.Fatalf("%s over Len %d: %v, %v", tc.name, src.Len(), got, err)
					}
				}
			})
		})
	}
	t.Run("Batch(MaxInt)", func(t *testing.T) {
		runcheck.InChildTest(t, func(t *testing.T) {
			got, err := sink.Slice(context.Background(), stage.Batch(source.Slice([]int{1, 2, 3}), huge, 0))
			if err != nil || len(got) != 1 || !slices.Equal(got[0], []int{1, 2, 3}) {
				t.Fatalf("Batch(MaxInt): %v, %v", got, err)
			}
		})
	})
}
