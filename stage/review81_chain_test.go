package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Chains around an Ordered stage whose calls may run in its consumer's
// goroutine: Ordered -> Ordered, Ordered -> unordered, Ordered ->
// Workers(1), Ordered -> Batch/Unbatch, Tee/Merge, and a forwarded error
// through a later stage.

func r81chainStage(kind string, in stage.Stream[int], r *r81run, p r81profile, opts ...stage.Option) stage.Stream[int] {
	switch kind {
	case "Map":
		return stage.Map(in, func(_ context.Context, v int) (int, error) { r.called(v); p.cost(r, v); return v, nil }, opts...)
	case "Filter":
		return stage.Filter(in, func(_ context.Context, v int) (bool, error) { r.called(v); p.cost(r, v); return true, nil }, opts...)
	case "FlatMap":
		return stage.FlatMap(in, func(_ context.Context, v int) ([]int, error) { r.called(v); p.cost(r, v); return []int{v}, nil }, opts...)
	}
	panic(kind)
}

func TestReview81Chains(t *testing.T) {
	ord := func(w int) []stage.Option { return []stage.Option{stage.Workers(w), stage.Ordered()} }
	type chain struct {
		name    string
		ordered bool // output in input order
		build   func(k1, k2 string, r1, r2 *r81run, p r81profile, w int, src stage.Stream[int]) stage.Stream[int]
	}
	chains := []chain{
		{"Ordered>Ordered", true, func(k1, k2 string, r1, r2 *r81run, p r81profile, w int, src stage.Stream[int]) stage.Stream[int] {
			return r81chainStage(k2, r81chainStage(k1, src, r1, p, ord(w)...), r2, p, ord(w+1)...)
		}},
		{"Ordered>Unordered", false, func(k1, k2 string, r1, r2 *r81run, p r81profile, w int, src stage.Stream[int]) stage.Stream[int] {
			return r81chainStage(k2, r81chainStage(k1, src, r1, p, ord(w)...), r2, r81profiles[0], stage.Workers(4))
		}},
		{"Ordered>Workers1", true, func(k1, k2 string, r1, r2 *r81run, p r81profile, w int, src stage.Stream[int]) stage.Stream[int] {
			return r81chainStage(k2, r81chainStage(k1, src, r1, p, ord(w)...), r2, r81profiles[0], stage.Workers(1))
		}},
		{"Workers1>Ordered", true, func(k1, k2 string, r1, r2 *r81run, p r81profile, w int, src stage.Stream[int]) stage.Stream[int] {
			return r81chainStage(k2, r81chainStage(k1, src, r1, r81profiles[0], stage.Workers(1)), r2, p, ord(w)...)
		}},
		{"Ordered>Batch>Unbatch", true, func(k1, k2 string, r1, r2 *r81run, p r81profile, w int, src stage.Stream[int]) stage.Stream[int] {
			b := stage.Unbatch(stage.Batch(r81chainStage(k1, src, r1, p, ord(w)...), 7, 0))
			return r81chainStage(k2, b, r2, r81profiles[0], ord(w)...)
		}},
		{"Ordered>Until>Ordered", true, func(k1, k2 string, r1, r2 *r81run, p r81profile, w int, src stage.Stream[int]) stage.Stream[int] {
			return r81chainStage(k2, stage.Until(r81chainStage(k1, src, r1, p, ord(w)...), context.Background()), r2, p, ord(w)...)
		}},
	}
	kinds := []string{"Map", "Filter", "FlatMap"}
	for _, c := range chains {
		for i1, k1 := range kinds {
			for i2, k2 := range kinds {
				for pi, p := range r81profiles {
					for _, n := range []int{0, 1, 2, 3, 150} {
						for _, w := range []int{2, 7} {
							sk := r81sinks[(i1+i2+pi+n+w)%len(r81sinks)]
							label := fmt.Sprintf("%s/%s>%s/%s/n=%d/w=%d/%s", c.name, k1, k2, p.name, n, w, sk.name)
							r1, r2 := newR81run(n, w), newR81run(n, w)
							s := c.build(k1, k2, r1, r2, p, w, r81sources[(pi+n)%3].make(n))
							var got []int
							var err error
							r81guard(t, label, func() { got, err = sk.run(t, context.Background(), s) })
							if err != nil {
								t.Fatalf("%s: %v", label, err)
							}
							want := r81ints(n)
							if sk.first {
								if n > 0 && c.ordered {
									want = want[:1]
								} else if n > 0 {
									if len(got) != 1 || got[0] < 0 || got[0] >= n {
										t.Fatalf("%s: First %v", label, got)
									}
									continue
								}
								if e := r81equal(got, want); e != nil {
									t.Fatalf("%s: %v", label, e)
								}
								continue
							}
							if !c.ordered {
								slices.Sort(got)
							}
							if e := r81equal(got, want); e != nil {
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
}

// Tee of an Ordered stage into two branches, merged: each branch sees
// every item, in the order of the Ordered stage ("Tee returns n streams
// that each see every item of in, in the order of in").
func TestReview81TeeMerge(t *testing.T) {
	for pi, p := range r81profiles {
		for _, n := range []int{0, 1, 5, 200} {
			for _, w := range []int{2, 6} {
				label := fmt.Sprintf("%s/n=%d/w=%d", p.name, n, w)
				r := newR81run(n, w)
				o := r81chainStage("Map", r81sources[(pi+n)%3].make(n), r, p, stage.Workers(w), stage.Ordered())
				b := stage.Tee(o, 2)
				tag := func(i int) stage.Stream[int] {
					return stage.Map(b[i], func(_ context.Context, v int) (int, error) { return v*2 + i, nil }, stage.Workers(1))
				}
				var got []int
				var err error
				r81guard(t, label, func() { got, err = sink.Slice(context.Background(), stage.Merge(tag(0), tag(1))) })
				if err != nil {
					t.Fatalf("%s: %v", label, err)
				}
				var br [2][]int
				for _, v := range got {
					br[v%2] = append(br[v%2], v/2)
				}
				for i := range br {
					if e := r81equal(br[i], r81ints(n)); e != nil {
						t.Fatalf("%s: branch %d: %v", label, i, e)
					}
				}
				r.exactlyOnce(t, label)
			}
		}
	}
}

// A forwarded error of the first Ordered stage passes through a second
// Ordered stage in its place, without a call; a FailFast failure in the
// second stage ends the run with its *Error.
func TestReview81ChainErrors(t *testing.T) {
	for _, w := range []int{2, 5} {
		for _, n := range []int{3, 200} {
			label := fmt.Sprintf("w=%d/n=%d", w, n)
			s1 := stage.Map(r81counter(n, nil), func(_ context.Context, v int) (int, error) {
				if v%4 == 1 {
					return 0, errR81
				}
				return v, nil
			}, stage.Workers(w), stage.Ordered(), stage.OnError(stage.Forward))
			var bad int
			s2 := stage.Map(s1, func(_ context.Context, v int) (int, error) {
				if v%4 == 1 {
					bad++ // a forwarded error's item must not be called
				}
				return v + 1000, nil
			}, stage.Workers(w+1), stage.Ordered())
			var got []string
			r81guard(t, label, func() {
				for v, err := range sink.All(context.Background(), s2) {
					if err != nil {
						var e *stage.Error
						if !errors.As(err, &e) || !errors.Is(err, errR81) || e.Stage != "map#1" {
							t.Errorf("%s: forwarded %v", label, err)
						}
						got = append(got, fmt.Sprint("e", e.Index))
						continue
					}
					got = append(got, fmt.Sprint(v))
				}
			})
			var want []string
			for i := range n {
				if i%4 == 1 {
					want = append(want, fmt.Sprint("e", i))
				} else {
					want = append(want, fmt.Sprint(i+1000))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) || bad != 0 {
				t.Fatalf("%s: got %v, want %v (calls for forwarded items: %d)", label, got, want, bad)
			}
			// FailFast in the second stage at item k.
			k := n / 2
			s3 := stage.Map(stage.Map(r81counter(n, nil), double, stage.Workers(w), stage.Ordered()), func(_ context.Context, v int) (int, error) {
				if v == 2*k {
					return 0, errR81
				}
				return v, nil
			}, stage.Workers(w), stage.Ordered(), stage.Name("second"))
			var vals []int
			var err error
			r81guard(t, label, func() { vals, err = sink.Slice(context.Background(), s3) })
			var e *stage.Error
			if !errors.As(err, &e) || e.Stage != "second" || e.Index != k || e.Input != 2*k || !errors.Is(err, errR81) {
				t.Fatalf("%s: err %v, want the *Error of stage second, item %d", label, err, k)
			}
			var wantVals []int
			for i := range k {
				wantVals = append(wantVals, 2*i)
			}
			if e := r81prefix(vals, wantVals); e != nil {
				t.Fatalf("%s: %v", label, e)
			}
		}
	}
}
