package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview28StatsSnapshotInvariants: a Stats read while runs go on (two
// runs sharing it, failing items, key panics, fused stages, a cancel mid
// run) never shows Failed > Finished, Finished > Received or InFlight < 0.
func TestReview28StatsSnapshotInvariants(t *testing.T) {
	var st stage.Stats
	ctx, cancel := context.WithCancel(stage.Observe(context.Background(), &st))
	defer cancel()
	build := func(n int) stage.Stream[int] {
		m := stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (int, error) {
			if v%2 == 0 {
				return 0, errR28
			}
			return v, nil
		}, stage.Workers(8), stage.OnError(stage.Forward), stage.Name("m"))
		f := stage.Filter(m, func(context.Context, int) (bool, error) { return true, nil }, stage.Name("f"))
		k := stage.Map(f, func(_ context.Context, v int) (int, error) {
			if v%3 == 0 {
				return 0, errR28
			}
			return v, nil
		}, stage.Workers(4), stage.Name("k"), stage.OnError(stage.Forward), stage.KeyBy(func(v int) int {
			if v%5 == 0 {
				panic("key")
			}
			return v % 7
		}))
		return stage.FlatMap(k, func(_ context.Context, v int) ([]int, error) {
			if v%11 == 0 {
				return nil, errR28
			}
			return []int{v, v}, nil
		}, stage.Name("fm"), stage.OnError(stage.Forward))
	}
	stop := make(chan struct{})
	var bad atomic.Value
	var reads atomic.Int64
	readerDone := r28Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, c := range st.Snapshot() {
				reads.Add(1)
				if c.Failed > c.Finished || c.Finished > c.Received || c.InFlight < 0 || c.InFlight != c.Received-c.Finished {
					bad.Store(fmt.Sprintf("%+v", c))
				}
			}
			for _, name := range []string{"m", "f", "k", "fm"} {
				if c, ok := st.Get(name); ok && (c.Failed > c.Finished || c.InFlight < 0) {
					bad.Store(fmt.Sprintf("Get %+v", c))
				}
			}
		}
	})
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx := ctx
			if r == 3 {
				var c context.CancelFunc
				rctx, c = context.WithCancel(ctx)
				go func() { time.Sleep(time.Millisecond); c() }()
			}
			for range 5 {
				_, _ = sink.Count(rctx, build(3000))
			}
		}()
	}
	wg.Wait()
	close(stop)
	r28Wait(t, readerDone, "the reader")
	if b := bad.Load(); b != nil {
		t.Errorf("a snapshot read during the runs broke the invariants: %v", b)
	}
	for _, c := range st.Snapshot() {
		if c.InFlight != 0 || c.Running != 0 {
			t.Errorf("after the runs: %+v", c)
		}
	}
	t.Logf("%d counts read", reads.Load())
}

// r28Barrier is a cyclic barrier of n parties.
type r28Barrier struct {
	mu    sync.Mutex
	cond  *sync.Cond
	n     int
	count int
	gen   int
}

func newR28Barrier(n int) *r28Barrier {
	b := &r28Barrier{n: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *r28Barrier) await() {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.gen
	b.count++
	if b.count == b.n {
		b.count = 0
		b.gen++
		b.cond.Broadcast()
		return
	}
	for g == b.gen {
		b.cond.Wait()
	}
}

// TestReview28BarrierWithBuffer1: a stage of n workers whose function is a
// barrier of n calls never hangs with Buffer(1), whatever is upstream
// (Workers doc: "Add Buffer(1) to keep every worker a goroutine of the
// stage's own: the stage's function may then wait ... for its peers").
// Each scenario runs in a child process: a hang fails it, not the suite.
func TestReview28BarrierWithBuffer1(t *testing.T) {
	const n = 4
	const items = 64
	ups := map[string]func() stage.Stream[int]{
		"flatmap": func() stage.Stream[int] {
			return stage.FlatMap(source.Slice(ints(items/n)), func(_ context.Context, v int) ([]int, error) {
				return []int{4 * v, 4*v + 1, 4*v + 2, 4*v + 3}, nil
			})
		},
		"flatmapW1": func() stage.Stream[int] {
			return stage.FlatMap(source.Slice(ints(items/n)), func(_ context.Context, v int) ([]int, error) {
				return []int{4 * v, 4*v + 1, 4*v + 2, 4*v + 3}, nil
			}, stage.Workers(1))
		},
		"flatmapOne": func() stage.Stream[int] {
			return stage.FlatMap(source.Slice([]int{0}), func(context.Context, int) ([]int, error) { return ints(items), nil })
		},
		"map4": func() stage.Stream[int] { return stage.Map(source.Slice(ints(items)), double, stage.Workers(4)) },
		"map8": func() stage.Stream[int] { return stage.Map(source.Slice(ints(items)), double, stage.Workers(8)) },
		"filter4": func() stage.Stream[int] {
			return stage.Filter(source.Slice(ints(items)), func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(4))
		},
		"until": func() stage.Stream[int] {
			return stage.Until(source.Slice(ints(items)), context.Background())
		},
		"untilMap4": func() stage.Stream[int] {
			return stage.Map(stage.Until(source.Slice(ints(items)), context.Background()), double, stage.Workers(4))
		},
		"chan": func() stage.Stream[int] {
			ch := make(chan int, items)
			for i := range items {
				ch <- i
			}
			close(ch)
			return source.Chan(ch)
		},
		"unbatch": func() stage.Stream[int] {
			return stage.Unbatch(stage.Batch(source.Slice(ints(items)), 8, 0))
		},
		"neverWaitsFlatMap": func() stage.Stream[int] {
			return stage.FlatMap(r28Src("neverWaits", items/n), func(_ context.Context, v int) ([]int, error) {
				return []int{4 * v, 4*v + 1, 4*v + 2, 4*v + 3}, nil
			})
		},
	}
	kinds := []string{"map", "filter", "flatmap", "concurrent"}
	for name, up := range ups {
		for _, kind := range kinds {
			for _, tee := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/tee=%v", name, kind, tee), func(t *testing.T) {
					runcheck.InChildTest(t, func(t *testing.T) {
						b := newR28Barrier(n)
						call := func(context.Context, int) error { b.await(); return nil }
						in := up()
						var other stage.Stream[int]
						if tee {
							br := stage.Tee(in, 2)
							in, other = br[0], stage.Map(br[1], double, stage.Workers(2))
						}
						var s stage.Stream[int]
						opts := []stage.Option{stage.Workers(n), stage.Buffer(1)}
						switch kind {
						case "map":
							s = stage.Map(in, func(ctx context.Context, v int) (int, error) { return v, call(ctx, v) }, opts...)
						case "filter":
							s = stage.Filter(in, func(ctx context.Context, v int) (bool, error) { return true, call(ctx, v) }, opts...)
						case "flatmap":
							s = stage.FlatMap(in, func(ctx context.Context, v int) ([]int, error) { return []int{v, v}, call(ctx, v) }, opts...)
						case "concurrent":
							tasks := stage.Map(in, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
								return func(ctx context.Context) (int, error) { return v, call(ctx, v) }, nil
							}, stage.Workers(2))
							s = stage.Concurrent(tasks, opts...)
						}
						if tee {
							s = stage.Merge(s, other)
						}
						var cnt int
						var err error
						done := r28Go(func() { cnt, err = sink.Count(context.Background(), s) })
						select {
						case <-done:
						case <-time.After(r28Watchdog):
							t.Fatalf("the barrier of %d calls hung with Buffer(1)", n)
						}
						if err != nil || cnt == 0 {
							t.Errorf("count %d, err %v", cnt, err)
						}
					})
				})
			}
		}
	}
}

// TestReview28MergeOneAheadPerInput: the goroutines of a Merge are together
// at most one item per input ahead of its consumer, whose callback here sits
// on its first item: the sources may have produced at most that item, one per
// input, and the one a waiting Run may take at once.
func TestReview28MergeOneAheadPerInput(t *testing.T) {
	for _, k := range []int{1, 2, 3, 8} {
		for _, emptyOne := range []bool{false, true} {
			if k == 1 && emptyOne {
				continue
			}
			t.Run(fmt.Sprintf("k=%d/empty=%v", k, emptyOne), func(t *testing.T) {
				var produced atomic.Int64
				ins := make([]stage.Stream[int], k)
				for i := range ins {
					empty := emptyOne && i == 0
					ins[i] = stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
						return func(context.Context) (int, error) {
							if empty {
								return 0, io.EOF
							}
							return int(produced.Add(1)), nil
						}, nil
					})
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				in := make(chan struct{})
				done := r28Go(func() {
					_ = sink.ForEach(ctx, stage.Merge(ins...), func(ctx context.Context, _ int) error {
						close(in)
						<-ctx.Done()
						return ctx.Err()
					})
				})
				r28Wait(t, in, "the first item")
				time.Sleep(50 * time.Millisecond) // widen: let the merge run as far ahead as it would
				got := produced.Load()
				cancel()
				r28Wait(t, done, "the sink")
				if limit := int64(1 + k + 1); got > limit {
					t.Errorf("the sources produced %d items while the consumer held its first: more than %d (one per input ahead, +1)", got, limit)
				}
				t.Logf("produced %d (k=%d)", got, k)
			})
		}
	}
}

// TestReview28LenWithHandle: Len of a Map or Concurrent under Handle or
// Budget stays the most it can carry (the input's), and runs that drop items
// (down to none, over a one-item input run in its consumer) still deliver
// exactly what survived.
func TestReview28LenWithHandle(t *testing.T) {
	drop := stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil }))
	budget := stage.OnError(stage.Budget(100, nil))
	odd := func(_ context.Context, v int) (int, error) {
		if v%2 == 1 {
			return 0, errR28
		}
		return v, nil
	}
	for _, n := range []int{0, 1, 2, 7, 5000} {
		for pi, p := range []stage.Option{drop, budget} {
			for _, w := range []int{1, 4, -1} {
				t.Run(fmt.Sprintf("n=%d/p=%d/w=%d", n, pi, w), func(t *testing.T) {
					m := stage.Map(source.Slice(ints(n)), odd, p, stage.Workers(w))
					tasks := stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (func(context.Context) (int, error), error) {
						return func(ctx context.Context) (int, error) { return odd(ctx, v) }, nil
					})
					c := stage.Concurrent(tasks, p, stage.Workers(w))
					for _, s := range []stage.Stream[int]{m, c, stage.Map(m, double)} {
						if s.Len() != n {
							t.Errorf("Len %d, want %d", s.Len(), n)
						}
						got, err := sink.Slice(context.Background(), s)
						want := (n + 1) / 2
						if n > 100*2 && pi == 1 {
							if err == nil {
								t.Errorf("budget not spent")
							}
							continue
						}
						if err != nil || len(got) != want {
							t.Errorf("got %d items, err %v, want %d", len(got), err, want)
						}
					}
					// One item that fails: dropped, then Unbatch over a Len-1 input.
					if n == 1 {
						u := stage.Unbatch(stage.Map(source.Slice([][]int{{1, 2, 3}}), func(context.Context, []int) ([]int, error) {
							return nil, errR28
						}, p, stage.Workers(w)))
						got, err := sink.Slice(context.Background(), u)
						if got != nil || err != nil {
							t.Errorf("unbatch of a dropped single batch: %v, %v", got, err)
						}
					}
				})
			}
		}
	}
}

// TestReview28MarkedSourceCountsAsSource: NeverWaits(s) and Interruptible(s)
// are s when a pipeline is built: used with s (or a stage built on s) in one
// pipeline, they share a stream and Merge panics; built alone, they run.
func TestReview28MarkedSourceCountsAsSource(t *testing.T) {
	mk := func() stage.Stream[int] { return r28Src("waiting", 3) }
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic, yet two consumers share one stream", name)
			}
		}()
		f()
	}
	s := mk()
	mustPanic("Merge(s, NeverWaits(s))", func() { stage.Merge(s, stage.NeverWaits(s)) })
	mustPanic("Merge(NeverWaits(s), Interruptible(s))", func() { stage.Merge(stage.NeverWaits(s), stage.Interruptible(s)) })
	mustPanic("Merge(Map(s), NeverWaits(s))", func() { stage.Merge(stage.Map(s, double), stage.NeverWaits(s)) })
	mustPanic("Merge(Map(NeverWaits(s)), Interruptible(s))", func() {
		stage.Merge(stage.Map(stage.NeverWaits(s), double), stage.Interruptible(s))
	})
	mustPanic("Merge(Tee(NeverWaits(s))[0], Map(s))", func() {
		b := stage.Tee(stage.NeverWaits(s), 1)
		stage.Merge(b[0], stage.Map(s, double))
	})
	// Each alone runs, even all three at once.
	var wg sync.WaitGroup
	for _, x := range []stage.Stream[int]{s, stage.NeverWaits(s), stage.Interruptible(s)} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := sink.Slice(context.Background(), stage.Map(x, double, stage.Workers(3)))
			if err != nil || len(got) != 3 {
				t.Errorf("got %v, err %v", got, err)
			}
		}()
	}
	wg.Wait()
	_ = errors.New
}
