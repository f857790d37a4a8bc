package stage_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// Review 58: the other consumers of an Indexed source's puller. Only the
// worker loop of an Ordered stage closes a gap (applier.lost); the others
// drop it: KeyBy's workers (workKeyed), Workers(-1)'s dispatcher, a fused
// stage's handles (fuseHandle.ownNext), Batch, Tee, Merge, the sink. Each
// must still deliver every item made, because it pulls one at a time
// (KeyBy under keyMu, the dispatcher, Batch, Tee, Merge and the sink from
// one goroutine) or does not order by the source's index (a fused stage is
// unordered, and the stage after it numbers its items as it takes them).
//
// Promise attacked, Indexed: "A panic in at ends the run with a
// *[SourceError] once the items made have gone through: those of later
// positions whose at was called too (under [Ordered] in order, without the
// lost one)."
//
// at(5) panics at once (a trigger of -1), or once the trigger item was
// made; in the keyed and dispatched cases item 0's call waits until at has
// panicked, so that items made are in flight, queued or waiting for their
// key when the source fails.
func TestReview58IndexedGapOtherConsumers(t *testing.T) {
	type outcome struct {
		got      []int
		err      error
		ordered  bool
		multiple int // how many times each item made is delivered
	}
	cases := []struct {
		name string
		run  func(t *testing.T, g *gapSource) outcome
		gap  []int
		trig int
	}{
		{name: "KeyBy/Ordered/w4", gap: []int{5}, trig: -1, run: func(t *testing.T, g *gapSource) outcome {
			s := stage.Map(g.stream(), func(_ context.Context, v int) (int, error) {
				if v == 0 {
					<-g.panicking
				}
				return v, nil
			}, stage.Workers(4), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 2 }))
			got, err := review58Collect(t, s)
			return outcome{got, err, true, 1}
		}},
		{name: "KeyBy/Ordered/w100", gap: []int{70}, trig: -1, run: func(t *testing.T, g *gapSource) outcome {
			s := stage.Map(g.stream(), func(_ context.Context, v int) (int, error) {
				if v == 0 {
					<-g.panicking
				}
				return v, nil
			}, stage.Workers(100), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 3 }))
			got, err := review58Collect(t, s)
			return outcome{got, err, true, 1}
		}},
		{name: "Unlimited/Ordered", gap: []int{5}, trig: -1, run: func(t *testing.T, g *gapSource) outcome {
			s := stage.Map(g.stream(), func(_ context.Context, v int) (int, error) {
				if v == 0 {
					<-g.panicking
				}
				return v, nil
			}, stage.Workers(-1), stage.Ordered())
			got, err := review58Collect(t, s)
			return outcome{got, err, true, 1}
		}},
		{name: "Unlimited/Ordered/KeyBy", gap: []int{5}, trig: -1, run: func(t *testing.T, g *gapSource) outcome {
			s := stage.Map(g.stream(), func(_ context.Context, v int) (int, error) {
				if v == 0 {
					<-g.panicking
				}
				return v, nil
			}, stage.Workers(-1), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 2 }))
			got, err := review58Collect(t, s)
			return outcome{got, err, true, 1}
		}},
		{name: "Batch", gap: []int{5}, trig: -1, run: func(t *testing.T, g *gapSource) outcome {
			s := stage.Unbatch(stage.Batch(g.stream(), 3, 0))
			got, err := review58Collect(t, s)
			return outcome{got, err, true, 1}
		}},
		{name: "Tee/Merge/Ordered", gap: []int{5}, trig: -1, run: func(t *testing.T, g *gapSource) outcome {
			b := stage.Tee(g.stream(), 2)
			s := stage.Merge(b[0], stage.Map(b[1], func(_ context.Context, v int) (int, error) { return v, nil },
				stage.Workers(2), stage.Ordered()))
			got, err := review58Collect(t, s)
			return outcome{got, err, false, 2}
		}},
		{name: "Merge", gap: []int{5}, trig: -1, run: func(t *testing.T, g *gapSource) outcome {
			s := stage.Merge(g.stream(), stage.Indexed(3, func(i int) int { return 1000 + i }))
			got, err := review58Collect(t, s)
			got = slices.DeleteFunc(got, func(v int) bool { return v >= 1000 })
			return outcome{got, err, false, 1}
		}},
		{name: "Sink", gap: []int{5}, trig: -1, run: func(t *testing.T, g *gapSource) outcome {
			got, err := review58Collect(t, g.stream())
			return outcome{got, err, true, 1}
		}},
		// Fused: the unordered Map runs in the Ordered Map's workers when its
		// calls are cheap; several of its places hold positions at once.
		{name: "Fused/w4/Ordered/w2", gap: []int{1}, trig: 2, run: func(t *testing.T, g *gapSource) outcome {
			first := stage.Map(g.stream(), func(_ context.Context, v int) (int, error) {
				g.seen(v)
				return v, nil
			}, stage.Workers(4))
			s := stage.Map(first, func(_ context.Context, v int) (int, error) { return v, nil },
				stage.Workers(2), stage.Ordered())
			got, err := review58Collect(t, s)
			return outcome{got, err, false, 1}
		}},
		{name: "Fused/w8/Ordered/w8", gap: []int{1, 3, 5}, trig: 7, run: func(t *testing.T, g *gapSource) outcome {
			first := stage.Map(g.stream(), func(_ context.Context, v int) (int, error) {
				g.seen(v)
				return v, nil
			}, stage.Workers(8))
			s := stage.Map(first, func(_ context.Context, v int) (int, error) { return v, nil },
				stage.Workers(8), stage.Ordered())
			got, err := review58Collect(t, s)
			return outcome{got, err, false, 1}
		}},
		{name: "Fused/FlatMap/w4", gap: []int{1}, trig: 2, run: func(t *testing.T, g *gapSource) outcome {
			s := stage.FlatMap(g.stream(), func(_ context.Context, v int) ([]int, error) {
				g.seen(v)
				return []int{v}, nil
			}, stage.Workers(4))
			got, err := review58Collect(t, s)
			return outcome{got, err, false, 1}
		}},
	}
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				g := newGapSource(200, c.trig, 0, c.gap...)
				var o outcome
				runcheck.Run(t, c.name, func() { o = c.run(t, g) })
				var se *stage.SourceError
				if !errors.As(o.err, &se) {
					t.Errorf("err = %v (%T), want a *stage.SourceError", o.err, o.err)
				}
				if g.panicked.Load() == 0 {
					t.Errorf("no at panicked: the scenario did not happen")
				}
				made := g.madeSorted()
				var want []int
				for _, v := range made {
					for range o.multiple {
						want = append(want, v)
					}
				}
				got := o.got
				if !o.ordered {
					got = slices.Clone(got)
					slices.Sort(got)
				}
				if !slices.Equal(got, want) {
					t.Errorf("made %v\ndelivered %v: every item made must be delivered (ordered: %v)", made, o.got, o.ordered)
				}
			})
		}
	})
}

// review58Collect runs s and returns its items in the order delivered.
func review58Collect(t *testing.T, s stage.Stream[int]) ([]int, error) {
	t.Helper()
	var got []int
	err := stage.Run(context.Background(), s, func(_ context.Context, v int, ferr error) error {
		if ferr != nil {
			return ferr
		}
		got = append(got, v)
		return nil
	})
	return got, err
}

// TestReview58IndexedGapStats: an Ordered stage's Stats count the items
// made, not the gaps: Received == Finished == the items whose at returned,
// Failed == 0, InFlight == 0, Running == 0 once the sink returned (a gap is
// no item: it is never "taken for a call").
//
// Promise attacked, Stats.Counts: "Received int64 // items taken for a
// call", "InFlight int64 // Received - Finished", "Running int // runs in
// which the stage has not closed yet".
func TestReview58IndexedGapStats(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range []string{"Map", "Apply"} {
			t.Run(kind, func(t *testing.T) {
				var st stage.Stats
				ctx := stage.Observe(context.Background(), &st)
				g := newGapSource(40, 7, 0, 1, 3, 5)
				opts := []stage.Option{stage.Workers(8), stage.Ordered(), stage.Name("r58")}
				var s stage.Stream[int]
				if kind == "Map" {
					s = stage.Map(g.stream(), func(_ context.Context, v int) (int, error) {
						g.seen(v)
						return v, nil
					}, opts...)
				} else {
					s = stage.Apply(g.stream(), func(_ context.Context, v int, emit func(int) bool) error {
						g.seen(v)
						emit(v)
						emit(v)
						return nil
					}, opts...)
				}
				var err error
				runcheck.Run(t, kind, func() {
					err = stage.Run(ctx, s, func(context.Context, int, error) error { return nil })
				})
				var se *stage.SourceError
				if !errors.As(err, &se) {
					t.Errorf("err = %v, want a *stage.SourceError", err)
				}
				c, ok := st.Get("r58")
				if !ok {
					t.Fatalf("no counts for the stage")
				}
				made := int64(len(g.madeSorted()))
				if c.Received != made || c.Finished != made || c.Failed != 0 || c.InFlight != 0 || c.Running != 0 {
					t.Errorf("counts %+v; %d items made", c, made)
				}
			})
		}
	})
}
