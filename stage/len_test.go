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
		{"tee branch", stage.Tee(source.Slice([]int{1, 2, 3}), 1)[0], -1},
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

// TestLenIsTheTotalOfAStageBuiltOnIt: Len of a stream is the Total that
// the Observer is told for a stage built on it, whatever the stream's last
// stage (Info.Total counts the items a stage takes in).
func TestLenIsTheTotalOfAStageBuiltOnIt(t *testing.T) {
	keep := func(_ context.Context, x int) (int, error) { return x, nil }
	src := func() stage.Stream[int] { return source.Slice([]int{1, 2, 3}) }
	for _, s := range []stage.Stream[int]{
		src(),
		stage.Map(src(), keep),
		stage.Filter(src(), func(context.Context, int) (bool, error) { return true, nil }),
		stage.FlatMap(src(), func(_ context.Context, x int) ([]int, error) { return []int{x, x}, nil }),
	} {
		o := totalObserver{map[string]int{}}
		if _, err := sink.Slice(stage.Observe(context.Background(), o), stage.Map(s, keep, stage.Name("next"))); err != nil {
			t.Fatal(err)
		}
		if o.totals["next"] != s.Len() {
			t.Errorf("Info.Total of the stage built on it %d, Len %d", o.totals["next"], s.Len())
		}
	}
}
