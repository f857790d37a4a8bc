package stage_test

// FlatMap, Filter, Concurrent, Ordered, Workers and Buffer, attacked from
// their doc comments.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r67Chain makes item i's call wait until item i+1's call has returned, so
// that with Ordered the outputs must be put back in order (a reversed
// completion order). last is the index of the last item.
type r67Chain struct {
	done []chan struct{}
}

func r67NewChain(n int) *r67Chain {
	c := &r67Chain{done: make([]chan struct{}, n)}
	for i := range c.done {
		c.done[i] = make(chan struct{})
	}
	return c
}

// wait blocks item i until item i+1 finished (for the items of a group of
// size g: within each group of g items, completion is reversed).
func (c *r67Chain) wait(i, g int) {
	if (i+1)%g != 0 && i+1 < len(c.done) {
		<-c.done[i+1]
	}
}
func (c *r67Chain) finish(i int) { close(c.done[i]) }

// waitCtx is wait that gives up when ctx ends.
func (c *r67Chain) waitCtx(ctx context.Context, i, g int) {
	if (i+1)%g != 0 && i+1 < len(c.done) {
		select {
		case <-c.done[i+1]:
		case <-ctx.Done():
		}
	}
}

// "FlatMap ... emits the elements of the slice it returns, in slice order;
// with Ordered, all outputs of one item leave before those of the next."
// Within each group of 4 items the calls complete in reverse order.
func TestReview67FlatMapOrdered(t *testing.T) {
	const n, g = 16, 4
	ch := r67NewChain(n)
	fm := stage.FlatMap(source.Slice(r67Ints(n)), func(_ context.Context, v int) ([]int, error) {
		ch.wait(v, g)
		defer ch.finish(v)
		if v%5 == 4 {
			return nil, nil // nothing for this item
		}
		return []int{10 * v, 10*v + 1, 10*v + 2}, nil
	}, stage.Workers(g), stage.Ordered())
	var got []int
	var err error
	r67Guard(t, "flatmap ordered", func() { got, err = sink.Slice(context.Background(), fm) })
	var want []int
	for v := range n {
		if v%5 != 4 {
			want = append(want, 10*v, 10*v+1, 10*v+2)
		}
	}
	if err != nil || !r67Equal(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
}

// "Map, Filter, FlatMap and Concurrent emit nothing from a failed call, so
// for them a retry repeats nothing": a FlatMap whose failed attempt
// returned elements along with its error emits none of them, under Retry,
// Forward and Handle.
func TestReview67FlatMapFailedCallEmitsNothing(t *testing.T) {
	policies := map[string]stage.ErrorPolicy{
		"forward": stage.Forward,
		"handle":  stage.Handle(func(context.Context, *stage.Error) error { return nil }),
		"budget":  stage.Budget(100, nil),
	}
	for name, p := range policies {
		var tries sync.Map
		fm := stage.FlatMap(source.Slice(r67Ints(6)), func(_ context.Context, v int) ([]int, error) {
			n, _ := tries.LoadOrStore(v, new(atomic.Int32))
			k := n.(*atomic.Int32).Add(1)
			switch {
			case v%2 == 0 && k == 1:
				return []int{-100 - v}, r67Err // fails once, then succeeds
			case v == 5:
				return []int{-200, -201}, r67Err // always fails
			}
			return []int{v, v}, nil
		}, stage.Retry(2, 0), stage.OnError(p), stage.Workers(3))
		vals, fwd, err := r67Run(context.Background(), fm)
		if err != nil || !r67SameInts(vals, []int{0, 0, 1, 1, 2, 2, 3, 3, 4, 4}) {
			t.Errorf("%s: got %v, %v; want each of 0..4 twice", name, vals, err)
		}
		if name == "forward" {
			var se *stage.Error
			if len(fwd) != 1 || !errors.As(fwd[0], &se) || se.Input != 5 || se.Attempts != 2 {
				t.Errorf("%s: forwarded %v; want item 5's *Error after 2 attempts", name, fwd)
			}
		} else if len(fwd) != 0 {
			t.Errorf("%s: forwarded %v", name, fwd)
		}
	}
}

// "Filter calls keep for each item of in and emits the item when keep
// returns true. Workers, ordering and error policy are as in Map."
func TestReview67FilterOrderedAndErrors(t *testing.T) {
	const n, g = 20, 4
	ch := r67NewChain(n)
	f := stage.Filter(source.Slice(r67Ints(n)), func(_ context.Context, v int) (bool, error) {
		ch.wait(v, g)
		defer ch.finish(v)
		return v%3 != 0, nil
	}, stage.Workers(g), stage.Ordered())
	var got []int
	var err error
	r67Guard(t, "filter ordered", func() { got, err = sink.Slice(context.Background(), f) })
	var want []int
	for v := range n {
		if v%3 != 0 {
			want = append(want, v)
		}
	}
	if err != nil || !r67Equal(got, want) {
		t.Errorf("ordered: got %v, %v; want %v", got, err, want)
	}

	// A panic in keep: an *Error wrapping a *PanicError whose Value is the
	// panic's value, of the filter's stage and item.
	pf := stage.Filter(source.Slice(r67Ints(5)), func(_ context.Context, v int) (bool, error) {
		if v == 2 {
			panic(r67Err)
		}
		return true, nil
	}, stage.Workers(1))
	_, err = sink.Slice(context.Background(), pf)
	var se *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) || se.Stage != "filter#1" || se.Index != 2 || se.Input != 2 ||
		pe.Value != r67Err || !errors.Is(err, r67Err) || len(pe.Stack) == 0 {
		t.Errorf("keep panic: %v; want filter#1's *Error of item 2 wrapping a *PanicError of r67Err", err)
	}

	// Forward: the *Error takes the item's place, in order.
	ff := stage.Filter(source.Slice(r67Ints(6)), func(_ context.Context, v int) (bool, error) {
		if v == 3 {
			return true, r67Err
		}
		return v%2 == 0, nil
	}, stage.Workers(3), stage.Ordered(), stage.OnError(stage.Forward))
	var seq []string
	err = stage.Run(context.Background(), ff, func(_ context.Context, v int, e error) error {
		if e != nil {
			seq = append(seq, "err")
		} else {
			seq = append(seq, fmt.Sprint(v))
		}
		return nil
	})
	if got := fmt.Sprint(seq); err != nil || got != "[0 2 err 4]" {
		t.Errorf("forward: got %s, %v; want [0 2 err 4]", got, err)
	}
}

// "a nil task is an item error wrapping ErrNilTask"; "A try that failed
// without calling the function (a nil task of Concurrent ...) counts as
// one" (Attempts). Results in task order with Ordered.
func TestReview67ConcurrentNilTaskAndOrder(t *testing.T) {
	const n, g = 12, 3
	ch := r67NewChain(n)
	tasks := make([]func(context.Context) (int, error), n)
	for i := range tasks {
		if i == 4 || i == 9 {
			continue // nil
		}
		tasks[i] = func(context.Context) (int, error) {
			ch.wait(i, g)
			return i, nil
		}
	}
	// The chain's finish for nil tasks: close their channels up front.
	ch.finish(4)
	ch.finish(9)
	for i := range tasks {
		if tasks[i] != nil {
			f := tasks[i]
			tasks[i] = func(ctx context.Context) (int, error) {
				defer ch.finish(i)
				return f(ctx)
			}
		}
	}
	c := stage.Concurrent(source.Slice(tasks), stage.Workers(g), stage.Ordered(), stage.OnError(stage.Forward))
	var seq []string
	var err error
	r67Guard(t, "concurrent", func() {
		err = stage.Run(context.Background(), c, func(_ context.Context, v int, e error) error {
			if e != nil {
				var se *stage.Error
				if !errors.As(e, &se) || !errors.Is(e, stage.ErrNilTask) || se.Attempts != 1 || se.Stage != "concurrent#1" {
					t.Errorf("nil task error %v (%+v)", e, se)
				}
				seq = append(seq, fmt.Sprintf("nil%d", se.Index))
			} else {
				seq = append(seq, fmt.Sprint(v))
			}
			return nil
		})
	})
	if got := fmt.Sprint(seq); err != nil || got != "[0 1 2 3 nil4 5 6 7 8 nil9 10 11]" {
		t.Errorf("got %s, %v", got, err)
	}
	// Under FailFast, a nil task fails the run with an *Error wrapping ErrNilTask.
	_, err = sink.Slice(context.Background(), stage.Concurrent(source.Slice([]func(context.Context) (int, error){nil})))
	if !errors.Is(err, stage.ErrNilTask) {
		t.Errorf("FailFast: %v", err)
	}
}

// ErrNilTask: "Under Retry it is an error like any other: each try counts
// as an attempt" (stated after the black-box round asked): Retry(3, 0)
// makes 3 attempts.
func TestReview67ConcurrentNilTaskRetry(t *testing.T) {
	c := stage.Concurrent(source.Slice([]func(context.Context) (int, error){nil}), stage.Retry(3, 0), stage.OnError(stage.Forward))
	_, fwd, err := r67Run(context.Background(), c)
	var se *stage.Error
	if err != nil || len(fwd) != 1 || !errors.As(fwd[0], &se) || !errors.Is(fwd[0], stage.ErrNilTask) || se.Attempts != 3 {
		t.Fatalf("got %v, %v", fwd, err)
	}
}

// "A stage runs at most Workers(n) calls of its function at once" and,
// with Buffer(1), "the stage's function may then wait ... for its peers":
// a barrier of n calls completes, and no more than n run at once. For
// Map, Filter, FlatMap and Concurrent, over a slice and over a waiting
// source. Child process: a deadlock fails this test only.
func TestReview67WorkersBarrierWithBuffer(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, n := range []int{2, 4, 9} {
			for _, srcKind := range []string{"slice", "source"} {
				for _, kind := range []string{"map", "filter", "flatmap", "concurrent"} {
					name := fmt.Sprintf("n=%d/%s/%s", n, srcKind, kind)
					items := 3 * n
					var in stage.Stream[int]
					if srcKind == "slice" {
						in = source.Slice(r67Ints(items))
					} else {
						in = r67Src(items, nil)
					}
					var cur, peak atomic.Int64
					var mu sync.Mutex
					arrived := 0
					gen := make(chan struct{})
					barrier := func() {
						c := cur.Add(1)
						for {
							p := peak.Load()
							if c <= p || peak.CompareAndSwap(p, c) {
								break
							}
						}
						mu.Lock()
						arrived++
						my := gen
						if arrived == n {
							arrived = 0
							close(gen)
							gen = make(chan struct{})
						}
						mu.Unlock()
						<-my
						cur.Add(-1)
					}
					opts := []stage.Option{stage.Workers(n), stage.Buffer(1)}
					var s stage.Stream[int]
					switch kind {
					case "map":
						s = stage.Map(in, func(_ context.Context, v int) (int, error) { barrier(); return v, nil }, opts...)
					case "filter":
						s = stage.Filter(in, func(_ context.Context, v int) (bool, error) { barrier(); return true, nil }, opts...)
					case "flatmap":
						s = stage.FlatMap(in, func(_ context.Context, v int) ([]int, error) { barrier(); return []int{v}, nil }, opts...)
					case "concurrent":
						s = stage.Concurrent(stage.Map(in, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
							return func(context.Context) (int, error) { barrier(); return v, nil }, nil
						}), opts...)
					}
					var got []int
					var err error
					r67Guard(t, name, func() { got, err = sink.Slice(context.Background(), s) })
					if err != nil || !r67SameInts(got, r67Ints(items)) {
						t.Errorf("%s: got %v, %v", name, got, err)
					}
					if peak.Load() > int64(n) {
						t.Errorf("%s: %d calls at once; Workers(%d)", name, peak.Load(), n)
					}
				}
			}
		}
	})
}

// "-1: no limit, one goroutine per item": a barrier of every item of the
// input completes (unordered and Ordered, where "With Workers(-1) the
// window is unbounded"), and many items all arrive. Child process.
func TestReview67WorkersUnlimited(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, ordered := range []bool{false, true} {
			for _, srcKind := range []string{"slice", "source"} {
				const n = 300
				name := fmt.Sprintf("ordered=%v/%s", ordered, srcKind)
				in := source.Slice(r67Ints(n))
				if srcKind == "source" {
					in = r67Src(n, nil)
				}
				var arrived atomic.Int64
				all := r67NewGate()
				opts := []stage.Option{stage.Workers(-1)}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				s := stage.Map(in, func(_ context.Context, v int) (int, error) {
					if arrived.Add(1) == n {
						all.Open()
					}
					<-all.C()
					return v, nil
				}, opts...)
				var got []int
				var err error
				r67Guard(t, name, func() { got, err = sink.Slice(context.Background(), s) })
				if err != nil || !r67SameInts(got, r67Ints(n)) || (ordered && !r67Equal(got, r67Ints(n))) {
					t.Errorf("%s: got %v, %v", name, got, err)
				}
			}
		}
		// Many items, no barrier.
		got, err := sink.Slice(context.Background(), stage.Map(r67Src(5000, nil), r67Id, stage.Workers(-1), stage.Ordered()))
		if err != nil || !r67Equal(got, r67Ints(5000)) {
			t.Errorf("5000 items: %d, %v", len(got), err)
		}
	})
}

// "Any stage whose input is known to hold k items (Stream.Len is k) runs
// at most k goroutines at a time to call its function, whatever n is": a
// barrier of all k items with Workers(1000) and Buffer(1) completes.
func TestReview67WorkersLargeOverSmallInput(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, k := range []int{1, 2, 10} {
			var arrived atomic.Int64
			all := r67NewGate()
			s := stage.Map(source.Slice(r67Ints(k)), func(_ context.Context, v int) (int, error) {
				if arrived.Add(1) == int64(k) {
					all.Open()
				}
				<-all.C()
				return v, nil
			}, stage.Workers(1000), stage.Buffer(1))
			got, err := sink.Slice(context.Background(), s)
			if err != nil || !r67SameInts(got, r67Ints(k)) {
				t.Errorf("k=%d: got %v, %v", k, got, err)
			}
		}
	})
}

// Huge Workers and Buffer values: the read-ahead bound workers+buffer and
// the Ordered window 2×workers+buffer must not overflow into a stage that
// stalls, fails or crashes. Every item must arrive (in order under
// Ordered). Child process: a crash, a hang or an out-of-memory fails this
// test only.
func TestReview67HugeWorkersAndBuffer(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		type cfg struct {
			workers, buffer int
			ordered, keyed  bool
		}
		var cfgs []cfg
		for _, w := range []int{1, 4, -1, math.MaxInt / 2, math.MaxInt} {
			for _, b := range []int{math.MaxInt / 2, math.MaxInt - 1, math.MaxInt} {
				for _, o := range []bool{false, true} {
					for _, k := range []bool{false, true} {
						cfgs = append(cfgs, cfg{w, b, o, k})
					}
				}
			}
		}
		for _, c := range cfgs {
			for _, srcKind := range []string{"slice", "source"} {
				name := fmt.Sprintf("%+v/%s", c, srcKind)
				in := source.Slice(r67Ints(100))
				if srcKind == "source" {
					in = r67Src(100, nil)
				}
				opts := []stage.Option{stage.Workers(c.workers), stage.Buffer(c.buffer)}
				if c.ordered {
					opts = append(opts, stage.Ordered())
				}
				if c.keyed {
					opts = append(opts, stage.KeyBy(func(v int) int { return v % 3 }))
				}
				var got []int
				var err error
				v, panicked := r67Recover(func() {
					r67Guard(t, name, func() { got, err = sink.Slice(context.Background(), stage.Map(in, r67Id, opts...)) })
				})
				if panicked {
					t.Errorf("%s: panicked: %v", name, v)
					continue
				}
				if err != nil || !r67SameInts(got, r67Ints(100)) || (c.ordered && !r67Equal(got, r67Ints(100))) {
					t.Errorf("%s: got %v, %v", name, got, err)
				}
			}
		}
	})
}

// "the stage takes at most 2×workers+buffer items from upstream that its
// consumer has not yet taken, and then stops pulling". Item 0's call holds
// its place; the others finish; the source gives at most 2×W+B items.
// Also for an unordered stage ("no stage pulls more than its workers plus
// its buffer ahead of its consumer") and KeyBy with one key ("the stage
// still takes at most workers+buffer items ahead of its consumer"). See
// r67Window.
func TestReview67ReadAheadBounds(t *testing.T) {
	type cfg struct {
		name  string
		w, b  int
		opts  []stage.Option
		bound int64
	}
	cfgs := []cfg{
		{"ordered w3 b2", 3, 2, []stage.Option{stage.Ordered()}, 8},
		{"ordered w1 b0", 1, 0, []stage.Option{stage.Ordered()}, 2},
		{"ordered w4 b0", 4, 0, []stage.Option{stage.Ordered()}, 8},
		{"unordered w3 b2", 3, 2, nil, 5},
		{"keyby one key w4 b1", 4, 1, []stage.Option{stage.KeyBy(func(int) int { return 0 })}, 5},
		{"keyby one key ordered w2 b1", 2, 1, []stage.Option{stage.KeyBy(func(int) int { return 0 }), stage.Ordered()}, 5},
	}
	for _, c := range cfgs {
		var nexts r67Counter
		release := r67NewGate()
		entered := make(chan struct{})
		s := stage.Map(r67Src(-1, &nexts), func(ctx context.Context, v int) (int, error) {
			if v == 0 {
				close(entered)
				<-release.C()
			}
			if v >= 1 && c.name[:3] == "uno" {
				// Unordered: the others block too, so that their outputs do
				// not leave and free their places.
				<-release.C()
			}
			return v, nil
		}, append([]stage.Option{stage.Workers(c.w), stage.Buffer(c.b)}, c.opts...)...)
		var held int64
		r67Guard(t, c.name, func() {
			go func() {
				<-entered
				held = r67Settle(&nexts)
				release.Open()
			}()
			n := 0
			for _, err := range sink.All(context.Background(), s) {
				if err != nil {
					t.Errorf("%s: %v", c.name, err)
				}
				if n++; n == 30 {
					break
				}
			}
		})
		if held > c.bound {
			t.Errorf("%s: the source gave %d items while item 0 was held; bound %d", c.name, held, c.bound)
		} else {
			t.Logf("%s: the source gave %d items (bound %d)", c.name, held, c.bound)
		}
	}
}

// Stage names: "the stages that call a function (Map, Filter, FlatMap,
// Concurrent, Apply, Unbatch) are numbered from 1, named or not, in the
// order a run opens them, upstream first" (Batch is not numbered). And
// Index: "Forwarded errors count as items."
func TestReview67NamesAndIndex(t *testing.T) {
	in := source.Slice(r67Ints(10))
	m := stage.Map(in, r67Id, stage.Workers(1))                                                                          // map#1
	u := stage.Unbatch(stage.Batch(m, 3, 0))                                                                             // unbatch#2
	f := stage.Filter(u, func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(1))                // filter#3
	named := stage.Map(f, r67Id, stage.Name("mine"), stage.Workers(1))                                                   // mine (#4)
	fm := stage.FlatMap(named, func(_ context.Context, v int) ([]int, error) { return []int{v}, nil }, stage.Workers(1)) // flatmap#5
	tasks := stage.Map(fm, func(_ context.Context, v int) (func(context.Context) (int, error), error) {                  // map#6
		return func(context.Context) (int, error) {
			if v == 6 {
				return 0, r67Err
			}
			return v, nil
		}, nil
	}, stage.Workers(1))
	c := stage.Concurrent(tasks, stage.Workers(1)) // concurrent#7
	_, err := sink.Slice(context.Background(), c)
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "concurrent#7" || se.Index != 6 || se.Attempts != 1 {
		t.Errorf("err %v (%+v); want concurrent#7's *Error of index 6", err, se)
	}

	// Index counts forwarded errors: item 1 fails in map#1 (forwarded), item
	// 3 fails in map#2, whose input index for it is 3.
	m1 := stage.Map(source.Slice(r67Ints(6)), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			return 0, r67Err
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	m2 := stage.Map(m1, func(_ context.Context, v int) (int, error) {
		if v == 3 {
			return 0, r67Err
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	_, fwd, err := r67Run(context.Background(), m2)
	if err != nil || len(fwd) != 2 {
		t.Fatalf("forward: %v, %v", fwd, err)
	}
	var e1, e2 *stage.Error
	if !errors.As(fwd[0], &e1) || !errors.As(fwd[1], &e2) || e1.Stage != "map#1" || e1.Index != 1 || e2.Stage != "map#2" || e2.Index != 3 || e2.Input != 3 {
		t.Errorf("forwarded %v, %v; want map#1 index 1, then map#2 index 3", fwd[0], fwd[1])
	}
}
