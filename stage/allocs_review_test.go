package stage_test

import (
	"context"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReviewAllocsFusedStress runs fused chains (startIdle's stepper slab,
// the embedded first handle, processor, queue and spare, handOut's inline
// room) over many item counts and worker counts, with cheap calls (places
// go to consumers), slow ones (places go back to new goroutines) and
// FlatMap (more than one output per item).
func TestReviewAllocsFusedStress(t *testing.T) {
	ctx := context.Background()
	var slowOn atomic.Int64
	f := func(_ context.Context, x int) (int, error) {
		if int64(x)%7 == slowOn.Load() {
			time.Sleep(30 * time.Microsecond)
		}
		return x + 1, nil
	}
	for round := range 3 {
		slowOn.Store(int64(round))
		for n := 0; n <= 40; n++ {
			in := make([]int, n)
			for i := range in {
				in[i] = i
			}
			for w := 1; w <= 6; w++ {
				a := stage.Map(source.Slice(in), f, stage.Workers(w))
				b := stage.Map(a, f, stage.Workers(w+1))
				c := stage.FlatMap(b, func(_ context.Context, x int) ([]int, error) { return []int{x, -x}, nil }, stage.Workers(w))
				d := stage.Filter(c, func(_ context.Context, x int) (bool, error) { return x > 0, nil }, stage.Workers(2))
				got, err := sink.Slice(ctx, d)
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(got)
				want := make([]int, n)
				for i := range want {
					want[i] = i + 2
				}
				if !slices.Equal(got, want) {
					t.Fatalf("n=%d w=%d: got %v, want %v", n, w, got, want)
				}
				var sum atomic.Int64
				if err := stage.Run(ctx, b, func(_ context.Context, v int, err error) error { sum.Add(int64(v)); return err }); err != nil {
					t.Fatal(err)
				}
				if want := int64(n*(n-1)/2 + 2*n); sum.Load() != want {
					t.Fatalf("n=%d w=%d: Run sum %d, want %d", n, w, sum.Load(), want)
				}
			}
		}
	}
}

// TestStreamIsNotComparable: a Stream holds its opener as an interface,
// which == and map hashing would compare (and panic on for a function); the
// zero-size func field keeps Stream out of comparisons at compile time, as
// when its fields were functions.
func TestStreamIsNotComparable(t *testing.T) {
	if reflect.TypeFor[stage.Stream[int]]().Comparable() {
		t.Error("stage.Stream is comparable: == and map keys compile, and panic at run time for some streams")
	}
}
