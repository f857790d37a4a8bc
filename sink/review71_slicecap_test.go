package sink_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Slice: "When s knows its length (stage.Stream.Len), the slice is made with
// room for that many values before the run (at most 4096 values and 64 KiB).
// Without any value it returns a nil slice."
//
// A Map over a source.Slice of n ints (Len n, within both limits): the result
// holds exactly n values in a slice made for n, so its capacity is n; a known
// length of 0 still gives nil.
func TestReview71SliceRoomForKnownLength(t *testing.T) {
	for _, n := range []int{0, 1, 7, 100, 4096} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := stage.Map(source.Slice(review71Ints32(n)), func(_ context.Context, v int32) (int32, error) { return v, nil },
				stage.Workers(4), stage.Ordered())
			if s.Len() != n {
				t.Fatalf("Len = %d, want %d", s.Len(), n)
			}
			var got []int32
			var err error
			review71Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
			if err != nil || len(got) != n {
				t.Fatalf("Slice = %d values, %v", len(got), err)
			}
			if n == 0 && got != nil {
				t.Fatalf("Slice of no value = %#v, want nil", got)
			}
			if cap(got) != n {
				t.Fatalf("cap = %d for %d values of a stream of known length, want %d", cap(got), n, n)
			}
		})
	}
}
