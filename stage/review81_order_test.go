package stage_test

import (
	"context"
	"fmt"
	"testing"
)

// Ordered stages (Map, Filter, FlatMap, Concurrent) of 2..16 workers over
// sources that never wait, consumed by one goroutine (every sink): outputs
// in input order, each exactly once, for every cost profile.
// Docs: Ordered "makes the stage emit its outputs in the order of its
// input"; Workers: "for an Ordered one over a source that never waits, a
// consumer of one goroutine (its outputs still leave in input order,
// through its window), may take workers' places".
func TestReview81OrderMatrix(t *testing.T) {
	ns := []int{0, 1, 2, 3, 5, 17, 64, 257}
	workers := []int{2, 3, 8, 16}
	k := 0
	for _, pipe := range r81pipes {
		for _, prof := range r81profiles {
			for _, n := range ns {
				for _, w := range workers {
					for si, sk := range r81sinks {
						// The largest inputs go through one sink and one
						// source each, in rotation, to bound the test's time.
						k++
						if n > 64 && (k+si)%len(r81sinks) != 0 {
							continue
						}
						srcx := r81sources[k%len(r81sources)]
						label := fmt.Sprintf("%s/%s/n=%d/w=%d/%s/%s", pipe.name, prof.name, n, w, sk.name, srcx.name)
						r := newR81run(n, w)
						s, want := pipe.build(r, prof, n, w, srcx.make(n))
						var got []int
						var err error
						r81guard(t, label, func() { got, err = sk.run(t, context.Background(), s) })
						if err != nil {
							t.Fatalf("%s: err %v", label, err)
						}
						if sk.first {
							if len(want) > 0 {
								want = want[:1]
							}
							if e := r81equal(got, want); e != nil {
								t.Fatalf("%s: %v", label, e)
							}
							continue
						}
						if e := r81equal(got, want); e != nil {
							t.Fatalf("%s: %v", label, e)
						}
						r.exactlyOnce(t, label)
					}
				}
			}
		}
	}
}

// One item of an Ordered FlatMap emits thousands of outputs, among items
// emitting 0..3: all outputs of one item leave before those of the next.
func TestReview81FlatMapBigItem(t *testing.T) {
	build := r81flatPipe(3000)
	for pi, prof := range r81profiles {
		for _, n := range []int{1, 2, 7, 100} {
			for _, w := range []int{2, 16} {
				for si, sk := range r81sinks {
					if sk.first || (pi+si+n)%3 != 0 {
						continue
					}
					label := fmt.Sprintf("%s/n=%d/w=%d/%s", prof.name, n, w, sk.name)
					r := newR81run(n, w)
					s, want := build(r, prof, n, w, r81counter(n, nil))
					var got []int
					var err error
					r81guard(t, label, func() { got, err = sk.run(t, context.Background(), s) })
					if err != nil {
						t.Fatalf("%s: err %v", label, err)
					}
					if e := r81equal(got, want); e != nil {
						t.Fatalf("%s: %v", label, e)
					}
					r.exactlyOnce(t, label)
				}
			}
		}
	}
}

// The same stream run several times, and by several sinks at once: each
// run is a new run with its own state ("Several sinks may run one Stream
// at the same time").
func TestReview81ConcurrentRuns(t *testing.T) {
	for _, pipe := range r81pipes {
		const n, w = 200, 4
		r := newR81run(n, w)
		// A run state per run is impossible with one stream, so count
		// calls over all runs: 4 runs, each item 4 times.
		s, want := pipe.build(r, r81profiles[3], n, w, r81sources[0].make(n))
		errs := make(chan error, 4)
		r81guard(t, pipe.name, func() {
			for i := range 4 {
				go func() {
					got, err := r81sinks[i%3].run(t, context.Background(), s)
					if err == nil {
						err = r81equal(got, want)
					}
					errs <- err
				}()
			}
			for range 4 {
				if err := <-errs; err != nil {
					t.Errorf("%s: %v", pipe.name, err)
				}
			}
		})
		for i := range r.calls {
			if c := r.calls[i].Load(); c != 4 {
				t.Fatalf("%s: item %d called %d times over 4 runs, want 4", pipe.name, i, c)
			}
		}
	}
}
