package stage_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review60UntilPanics reports whether stage.Until(s, stop) panicked, and
// checks that a panic has the sluice: stage.Until prefix.
func review60UntilPanics(t *testing.T, label string, s stage.Stream[int]) (panicked bool) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			if msg, ok := r.(string); !ok || !strings.HasPrefix(msg, "sluice: stage.Until: ") {
				t.Errorf("%s: panic %v, want a string with the sluice: stage.Until: prefix", label, r)
			}
		}
	}()
	stage.Until(s, context.Background())
	return false
}

func review60Ints(n int) []int {
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	return items
}

func review60Batched(s stage.Stream[int]) stage.Stream[int] {
	return stage.FlatMap(stage.Batch(s, 3, 0), func(_ context.Context, b []int) ([]int, error) { return b, nil })
}

// 5bc8f86: Until's doc: "Until panics ... if in reads some branches of a
// Tee but not all"; and it does not panic over a stream that reads all of
// them ("Put Until before a Tee (or over a stream that reads all its
// branches)"). Shapes: Tee(…,1), Map and Batch chains above a branch,
// nested Tees (all of the inner Tee's branches but not the outer's other),
// marked and sized sources, Until below a whole Merge that holds another
// Until before the Tee.
func TestReview60UntilWholeTeeShapes(t *testing.T) {
	double := func(_ context.Context, x int) (int, error) { return 2 * x, nil }
	cases := []struct {
		name  string
		build func() stage.Stream[int]
		panic bool
	}{
		{"tee1-branch", func() stage.Stream[int] { return stage.Tee(source.Slice(review60Ints(5)), 1)[0] }, false},
		{"tee2-branch0", func() stage.Stream[int] { return stage.Tee(source.Slice(review60Ints(5)), 2)[0] }, true},
		{"tee2-branch1-map", func() stage.Stream[int] {
			return stage.Map(stage.Tee(source.Slice(review60Ints(5)), 2)[1], double)
		}, true},
		{"tee3-two-merged", func() stage.Stream[int] {
			b := stage.Tee(source.Slice(review60Ints(5)), 3)
			return stage.Merge(b[0], stage.Map(b[2], double))
		}, true},
		{"tee3-all-merged", func() stage.Stream[int] {
			b := stage.Tee(source.Slice(review60Ints(5)), 3)
			return stage.Merge(b[0], stage.Map(b[1], double), review60Batched(b[2]))
		}, false},
		{"batch-chain-above-branch", func() stage.Stream[int] {
			b := stage.Tee(source.Slice(review60Ints(5)), 2)
			return stage.Map(review60Batched(stage.Map(b[0], double)), double)
		}, true},
		{"nested-inner-whole-outer-part", func() stage.Stream[int] {
			b := stage.Tee(source.Slice(review60Ints(5)), 2)
			c := stage.Tee(b[0], 2)
			return stage.Merge(c[0], c[1])
		}, true},
		{"nested-all", func() stage.Stream[int] {
			b := stage.Tee(source.Slice(review60Ints(5)), 2)
			c := stage.Tee(stage.Map(b[0], double), 3)
			return stage.Merge(c[0], c[1], review60Batched(c[2]), b[1])
		}, false},
		{"nested-one-inner-branch", func() stage.Stream[int] {
			b := stage.Tee(source.Slice(review60Ints(5)), 2)
			c := stage.Tee(b[1], 2)
			return stage.Merge(c[0], b[0])
		}, true},
		{"nevwaits-source-branch", func() stage.Stream[int] {
			return stage.Tee(stage.NeverWaits(source.Func(func(context.Context) (int, error) { return 0, nil })), 2)[0]
		}, true},
		{"interruptible-all", func() stage.Stream[int] {
			b := stage.Tee(source.Chan(make(chan int)), 2)
			return stage.Merge(b[1], b[0])
		}, false},
		{"until-before-tee-all", func() stage.Stream[int] {
			b := stage.Tee(stage.Until(source.Slice(review60Ints(5)), context.Background()), 2)
			return stage.Merge(b[0], b[1])
		}, false},
		{"until-before-tee-one", func() stage.Stream[int] {
			b := stage.Tee(stage.Until(source.Slice(review60Ints(5)), context.Background()), 2)
			return b[0]
		}, true},
		{"no-tee", func() stage.Stream[int] {
			return stage.Merge(source.Slice(review60Ints(3)), stage.Map(source.Slice(review60Ints(3)), double))
		}, false},
	}
	for _, c := range cases {
		if got := review60UntilPanics(t, c.name, c.build()); got != c.panic {
			t.Errorf("%s: Until panicked = %v, want %v", c.name, got, c.panic)
		}
	}
}

// 5bc8f86: shapes Until accepts still run: over a Merge of every branch of
// nested Tees, the sink gets every copy (Tee: "n streams that each see
// every item"); with stop done before the run, no item is taken ("Once
// stop is done, no source upstream is asked for another item").
func TestReview60UntilWholeNestedTeesRun(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		build := func(stop context.Context, asked *int) stage.Stream[int] {
			i := 0
			src := source.Func(func(context.Context) (int, error) {
				*asked++
				if i == 50 {
					return 0, io.EOF
				}
				i++
				return i, nil
			})
			b := stage.Tee(src, 2)
			c := stage.Tee(stage.Map(b[0], review60Cheap, stage.Workers(3)), 3)
			return stage.Until(stage.Merge(c[0], c[1], review60Batched(c[2]), b[1]), stop)
		}
		var asked int
		n, err := sink.Count(context.Background(), build(context.Background(), &asked))
		if err != nil || n != 4*50 {
			t.Fatalf("live stop: %d items, %v; want %d, nil", n, err, 4*50)
		}
		stop, cancel := context.WithCancel(context.Background())
		cancel()
		asked = 0
		n, err = sink.Count(context.Background(), build(stop, &asked))
		if err != nil || n != 0 || asked != 0 {
			t.Fatalf("stop done before the run: %d items, %v, next asked %d times; want 0, nil, 0", n, err, asked)
		}
	})
}
