package stage_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// review82: chains review81 does not build. An unordered fused stage
// feeding a fused Ordered one (each place of the Ordered stage, the
// consumer's handle's included, pulls through a handle of the upstream
// fused stage, which may itself hold an upstream place); a KeyBy stage
// consuming a fused Ordered one (its workers take turns on the one
// handle, under the key lock).
func TestReview82UpstreamFused(t *testing.T) {
	kinds := []string{"Map", "Filter", "FlatMap"}
	for _, k2 := range kinds {
		for pi, p := range r81profiles {
			for _, n := range []int{0, 1, 2, 5, 300} {
				for _, w := range []int{2, 4, 7} {
					for _, wu := range []int{w, w + 3} {
						sk := r81sinks[(pi+n+w+wu)%len(r81sinks)]
						label := fmt.Sprintf("Map(w=%d)>%s(w=%d,Ordered)/%s/n=%d/%s", wu, k2, w, p.name, n, sk.name)
						r1, r2 := newR81run(n, wu), newR81run(n, w)
						up := r81chainStage("Map", r81sources[(pi+n)%3].make(n), r1, r81profiles[(pi+1)%len(r81profiles)], stage.Workers(wu))
						s := r81chainStage(k2, up, r2, p, stage.Workers(w), stage.Ordered())
						var got []int
						var err error
						r81guard(t, label, func() { got, err = sk.run(t, context.Background(), s) })
						if err != nil {
							t.Fatalf("%s: %v", label, err)
						}
						if sk.first {
							if len(got) > 1 || (n > 0 && len(got) != 1) {
								t.Fatalf("%s: First %v", label, got)
							}
							continue
						}
						// The upstream stage is unordered: the Ordered stage
						// keeps the order it received, which the test cannot
						// see from here; every value once.
						slices.Sort(got)
						if e := r81equal(got, r81ints(n)); e != nil {
							t.Fatalf("%s: %v", label, e)
						}
						r1.exactlyOnce(t, label+" (stage 1)")
						r2.exactlyOnce(t, label+" (stage 2)")
					}
				}
			}
		}
	}
}

func TestReview82KeyByConsumer(t *testing.T) {
	kinds := []string{"Map", "Filter", "FlatMap"}
	for _, k1 := range kinds {
		for pi, p := range r81profiles {
			for _, n := range []int{0, 1, 2, 5, 300} {
				for _, w := range []int{2, 5} {
					sk := r81sinks[(pi+n+w)%len(r81sinks)]
					label := fmt.Sprintf("%s(w=%d,Ordered)>KeyBy/%s/n=%d/%s", k1, w, p.name, n, sk.name)
					r1 := newR81run(n, w)
					ord := r81chainStage(k1, r81sources[(pi+n)%3].make(n), r1, p, stage.Workers(w), stage.Ordered())
					s := stage.Map(ord, func(_ context.Context, v int) (int, error) { return v, nil },
						stage.Workers(4), stage.KeyBy(func(v int) int { return v % 3 }), stage.Ordered())
					var got []int
					var err error
					r81guard(t, label, func() { got, err = sk.run(t, context.Background(), s) })
					if err != nil {
						t.Fatalf("%s: %v", label, err)
					}
					want := r81ints(n)
					if sk.first {
						if n > 0 {
							want = want[:1]
						}
					} else {
						r1.exactlyOnce(t, label)
					}
					if e := r81equal(got, want); e != nil {
						t.Fatalf("%s: %v", label, e)
					}
				}
			}
		}
	}
}

// Ordered (fused) > Workers(1) > a stage of 4 goroutines (Buffer(1)): the
// Workers(1) stage is the sequential path shared by 4 goroutines under a
// lock, and its place (with the Ordered stage's one handle as its input)
// moves between a goroutine of its own and those 4 goroutines.
func TestReview82OrderedW1Shared(t *testing.T) {
	kinds := []string{"Map", "Filter", "FlatMap"}
	for _, k1 := range kinds {
		for pi, p := range r81profiles {
			for _, n := range []int{0, 1, 2, 5, 300} {
				for _, w := range []int{2, 5} {
					sk := r81sinks[(pi+n+w)%len(r81sinks)]
					label := fmt.Sprintf("%s(w=%d,Ordered)>W1>W4B1/%s/n=%d/%s", k1, w, p.name, n, sk.name)
					r1 := newR81run(n, w)
					var order []int
					ord := r81chainStage(k1, r81sources[(pi+n)%3].make(n), r1, p, stage.Workers(w), stage.Ordered())
					w1 := stage.Map(ord, func(_ context.Context, v int) (int, error) { order = append(order, v); return v, nil }, stage.Workers(1))
					s := stage.Map(w1, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(4), stage.Buffer(1))
					var got []int
					var err error
					r81guard(t, label, func() { got, err = sk.run(t, context.Background(), s) })
					if err != nil {
						t.Fatalf("%s: %v", label, err)
					}
					if sk.first {
						continue
					}
					// The Workers(1) stage saw the Ordered stage's outputs in order.
					if e := r81equal(order, r81ints(n)); e != nil {
						t.Fatalf("%s: Workers(1) stage saw: %v", label, e)
					}
					slices.Sort(got)
					if e := r81equal(got, r81ints(n)); e != nil {
						t.Fatalf("%s: %v", label, e)
					}
					r1.exactlyOnce(t, label)
				}
			}
		}
	}
}
