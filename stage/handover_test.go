package stage_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The goroutines of a stage's consumer may call its function themselves (see
// Workers) and hand their place to a goroutine when the function turns out
// slow. These tests make the function slow, from the start or from some item
// on, and check that nothing is lost or reordered and that the bounds hold
// across the hand-over.

func sleepFrom(from int, g *gauge) func(context.Context, int) (int, error) {
	return func(_ context.Context, x int) (int, error) {
		g.enter()
		defer g.leave()
		if x >= from {
			time.Sleep(300 * time.Microsecond)
		}
		return x, nil
	}
}

func TestHandOverKeepsEverything(t *testing.T) {
	for _, from := range []int{0, 40} { // slow from the first call, or later
		for _, w := range []int{1, 2, 4} {
			var g1, g2 gauge
			s := stage.Map(source.Slice(ints(120)), sleepFrom(from, &g1), stage.Workers(w))
			s = stage.Map(s, sleepFrom(from, &g2), stage.Workers(w))
			got, err := sink.Slice(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if w == 1 && !slices.Equal(got, ints(120)) {
				t.Fatalf("from=%d workers=1: got %v, want input order", from, got)
			}
			slices.Sort(got)
			if !slices.Equal(got, ints(120)) {
				t.Fatalf("from=%d workers=%d: got %v, want every item once", from, w, got)
			}
			if g1.max > w || g2.max > w {
				t.Fatalf("from=%d workers=%d: %d and %d calls at once, want at most %d", from, w, g1.max, g2.max, w)
			}
		}
	}
}

func TestHandOverReachesWorkers(t *testing.T) {
	// A slow function into a sink: the stage keeps (or takes back) its
	// workers as goroutines of its own; from item 100 on, calls hold until
	// four have started, which hangs unless all four workers still run.
	checkConcurrency(t, 200, 4, 100, func() { time.Sleep(300 * time.Microsecond) }, stage.Workers(4))
}
