package stage_test

import (
	"context"
	"io"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r27Counter is a Source of 1..n that counts its opens.
func r27Counter(n int, opens *atomic.Int32) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		opens.Add(1)
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, io.EOF
			}
			i++
			return i, nil
		}, nil
	})
}

func r27Panics(f func()) (panicked bool) {
	defer func() { panicked = recover() != nil }()
	f()
	return false
}

// markSource (2be09a6) gives the marked stream s's node as its input. The
// marked stream stays usable on its own, in runs one after the other, under
// Tee, under a mark of a mark, and in a Merge with streams of other
// sources; it is rejected only with s itself (or another mark of s).
// (Passes: kept as a guard.)
func TestReview27MarkedSourceStillUsable(t *testing.T) {
	ctx := context.Background()
	var opens atomic.Int32
	s := r27Counter(3, &opens)
	marks := map[string]func(stage.Stream[int]) stage.Stream[int]{
		"NeverWaits":                stage.NeverWaits[int],
		"Interruptible":             stage.Interruptible[int],
		"NeverWaits(NeverWaits)":    func(s stage.Stream[int]) stage.Stream[int] { return stage.NeverWaits(stage.NeverWaits(s)) },
		"Interruptible(NeverWaits)": func(s stage.Stream[int]) stage.Stream[int] { return stage.Interruptible(stage.NeverWaits(s)) },
	}
	for name, mark := range marks {
		t.Run(name, func(t *testing.T) {
			opens.Store(0)
			m := mark(s)
			double := stage.Map(m, func(_ context.Context, v int) (int, error) { return 2 * v, nil }, stage.Workers(4))
			for run := range 2 { // two runs of one stream, one after the other
				got, err := sink.Slice(ctx, double)
				slices.Sort(got)
				if err != nil || !slices.Equal(got, []int{2, 4, 6}) {
					t.Fatalf("run %d: %v, %v; want [2 4 6]", run, got, err)
				}
			}
			if n := opens.Load(); n != 2 {
				t.Fatalf("open called %d times in 2 runs", n)
			}
			// Tee of the marked stream: both branches see every item.
			branches := stage.Tee(m, 2)
			got, err := sink.Slice(ctx, stage.Merge(branches[0], branches[1]))
			slices.Sort(got)
			if err != nil || !slices.Equal(got, []int{1, 1, 2, 2, 3, 3}) {
				t.Fatalf("Tee: %v, %v", got, err)
			}
			// With another source: fine.
			var other atomic.Int32
			got, err = sink.Slice(ctx, stage.Merge(m, r27Counter(2, &other)))
			slices.Sort(got)
			if err != nil || !slices.Equal(got, []int{1, 1, 2, 2, 3}) {
				t.Fatalf("Merge with another source: %v, %v", got, err)
			}
			// With s itself, with another mark of s, or with a stage over s: rejected.
			for what, f := range map[string]func(){
				"s":          func() { stage.Merge(s, mark(s)) },
				"reversed":   func() { stage.Merge(mark(s), s) },
				"other mark": func() { stage.Merge(mark(s), stage.NeverWaits(s)) },
				"stage over s": func() {
					stage.Merge(double, stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }))
				},
				"tee branch":   func() { stage.Merge(stage.Tee(s, 2)[0], mark(s)) },
				"same mark x2": func() { stage.Merge(m, m) },
			} {
				if !r27Panics(f) {
					t.Errorf("Merge sharing s (%s) built without a panic", what)
				}
			}
			// Tee branches of the marked stream share its node on purpose.
			if r27Panics(func() { stage.Merge(stage.Tee(m, 2)...) }) {
				t.Error("Merge of a marked stream's Tee branches panicked")
			}
		})
	}
}
