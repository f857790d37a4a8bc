package stage_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r14Conc struct {
	cur, max atomic.Int64
}

func (c *r14Conc) enter() {
	v := c.cur.Add(1)
	for {
		m := c.max.Load()
		if v <= m || c.max.CompareAndSwap(m, v) {
			return
		}
	}
}
func (c *r14Conc) exit() { c.cur.Add(-1) }

// r14Work is cheap for most items and slow in phases, so that places move
// between a stage's own goroutines and its consumer's.
func r14Work(i int) {
	if (i/500)%3 == 2 {
		end := time.Now().Add(40 * time.Microsecond)
		for time.Now().Before(end) {
		}
	}
}

// Workers(n) bounds the calls of each of several consecutive cheap stages
// (which may run in one another's goroutines) while calls turn from cheap to
// slow and back.
func TestReview14FusedWorkersBoundsPhases(t *testing.T) {
	const n = 15000
	type srcKind struct {
		name string
		mk   func() (stage.Stream[int], func())
	}
	srcs := []srcKind{
		{"slice", func() (stage.Stream[int], func()) { return source.Slice(ints(n)), func() {} }},
		{"neverwaits", func() (stage.Stream[int], func()) {
			var i atomic.Int64
			return stage.NeverWaits(source.Func(func(context.Context) (int, error) {
				v := int(i.Add(1) - 1)
				if v >= n {
					return 0, errEOF
				}
				return v, nil
			})), func() {}
		}},
		{"chan", func() (stage.Stream[int], func()) {
			ch := make(chan int, 64)
			done := make(chan struct{})
			go func() {
				defer close(ch)
				for i := range n {
					select {
					case ch <- i:
					case <-done:
						return
					}
				}
			}()
			return source.Chan(ch), func() { close(done) }
		}},
	}
	for _, sk := range srcs {
		t.Run(sk.name, func(t *testing.T) {
			src, cleanup := sk.mk()
			defer cleanup()
			var a, b, c, d r14Conc
			mA := stage.Map(src, func(_ context.Context, i int) (int, error) {
				a.enter()
				defer a.exit()
				r14Work(i)
				return i, nil
			}, stage.Workers(2))
			fB := stage.Filter(mA, func(_ context.Context, i int) (bool, error) {
				b.enter()
				defer b.exit()
				r14Work(i + 500)
				return true, nil
			}, stage.Workers(3))
			mC := stage.FlatMap(fB, func(_ context.Context, i int) ([]int, error) {
				c.enter()
				defer c.exit()
				r14Work(i + 1000)
				return []int{i}, nil
			}, stage.Workers(1))
			mD := stage.Map(mC, func(_ context.Context, i int) (int, error) {
				d.enter()
				defer d.exit()
				r14Work(i)
				return i, nil
			}, stage.Workers(5))
			var got int
			var err error
			r14Watchdog(t, func() { got, err = sink.Count(context.Background(), mD) })
			if err != nil || got != n {
				t.Fatalf("Count %d, %v", got, err)
			}
			for _, x := range []struct {
				name  string
				c     *r14Conc
				bound int64
			}{{"A", &a, 2}, {"B", &b, 3}, {"C", &c, 1}, {"D", &d, 5}} {
				if m := x.c.max.Load(); m > x.bound {
					t.Errorf("stage %s: %d calls at once, Workers(%d)", x.name, m, x.bound)
				}
			}
		})
	}
}

// With Buffer(1), every worker is a goroutine of the stage's own: a barrier
// of n calls of the stage completes, also after many cheap calls over a slice
// or an Interruptible channel source.
func TestReview14BufferOneBarrierAfterCheapCalls(t *testing.T) {
	const n, workers = 2000, 4
	for _, kind := range []string{"slice", "chan"} {
		t.Run(kind, func(t *testing.T) {
			var src stage.Stream[int]
			ch := make(chan int)
			stopFeed := make(chan struct{})
			defer close(stopFeed)
			if kind == "slice" {
				src = source.Slice(ints(n))
			} else {
				src = source.Chan(ch)
				go func() {
					defer close(ch)
					for i := range n {
						select {
						case ch <- i:
						case <-stopFeed:
							return
						}
					}
				}()
			}
			var barrier sync.WaitGroup
			barrier.Add(workers)
			m := stage.Map(src, func(ctx context.Context, i int) (int, error) {
				if i >= n-workers {
					barrier.Done()
					barrier.Wait()
				}
				return i, nil
			}, stage.Workers(workers), stage.Buffer(1))
			f := stage.Map(m, double, stage.Workers(2))
			var got int
			var err error
			r14Watchdog(t, func() { got, err = sink.Count(context.Background(), f) })
			if err != nil || got != n {
				t.Errorf("Count %d, %v", got, err)
			}
		})
	}
}

func r14GoID() int {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	b = b[:bytes.IndexByte(b, ' ')]
	id, _ := strconv.Atoi(string(b))
	return id
}

// A stage of one worker (or an unordered one without Buffer) over an input
// known to hold a single item calls its function in its consumer's goroutine
// from the start: in a chain of such stages under ForEach, every call runs in
// the caller's goroutine.
func TestReview14SingleItemChainRunsInCallerGoroutine(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []stage.Option
	}{
		{"w1", []stage.Option{stage.Workers(1)}},
		{"w1-ordered", []stage.Option{stage.Workers(1), stage.Ordered()}},
		{"w8", []stage.Option{stage.Workers(8)}},
		{"default", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			me := r14GoID()
			var ids []int
			var mu sync.Mutex
			rec := func() {
				mu.Lock()
				ids = append(ids, r14GoID())
				mu.Unlock()
			}
			s1 := stage.Map(source.Slice([]int{7}), func(_ context.Context, v int) (int, error) { rec(); return v, nil }, c.opts...)
			s2 := stage.Map(s1, func(_ context.Context, v int) (int, error) { rec(); return v + 1, nil }, c.opts...)
			s3 := stage.Concurrent(stage.Map(s2, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
				rec()
				return func(context.Context) (int, error) { rec(); return v, nil }, nil
			}, c.opts...), c.opts...)
			if s3.Len() != 1 {
				t.Fatalf("Len %d", s3.Len())
			}
			err := sink.ForEach(context.Background(), s3, func(context.Context, int) error { rec(); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != 5 {
				t.Fatalf("%d calls", len(ids))
			}
			for k, id := range ids {
				if id != me {
					t.Errorf("call %d ran in goroutine %d, the caller is %d", k, id, me)
				}
			}
		})
	}
}

// Workers(n) with n far beyond the input: a large n over a small input runs
// every item at once (a barrier of all items completes) and never more than
// n calls at once over a larger one.
func TestReview14WorkersHugeSmallInputBarrier(t *testing.T) {
	for _, k := range []int{2, 5, 64, 65} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			var barrier sync.WaitGroup
			barrier.Add(k)
			m := stage.Map(source.Slice(ints(k)), func(ctx context.Context, i int) (int, error) {
				barrier.Done()
				barrier.Wait()
				return i, nil
			}, stage.Workers(1<<20), stage.Buffer(1))
			var got int
			var err error
			r14Watchdog(t, func() { got, err = sink.Count(context.Background(), m) })
			if err != nil || got != k {
				t.Errorf("Count %d, %v", got, err)
			}
		})
	}
}
