package stage_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// The Ordered read-ahead bound. Docs (Ordered): "the stage takes at most
// 2×workers+buffer items from upstream that its consumer has not yet
// taken, and then stops pulling"; (Run): the batch "counts in the stage's
// read-ahead (... twice the Workers plus Buffer for an Ordered stage)
// until f has seen all of it ... the pipeline may then hold one item more
// than the read-ahead that f has not seen yet."
//
// The source checks at every item it produces that it is at most
// 2×workers+1 (+ slack for stages after) ahead of the items the sink's
// callback has seen; the callback is gated by the test, which gives the
// pipeline a chance (not a deadline: no verdict depends on it) to run
// ahead as far as it will before each check.

// r81waitFor waits until cond holds or a short while passed: an
// opportunity for the pipeline to run ahead, never a verdict.
func r81waitFor(cond func() bool) { r81waitForFor(150*time.Millisecond, cond) }

func r81waitForFor(d time.Duration, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(50 * time.Microsecond)
	}
}

type r81kind struct {
	name  string
	build func(src stage.Stream[int], f func(int), w int) stage.Stream[int]
}

// One output per input, so that "items its consumer has not yet taken" is
// unambiguous.
var r81kinds = []r81kind{
	{"Map", func(src stage.Stream[int], f func(int), w int) stage.Stream[int] {
		return stage.Map(src, func(_ context.Context, v int) (int, error) { f(v); return v, nil }, stage.Workers(w), stage.Ordered())
	}},
	{"Filter", func(src stage.Stream[int], f func(int), w int) stage.Stream[int] {
		return stage.Filter(src, func(_ context.Context, v int) (bool, error) { f(v); return true, nil }, stage.Workers(w), stage.Ordered())
	}},
	{"FlatMap", func(src stage.Stream[int], f func(int), w int) stage.Stream[int] {
		return stage.FlatMap(src, func(_ context.Context, v int) ([]int, error) { f(v); return []int{v}, nil }, stage.Workers(w), stage.Ordered())
	}},
	{"Concurrent", func(src stage.Stream[int], f func(int), w int) stage.Stream[int] {
		tasks := stage.Map(src, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
			return func(context.Context) (int, error) { f(v); return v, nil }, nil
		}, stage.Workers(1))
		return stage.Concurrent(tasks, stage.Workers(w), stage.Ordered())
	}},
}

// Gated sink: the callback of item c waits for the test; before releasing
// it the test lets the pipeline run ahead and checks the bound.
func TestReview81WindowGatedSink(t *testing.T) {
	for _, kind := range r81kinds {
		for _, w := range []int{2, 3, 8} {
			for _, warm := range []int{0, 300} { // cheap calls first, so that the consumer takes places
				label := fmt.Sprintf("%s/w=%d/warm=%d", kind.name, w, warm)
				n := warm + 6*w + 20
				var pulled, seen atomic.Int64
				var over atomic.Int64 // the largest pulled-seen at a pull, beyond the bound
				limit := int64(2*w + 1)
				src := r81counterCheck(n, &pulled, func(p int64) {
					if d := p - seen.Load(); d > limit {
						over.Store(d)
					}
				})
				// Concurrent's task-maker (Workers(1)) sits between: one
				// item more may be held there.
				if kind.name == "Concurrent" {
					limit += 2
				}
				s := kind.build(src, func(int) {}, w)
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
							if c > int64(warm) && c <= int64(warm+3*w) {
								<-gate
							}
							return nil
						})
					}()
					for c := warm + 1; c <= warm+3*w; c++ {
						r81waitForFor(25*time.Millisecond, func() bool { return seen.Load() >= int64(c) && pulled.Load() >= min(int64(n), seen.Load()+int64(2*w)) })
						if testing.Verbose() {
							t.Logf("%s: step %d: pulled %d seen %d", label, c, pulled.Load(), seen.Load())
						}
						if p, sn := pulled.Load(), seen.Load(); p-sn > limit {
							t.Errorf("%s: callback of item %d waiting: %d items pulled, %d seen: %d ahead, more than 2×%d+1", label, c-1, p, sn, p-sn, w)
						}
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
					t.Fatalf("%s: the source produced an item %d ahead of what the sink's callback had seen (bound 2×%d+1, +2 for Concurrent's task stage)", label, d, w)
				}
			}
		}
	}
}

// A head item that holds its call (after cheap warm-up calls): the other
// workers, and the consumer, fill the window, then the stage stops
// pulling.
func TestReview81WindowSlowHead(t *testing.T) {
	for _, kind := range r81kinds {
		for _, w := range []int{2, 4, 8} {
			for _, warm := range []int{0, 1, 300} {
				label := fmt.Sprintf("%s/w=%d/warm=%d", kind.name, w, warm)
				n := warm + 6*w + 20
				var pulled, seen atomic.Int64
				var over atomic.Int64
				limit := int64(2*w + 1)
				if kind.name == "Concurrent" {
					limit += 2
				}
				src := r81counterCheck(n, &pulled, func(p int64) {
					if d := p - seen.Load(); d > limit {
						over.Store(d)
					}
				})
				release := make(chan struct{})
				var headIn atomic.Bool
				s := kind.build(src, func(v int) {
					if v == warm {
						headIn.Store(true)
						<-release
					}
				}, w)
				var got []int
				var err error
				r81guard(t, label, func() {
					done := make(chan struct{})
					go func() {
						defer close(done)
						err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
							seen.Add(1)
							got = append(got, v)
							return nil
						})
					}()
					r81waitFor(func() bool { return headIn.Load() && pulled.Load() >= int64(warm+2*w) })
					r81waitFor(func() bool { return false }) // let it run further ahead if it would
					if p, sn := pulled.Load(), seen.Load(); p-sn > limit {
						t.Errorf("%s: head item held: %d pulled, %d seen: %d ahead, more than 2×%d+1", label, p, sn, p-sn, w)
					}
					if sn := seen.Load(); sn > int64(warm) {
						t.Errorf("%s: %d items delivered while item %d is held: out of order", label, sn, warm)
					}
					close(release)
					<-done
				})
				if err != nil {
					t.Fatalf("%s: %v", label, err)
				}
				if e := r81equal(got, r81ints(n)); e != nil {
					t.Fatalf("%s: %v", label, e)
				}
				if d := over.Load(); d != 0 {
					t.Fatalf("%s: the source produced an item %d ahead of the sink (bound %d)", label, d, limit)
				}
			}
		}
	}
}

// Ordered -> Workers(1) Map -> sink: the Workers(1) stage is one more item
// (its read-ahead of 1) plus its call.
func TestReview81WindowChainWorkers1(t *testing.T) {
	for _, w := range []int{2, 5} {
		label := fmt.Sprintf("w=%d", w)
		n := 300 + 6*w
		var pulled, seen atomic.Int64
		var over atomic.Int64
		limit := int64(2*w + 1 + 2)
		src := r81counterCheck(n, &pulled, func(p int64) {
			if d := p - seen.Load(); d > limit {
				over.Store(d)
			}
		})
		s := stage.Map(stage.Map(src, double, stage.Workers(w), stage.Ordered()), func(_ context.Context, v int) (int, error) { return v / 2, nil }, stage.Workers(1))
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
					if c > 250 && c <= 250+int64(2*w) {
						<-gate
					}
					return nil
				})
			}()
			for c := 251; c <= 250+2*w; c++ {
				r81waitFor(func() bool { return seen.Load() >= int64(c) && pulled.Load() >= seen.Load()+int64(2*w) })
				if p, sn := pulled.Load(), seen.Load(); p-sn > limit {
					t.Errorf("%s: %d pulled, %d seen", label, p, sn)
				}
				gate <- struct{}{}
			}
			<-done
		})
		if err != nil {
			t.Fatal(err)
		}
		if e := r81equal(got, r81ints(n)); e != nil {
			t.Fatalf("%s: %v", label, e)
		}
		if d := over.Load(); d != 0 {
			t.Fatalf("%s: the source produced an item %d ahead of the sink (bound %d)", label, d, limit)
		}
	}
}

// r81counterCheck is a NeverWaits source of 0..n-1 that counts the items
// it produced in pulled and calls check with the count after each.
func r81counterCheck(n int, pulled *atomic.Int64, check func(p int64)) stage.Stream[int] {
	return stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i >= n {
				return 0, errEOF
			}
			i++
			check(pulled.Add(1))
			return i - 1, nil
		}, nil
	}))
}

// Apply: "an Ordered Apply holds at most 4×(2×workers + buffer) outputs its
// consumer has not taken, plus one per item in its window". Items emit 40
// outputs each; the sink's callback is gated at times.
func TestReview81WindowApplyOutputs(t *testing.T) {
	for _, w := range []int{2, 4} {
		for _, warm := range []int{0, 200} {
			label := fmt.Sprintf("w=%d/warm=%d", w, warm)
			n := warm + 40
			const per = 40
			var emitted, seen, over atomic.Int64
			limit := int64(4*2*w + 2*w + 1)
			s := stage.Apply(r81counter(n, nil), func(_ context.Context, v int, emit func(int) bool) error {
				k := per
				if v < warm {
					k = 1
				}
				for j := range k {
					if !emit(v*1000 + j) {
						return nil
					}
					if d := emitted.Add(1) - seen.Load(); d > limit {
						over.Store(d)
					}
				}
				return nil
			}, stage.Workers(w), stage.Ordered())
			gate := make(chan struct{})
			var got []int
			var err error
			steps := 4 * per
			r81guard(t, label, func() {
				done := make(chan struct{})
				go func() {
					defer close(done)
					err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
						c := seen.Add(1)
						got = append(got, v)
						if c > int64(warm) && c <= int64(warm+steps) && (c-int64(warm))%per == 1 {
							<-gate
						}
						return nil
					})
				}()
				for c := 0; c < steps/per; c++ {
					r81waitForFor(40*time.Millisecond, func() bool { return false })
					if e, sn := emitted.Load(), seen.Load(); e-sn > limit {
						t.Errorf("%s: %d emitted, %d seen: %d ahead, more than %d", label, e, sn, e-sn, limit)
					}
					gate <- struct{}{}
				}
				<-done
			})
			if err != nil {
				t.Fatal(err)
			}
			var want []int
			for i := range n {
				k := per
				if i < warm {
					k = 1
				}
				for j := range k {
					want = append(want, i*1000+j)
				}
			}
			if e := r81equal(got, want); e != nil {
				t.Fatalf("%s: %v", label, e)
			}
			if d := over.Load(); d != 0 {
				t.Fatalf("%s: an output emitted %d ahead of the sink (bound %d)", label, d, limit)
			}
		}
	}
}
