package stage_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// review82: a fused Ordered stage of more than eagerWorkers (64) places,
// whose places past the first 64 start lazily (applier.more -> fuseRun.spawn)
// while the consumer's handle may hold one of them. review81 stops at 16
// workers. Every output once, in input order; no hang; no goroutine left.
func TestReview82LazyPlaces(t *testing.T) {
	profiles := []r81profile{r81profiles[0], r81profiles[3], r81profiles[4], r81profiles[5]} // cheap, random, slowHead, alternate
	sinks := []r81sink{r81sinks[0], r81sinks[3], r81sinks[4]}                                // Slice, First, Run
	for _, pipe := range r81pipes[:3] {                                                      // Map, Filter, FlatMap
		for _, p := range profiles {
			for _, w := range []int{65, 100} {
				for _, n := range []int{1, 64, 66, 400} {
					for _, sk := range sinks {
						for _, src := range r81sources[1:] { // Indexed (Len known), NeverWaits (unknown)
							label := fmt.Sprintf("%s/%s/w=%d/n=%d/%s/%s", pipe.name, p.name, w, n, sk.name, src.name)
							r := newR81run(n, w)
							s, want := pipe.build(r, p, n, w, src.make(n))
							var got []int
							var err error
							r81guard(t, label, func() { got, err = sk.run(t, context.Background(), s) })
							if err != nil {
								t.Fatalf("%s: %v", label, err)
							}
							if sk.first {
								if e := r81prefix(got, want); e != nil || (len(want) > 0 && len(got) != 1) {
									t.Fatalf("%s: %v (got %v)", label, e, got)
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
}

// The read-ahead bound of an Ordered stage of more than 64 workers: the
// source produces at most 2×workers+1 items beyond what the sink's callback
// has seen (the callback is gated; the test only gives the pipeline a
// chance to run ahead before it checks).
func TestReview82LazyBound(t *testing.T) {
	for _, w := range []int{65, 70} {
		for _, warm := range []int{0, 300} {
			label := fmt.Sprintf("w=%d/warm=%d", w, warm)
			n := warm + 4*w + 20
			var pulled, seen atomic.Int64
			var over atomic.Int64
			limit := int64(2*w + 1)
			src := r81counterCheck(n, &pulled, func(p int64) {
				if d := p - seen.Load(); d > limit {
					over.Store(d)
				}
			})
			s := stage.Map(src, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(w), stage.Ordered())
			gate := make(chan struct{})
			var got []int
			var err error
			r81guard(t, label, func() {
				done := make(chan struct{})
				go func() {
					defer close(done)
					err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
						c := seen.Add(1)
						got = append(got, v)
						if c > int64(warm) && c <= int64(warm+3) {
							<-gate
						}
						return nil
					})
				}()
				for c := warm + 1; c <= warm+3; c++ {
					r81waitForFor(50*time.Millisecond, func() bool {
						return seen.Load() >= int64(c) && pulled.Load() >= min(int64(n), seen.Load()+int64(2*w))
					})
					gate <- struct{}{}
				}
				<-done
			})
			if err != nil {
				t.Fatalf("%s: %v", label, err)
			}
			if e := r81equal(got, r81ints(n)); e != nil {
				t.Fatalf("%s: %v", label, e)
			}
			if d := over.Load(); d != 0 {
				t.Fatalf("%s: the source produced an item %d ahead of what the sink's callback had seen (bound 2×%d+1)", label, d, w)
			}
		}
	}
}
