package stage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Doc (Tee): "n streams that each see every item of in, in the order of
// in: the values themselves ... and every forwarded error (so each branch
// reports it)"; (Merge) "The merged stream ends when every input has
// ended"; (ForwardedError) "Count int // forwarded errors the sink
// received", "Sample []error // the first min(Count, SampleSize)". A wide
// Tee (hundreds of branches, each with its own stage, some Ordered) merged
// back: every branch sees every item and every forwarded error, each in
// the order of in.
func TestReview52WideTeeMerge(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		for _, width := range []int{1, 2, 97, 600} {
			const n = 12
			pre := stage.Map(source.Slice(ints52(n)), func(_ context.Context, v int) (int, error) {
				if v%4 == 3 {
					return 0, errR52
				}
				return v, nil
			}, stage.Workers(1), stage.OnError(stage.Forward))
			b := stage.Tee(pre, width)
			branches := make([]stage.Stream[[2]int], width)
			for i := range b {
				opts := []stage.Option{stage.Workers(1 + i%3)}
				if i%2 == 0 {
					opts = append(opts, stage.Ordered())
				}
				if i%3 == 0 {
					opts = []stage.Option{stage.Workers(1)}
				}
				branches[i] = stage.Map(b[i], func(_ context.Context, v int) ([2]int, error) { return [2]int{i, v}, nil }, opts...)
			}
			per := make([][]int, width)
			errsPer := 0
			for v, err := range sink.All(context.Background(), stage.Merge(branches...)) {
				if err != nil {
					if !errors.Is(err, errR52) {
						t.Fatalf("width %d: %v", width, err)
					}
					errsPer++
					continue
				}
				per[v[0]] = append(per[v[0]], v[1])
			}
			if errsPer != width*3 {
				t.Errorf("width %d: %d forwarded errors reached the sink, want %d (each branch reports each)", width, errsPer, width*3)
			}
			for i, got := range per {
				var want []int
				for v := range n {
					if v%4 != 3 {
						want = append(want, v)
					}
				}
				ordered := i%2 == 0 || i%3 == 0 || 1+i%3 == 1
				if len(got) != len(want) {
					t.Fatalf("width %d branch %d: got %v, want %v", width, i, got, want)
				}
				if ordered {
					for k := range got {
						if got[k] != want[k] {
							t.Fatalf("width %d branch %d (one worker or Ordered): got %v, want %v", width, i, got, want)
						}
					}
				}
			}
			c, err := sink.Count(context.Background(), stage.Merge(branches...))
			var fe *sink.ForwardedError
			if c != width*9 || !errors.As(err, &fe) || fe.Count != width*3 || len(fe.Sample) != min(width*3, sink.SampleSize) {
				t.Errorf("width %d: Count = %d, %v; want %d values and a ForwardedError of %d", width, c, err, width*9, width*3)
			}
		}
	})
}
