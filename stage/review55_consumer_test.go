package stage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r55GoID returns the calling goroutine's id.
func r55GoID() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	b = b[:bytes.IndexByte(b, ' ')]
	id, _ := strconv.ParseInt(string(b), 10, 64)
	return id
}

// TestReview55_SingleItemRunsInConsumer attacks (Workers) "Such a stage (or
// one of one worker) whose input is known to hold a single item (its
// Stream.Len is 1) calls the function in its consumer's goroutine from the
// start, whatever the call costs": the sink's callback runs in the caller's
// goroutine (stage.Run), so the function must run there too.
func TestReview55_SingleItemRunsInConsumer(t *testing.T) {
	ctx := context.Background()
	type cell struct {
		workers int
		ordered bool
	}
	// Ordered too, with several workers, over a source that never waits
	// (Workers: "and for an Ordered one over a source that never waits, a
	// consumer of one goroutine").
	cells := []cell{{1, false}, {1, true}, {2, false}, {3, false}, {4, false}, {8, false}, {2, true}, {4, true}, {8, true}}
	for _, c := range cells {
		opts := r55Opts(c.workers, c.ordered, 0)
		var fnG atomic.Int64
		slow := func() { time.Sleep(time.Millisecond) } // "whatever the call costs"
		streams := map[string]stage.Stream[int]{
			"map": stage.Map(source.Slice([]int{7}), func(_ context.Context, x int) (int, error) {
				fnG.Store(r55GoID())
				slow()
				return x, nil
			}, opts...),
			"map-indexed": stage.Map(stage.Indexed(1, func(int) int { return 7 }), func(_ context.Context, x int) (int, error) {
				fnG.Store(r55GoID())
				return x, nil
			}, opts...),
			"filter": stage.Filter(source.Slice([]int{7}), func(_ context.Context, x int) (bool, error) {
				fnG.Store(r55GoID())
				slow()
				return true, nil
			}, opts...),
			"flatmap": stage.FlatMap(source.Slice([]int{7}), func(_ context.Context, x int) ([]int, error) {
				fnG.Store(r55GoID())
				return []int{x}, nil
			}, opts...),
			"concurrent": stage.Concurrent(source.Slice([]func(context.Context) (int, error){func(context.Context) (int, error) {
				fnG.Store(r55GoID())
				slow()
				return 7, nil
			}}), opts...),
		}
		for name, s := range streams {
			label := fmt.Sprintf("%s/w=%d/ordered=%v", name, c.workers, c.ordered)
			for run := range 3 {
				fnG.Store(0)
				var cbG int64
				var got []int
				err := stage.Run(ctx, s, func(_ context.Context, v int, err error) error {
					cbG = r55GoID()
					got = append(got, v)
					return err
				})
				if err != nil || len(got) != 1 || got[0] != 7 {
					t.Fatalf("%s run %d: %v %v", label, run, got, err)
				}
				if fnG.Load() != cbG {
					t.Errorf("%s run %d: the function ran on goroutine %d, the consumer is goroutine %d", label, run, fnG.Load(), cbG)
				}
			}
		}
	}
}

// TestReview55_GoexitOwnGoroutines attacks "A t.Fatal (runtime.Goexit) in a
// function that ran on a goroutine of the run fails it with stage.ErrGoexit
// ...; observers still see that call end, and every source is still stopped"
// for stages whose calls are documented to stay on goroutines of their own
// (Buffer, Ordered with several workers over a source that may wait,
// Workers(-1), KeyBy), over tiny runs, with the Goexit at each item. (An
// Ordered stage over a source that never waits may run calls in its
// consumer's goroutine: TestReview55_GoexitMayEndConsumer.)
func TestReview55_GoexitOwnGoroutines(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		type cell struct {
			name string
			opts []stage.Option
		}
		cells := []cell{
			{"buffer1-w1", []stage.Option{stage.Workers(1), stage.Buffer(1)}},
			{"buffer1-w3", []stage.Option{stage.Workers(3), stage.Buffer(1)}},
			{"ordered-w2", []stage.Option{stage.Workers(2), stage.Ordered()}},
			{"ordered-w8", []stage.Option{stage.Workers(8), stage.Ordered()}},
			{"unlimited", []stage.Option{stage.Workers(-1)}},
			{"unlimited-ordered", []stage.Option{stage.Workers(-1), stage.Ordered()}},
			{"keyby-w1", []stage.Option{stage.Workers(1), stage.KeyBy(func(x int) int { return x % 2 })}},
			{"keyby-w4", []stage.Option{stage.Workers(4), stage.KeyBy(func(x int) int { return x % 2 })}},
		}
		for _, c := range cells {
			for _, srcName := range []string{"slice", "neverwaits", "waiting", "interruptible"} {
				if (c.name == "ordered-w2" || c.name == "ordered-w8") && (srcName == "slice" || srcName == "neverwaits") {
					continue // fused: see TestReview55_GoexitMayEndConsumer
				}
				var src r55Src
				for _, s := range r55Sources {
					if s.name == srcName {
						src = s
					}
				}
				for n := 1; n <= 5; n++ {
					for k := range n {
						label := fmt.Sprintf("%s/%s/n=%d/goexit-at=%d", c.name, srcName, n, k)
						var nexts, stops atomic.Int64
						w := &r55CountingObserver{}
						s := stage.Map(src.make(n, &nexts, &stops), func(_ context.Context, x int) (int, error) {
							if x == k {
								runtime.Goexit()
							}
							return x, nil
						}, c.opts...)
						var err error
						returned := false
						runcheck.NoHang(t, label, func() {
							done := make(chan struct{})
							go func() {
								defer close(done)
								_, _, err = r55Collect(stage.Observe(context.Background(), w), s)
								returned = true
							}()
							<-done
						})
						if !returned {
							t.Fatalf("%s: the sink's goroutine was ended, but these calls run on the stage's own goroutines", label)
						}
						if !errors.Is(err, stage.ErrGoexit) {
							t.Fatalf("%s: err = %v, want ErrGoexit", label, err)
						}
						if srcName != "slice" && stops.Load() != 1 {
							t.Fatalf("%s: stop called %d times", label, stops.Load())
						}
						if r, f := w.received.Load(), w.finished.Load(); r != f || r == 0 {
							t.Fatalf("%s: observer saw %d received, %d finished", label, r, f)
						}
						if w.closed.Load() != 1 {
							t.Fatalf("%s: Closed %d times", label, w.closed.Load())
						}
						if w.goexitCut.Load() != 1 {
							t.Fatalf("%s: %d calls reported cut short by Goexit/cancel, want the Goexit one at least and only it as ErrGoexit", label, w.goexitCut.Load())
						}
					}
				}
			}
		}
	})
}

// r55CountingObserver counts what its one stage's watcher is told.
type r55CountingObserver struct {
	received, finished, failed, closed, stages atomic.Int64
	goexitCut                                  atomic.Int64 // Finished with a cut-short error whose message names ErrGoexit
	badErr                                     atomic.Value
}

func (o *r55CountingObserver) Stage(stage.Info) stage.Watcher { o.stages.Add(1); return o }
func (o *r55CountingObserver) Received()                      { o.received.Add(1) }
func (o *r55CountingObserver) Finished(_ time.Duration, err error) {
	o.finished.Add(1)
	if err != nil {
		var se *stage.Error
		if errors.As(err, &se) {
			o.failed.Add(1)
			return
		}
		if !errors.Is(err, context.Canceled) {
			o.badErr.Store(err)
		}
		if bytes.Contains([]byte(err.Error()), []byte(stage.ErrGoexit.Error())) {
			o.goexitCut.Add(1)
		}
	}
}
func (o *r55CountingObserver) Closed() { o.closed.Add(1) }

// TestReview55_GoexitMayEndConsumer attacks the same sentence where the call
// may run in the sink's goroutine (cheap unordered stages over sources that
// never wait, and ordered ones over sources that never wait): either the
// sink returns ErrGoexit, or (ErrGoexit) "A function
// that calls Goexit on the sink's own goroutine ends that goroutine: the
// sink does not return ... and the run's goroutines exit" — and in both cases
// "every source is still stopped", once.
func TestReview55_GoexitMayEndConsumer(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, srcName := range []string{"slice", "neverwaits", "interruptible", "waiting"} {
			var src r55Src
			for _, s := range r55Sources {
				if s.name == srcName {
					src = s
				}
			}
			for _, n := range []int{1, 2, 3, 5, 300} {
				for _, w := range []int{1, 2, 4, -4} { // -4: 4 workers, Ordered
					for _, k := range []int{0, 1, n / 2, n - 1} {
						if k >= n {
							continue
						}
						label := fmt.Sprintf("%s/n=%d/w=%d/goexit-at=%d", srcName, n, w, k)
						var opts []stage.Option
						if w < 0 {
							opts = []stage.Option{stage.Workers(-w), stage.Ordered()}
						} else {
							opts = []stage.Option{stage.Workers(w)}
						}
						var nexts, stops atomic.Int64
						s := stage.Map(src.make(n, &nexts, &stops), func(_ context.Context, x int) (int, error) {
							if x == k {
								runtime.Goexit()
							}
							return x, nil
						}, opts...)
						var err error
						returned := false
						runcheck.NoHang(t, label, func() {
							done := make(chan struct{})
							go func() {
								defer close(done)
								_, _, err = r55Collect(context.Background(), s)
								returned = true
							}()
							<-done
						})
						if returned && !errors.Is(err, stage.ErrGoexit) {
							t.Fatalf("%s: returned %v, want ErrGoexit", label, err)
						}
						if srcName != "slice" {
							runcheck.NoHang(t, label+" stop", func() {
								for stops.Load() == 0 {
									runtime.Gosched()
									time.Sleep(time.Millisecond)
								}
							})
							if stops.Load() != 1 {
								t.Fatalf("%s: stop called %d times", label, stops.Load())
							}
						}
					}
				}
			}
		}
	})
}

// TestReview55_BoundWhileSwitching attacks "Workers(n) runs at most n calls at
// once" while calls switch between cheap and slow within one run (consumer
// goroutines taking workers' places and giving them back), in a chain whose
// downstream workers are the upstream stage's consumer goroutines; and
// checks every item arrives exactly once.
func TestReview55_BoundWhileSwitching(t *testing.T) {
	const n = 3000
	slowAt := func(x int) bool {
		switch {
		case x < 400:
			return false
		case x < 420:
			return true
		case x < 1400:
			return x%97 == 0
		case x < 1600:
			return x%2 == 0
		case x < 2500:
			return false
		default:
			return x%5 < 2
		}
	}
	for _, srcName := range []string{"slice", "neverwaits", "interruptible"} {
		var src r55Src
		for _, s := range r55Sources {
			if s.name == srcName {
				src = s
			}
		}
		for _, w1 := range []int{1, 2, 3} {
			for _, w2 := range []int{1, 2, 4} {
				label := fmt.Sprintf("%s/w1=%d/w2=%d", srcName, w1, w2)
				var in1, max1, in2, max2 atomic.Int64
				track := func(in, max *atomic.Int64) func() {
					c := in.Add(1)
					for {
						m := max.Load()
						if c <= m || max.CompareAndSwap(m, c) {
							break
						}
					}
					return func() { in.Add(-1) }
				}
				var nexts, stops atomic.Int64
				a := stage.Map(src.make(n, &nexts, &stops), func(_ context.Context, x int) (int, error) {
					defer track(&in1, &max1)()
					if slowAt(x) {
						time.Sleep(30 * time.Microsecond)
					}
					return x + 1, nil
				}, stage.Workers(w1))
				b := stage.Filter(a, func(_ context.Context, x int) (bool, error) {
					defer track(&in2, &max2)()
					if slowAt(n - x) {
						time.Sleep(30 * time.Microsecond)
					}
					return x%3 != 0, nil
				}, stage.Workers(w2))
				var sum, count int
				wantSum, wantCount := 0, 0
				for x := 1; x <= n; x++ {
					if x%3 != 0 {
						wantSum += x
						wantCount++
					}
				}
				var err error
				runcheck.NoHang(t, label, func() {
					err = stage.Run(context.Background(), b, func(_ context.Context, v int, err error) error {
						if v%500 == 1 {
							time.Sleep(50 * time.Microsecond) // a consumer that is slow now and then
						}
						sum += v
						count++
						return err
					})
				})
				if err != nil || sum != wantSum || count != wantCount {
					t.Fatalf("%s: sum %d count %d err %v, want %d %d", label, sum, count, err, wantSum, wantCount)
				}
				if max1.Load() > int64(w1) || max2.Load() > int64(w2) {
					t.Fatalf("%s: at most %d and %d calls at once promised, saw %d and %d", label, w1, w2, max1.Load(), max2.Load())
				}
			}
		}
	}
}

// TestReview55_BarrierWithBuffer attacks "a function that waits ... for other
// calls of the same stage (a barrier of n calls ...) ... Add Buffer(1) to keep
// every worker a goroutine of the stage's own: the stage's function may then
// wait for its consumer or for its peers", and "with enough input and a
// consumer that keeps up exactly n", over tiny inputs whose length is the
// barrier's size; Workers(-1) (one goroutine per item) likewise.
func TestReview55_BarrierWithBuffer(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, n := range []int{2, 3, 4, 5} {
			for _, srcName := range []string{"slice", "neverwaits", "waiting", "interruptible"} {
				var src r55Src
				for _, s := range r55Sources {
					if s.name == srcName {
						src = s
					}
				}
				for _, opts := range [][]stage.Option{
					{stage.Workers(n), stage.Buffer(1)},
					{stage.Workers(n), stage.Buffer(1), stage.Ordered()},
					{stage.Workers(-1)},
					{stage.Workers(-1), stage.Ordered()},
				} {
					label := fmt.Sprintf("%s/n=%d/%d-opts", srcName, n, len(opts))
					var mu sync.Mutex
					arrived := 0
					all := make(chan struct{})
					var nexts, stops atomic.Int64
					s := stage.Map(src.make(n, &nexts, &stops), func(ctx context.Context, x int) (int, error) {
						mu.Lock()
						arrived++
						if arrived == n {
							close(all)
						}
						mu.Unlock()
						select {
						case <-all:
						case <-ctx.Done():
							return 0, ctx.Err()
						}
						return x, nil
					}, opts...)
					var got []int
					var err error
					runcheck.NoHang(t, label, func() { got, _, err = r55Collect(context.Background(), s) })
					if err != nil || !r55SameMultiset(got, r55Ints(n)) {
						t.Fatalf("%s: %v %v", label, got, err)
					}
				}
			}
		}
	})
}
