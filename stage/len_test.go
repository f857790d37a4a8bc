package stage_test

import (
	"context"
	"math"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestLen: Len is known through stages that give one item per item, unknown
// after those that do not.
func TestLen(t *testing.T) {
	src := source.Slice([]int{1, 2, 3})
	keep := func(_ context.Context, x int) (int, error) { return x, nil }
	cases := []struct {
		name string
		s    stage.Stream[int]
		want int
	}{
		{"slice", src, 3},
		{"map", stage.Map(src, keep, stage.Workers(4)), 3},
		{"map of map", stage.Map(stage.Map(src, keep), keep), 3},
		{"filter", stage.Filter(src, func(context.Context, int) (bool, error) { return true, nil }), -1},
		{"flatmap", stage.FlatMap(src, func(_ context.Context, x int) ([]int, error) { return []int{x}, nil }), -1},
		{"huge indexed", stage.Indexed(math.MaxInt, func(i int) int { return i }), math.MaxInt},
		{"func", source.Func(func(context.Context) (int, error) { return 0, nil }), -1},
	}
	for _, c := range cases {
		if got := c.s.Len(); got != c.want {
			t.Errorf("%s: Len() = %d, want %d", c.name, got, c.want)
		}
	}
	var zero stage.Stream[int]
	if got := zero.Len(); got != -1 {
		t.Errorf("the zero Stream's Len() = %d, want -1", got)
	}
}

type totalObserver struct{ totals map[string]int }

func (o totalObserver) Stage(i stage.Info) stage.Watcher {
	o.totals[i.Name] = i.Total
	return nil
}

// TestLenIsTheLastStagesTotal: what Len says is what the Observer is told.
func TestLenIsTheLastStagesTotal(t *testing.T) {
	keep := func(_ context.Context, x int) (int, error) { return x, nil }
	for _, s := range []stage.Stream[int]{
		stage.Map(source.Slice([]int{1, 2, 3}), keep, stage.Name("last")),
		stage.Map(stage.Filter(source.Slice([]int{1}), func(context.Context, int) (bool, error) { return true, nil }), keep, stage.Name("last")),
	} {
		o := totalObserver{map[string]int{}}
		if _, err := sink.Slice(stage.Observe(context.Background(), o), s); err != nil {
			t.Fatal(err)
		}
		if o.totals["last"] != s.Len() {
			t.Errorf("Info.Total %d, Len %d", o.totals["last"], s.Len())
		}
	}
}
