package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Doc: "DefaultWorkers is ... min(runtime.NumCPU()+4, 32)"; Workers(0):
// DefaultWorkers; -1: no limit (Info.Workers -1); "Workers panics if n < -1."
func TestReview35DefaultWorkers(t *testing.T) {
	if want := min(runtime.NumCPU()+4, 32); stage.DefaultWorkers() != want {
		t.Errorf("DefaultWorkers() = %d, want %d", stage.DefaultWorkers(), want)
	}
	o := &r35Names{}
	ctx := stage.Observe(context.Background(), o)
	s := source.Slice(ints(3))
	s = stage.Map(s, double)
	s = stage.Map(s, double, stage.Workers(0))
	s = stage.Map(s, double, stage.Workers(-1))
	s = stage.Map(s, double, stage.Workers(math.MaxInt))
	s = stage.Map(s, double, stage.Workers(5), stage.Workers(0))
	r35Run(t, func() {
		if _, err := sink.Slice(ctx, s); err != nil {
			t.Error(err)
		}
	})
	var got []int
	for _, i := range o.get() {
		got = append(got, i.Workers)
	}
	d := stage.DefaultWorkers()
	if want := fmt.Sprint([]int{d, d, -1, math.MaxInt, d}); fmt.Sprint(got) != want {
		t.Errorf("Info.Workers %v, want %s", got, want)
	}
	for _, n := range []int{-2, math.MinInt} {
		if r35Panics(func() { stage.Workers(n) }) == nil {
			t.Errorf("Workers(%d) did not panic", n)
		}
	}
}

// r35Barrier is a function of which k calls must run at once to go on; it
// also records the most calls seen at once.
type r35Barrier struct {
	k       int
	mu      sync.Mutex
	in, max int
	full    chan struct{}
	once    sync.Once
}

func newR35Barrier(k int) *r35Barrier { return &r35Barrier{k: k, full: make(chan struct{})} }

func (b *r35Barrier) call(ctx context.Context, x int) (int, error) {
	b.mu.Lock()
	b.in++
	if b.in > b.max {
		b.max = b.in
	}
	if b.in >= b.k {
		b.once.Do(func() { close(b.full) })
	}
	b.mu.Unlock()
	defer func() { b.mu.Lock(); b.in--; b.mu.Unlock() }()
	select {
	case <-b.full:
		return x, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Doc: "n >= 1: at most n, and with enough input and a consumer that keeps up
// exactly n"; "Add Buffer(1) to keep every worker a goroutine of the stage's
// own: the stage's function may then wait ... for its peers." Workers(0) is
// DefaultWorkers; Workers(-1) one goroutine per item.
func TestReview35WorkersBarrier(t *testing.T) {
	d := stage.DefaultWorkers()
	unknown := func(n int) stage.Stream[int] {
		i := 0
		return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			i = 0
			return func(context.Context) (int, error) {
				if i == n {
					return 0, io.EOF
				}
				i++
				return i, nil
			}, nil
		})
	}
	for _, c := range []struct {
		name    string
		workers int
		k       int // barrier size
		items   int
		max     int // most at once
	}{
		{"w=4", 4, 4, 40, 4},
		{"w=0", 0, d, 3 * d, d},
		{"w=-1/slice", -1, 150, 150, 150},
		{"w=200/slice", 200, 150, 150, 150},
	} {
		for _, ordered := range []bool{false, true} {
			for _, src := range []string{"slice", "unknown"} {
				name := fmt.Sprintf("%s/ordered=%v/%s", c.name, ordered, src)
				t.Run(name, func(t *testing.T) {
					b := newR35Barrier(c.k)
					opts := []stage.Option{stage.Workers(c.workers), stage.Buffer(1)}
					if ordered {
						opts = append(opts, stage.Ordered())
					}
					in := source.Slice(ints(c.items))
					if src == "unknown" {
						in = unknown(c.items)
					}
					ctx, cancel := context.WithTimeout(context.Background(), r35Watchdog)
					defer cancel()
					var n int
					var err error
					r35Run(t, func() { n, err = sink.Count(ctx, stage.Map(in, b.call, opts...)) })
					if err != nil || n != c.items {
						t.Errorf("%d items, %v: a barrier of %d calls never filled", n, err, c.k)
					}
					if b.max > c.max {
						t.Errorf("%d calls at once, bound %d", b.max, c.max)
					}
				})
			}
		}
	}
}

// Without a Buffer, the concurrency bound still holds on the fused path.
func TestReview35WorkersBoundFused(t *testing.T) {
	for _, w := range []int{1, 2, 4} {
		var in, max atomic.Int64
		f := func(_ context.Context, x int) (int, error) {
			n := in.Add(1)
			for {
				m := max.Load()
				if n <= m || max.CompareAndSwap(m, n) {
					break
				}
			}
			runtime.Gosched()
			in.Add(-1)
			return x, nil
		}
		s := stage.Map(stage.Map(source.Slice(ints(5000)), f, stage.Workers(w)), double, stage.Workers(8))
		r35Run(t, func() {
			if n, err := sink.Count(context.Background(), s); err != nil || n != 5000 {
				t.Error(n, err)
			}
		})
		if m := max.Load(); m > int64(w) {
			t.Errorf("Workers(%d): %d calls at once", w, m)
		}
	}
}

// Doc (Buffer): "Buffer lets the stage run n more items ahead of its consumer
// ... It adds n to the read-ahead bound". With one worker and Buffer(3), the
// stage takes 4 items while the sink holds the first; never more than 4 plus
// the one handed to Run.
func TestReview35BufferReadAhead(t *testing.T) {
	for _, buf := range []int{0, 1, 3, 10} {
		for _, ordered := range []bool{false, true} {
			const w = 1
			var pulls atomic.Int64
			want := int64(w + buf)
			if ordered {
				want = int64(2*w + buf)
			}
			reached := make(chan struct{})
			over := make(chan struct{}, 1)
			src := source.Func(func(ctx context.Context) (int, error) {
				n := pulls.Add(1)
				if n == want {
					close(reached)
				}
				if n > want+1 {
					select {
					case over <- struct{}{}:
					default:
					}
				}
				return int(n), nil
			})
			opts := []stage.Option{stage.Workers(w), stage.Buffer(buf)}
			if ordered {
				opts = append(opts, stage.Ordered())
			}
			r35Run(t, func() {
				first := true
				err := sink.ForEach(context.Background(), stage.Map(src, double, opts...), func(context.Context, int) error {
					if !first {
						return stage.ErrStop
					}
					first = false
					if !r35Wait(t, reached, fmt.Sprintf("buffer %d ordered %v: the stage to take %d items", buf, ordered, want)) {
						return stage.ErrStop
					}
					select {
					case <-over:
						t.Errorf("buffer %d ordered %v: %d items taken while the sink held the first, bound %d+1", buf, ordered, pulls.Load(), want)
					case <-time.After(50 * time.Millisecond): // detection window only
					}
					return stage.ErrStop
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
	}
	for _, n := range []int{-1, math.MinInt} {
		if r35Panics(func() { stage.Buffer(n) }) == nil {
			t.Errorf("Buffer(%d) did not panic", n)
		}
	}
}

// Doc (Workers): "Add Buffer(1) ... the stage's function may then wait for
// its consumer". Over a slice (the fused path's home), item 1's call waits
// until the sink has taken item 0.
func TestReview35BufferWaitForConsumer(t *testing.T) {
	for _, w := range []int{1, 2, 0} {
		took0 := make(chan struct{})
		s := stage.Map(source.Slice(ints(3)), func(ctx context.Context, x int) (int, error) {
			if x == 1 {
				select {
				case <-took0:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
			return x, nil
		}, stage.Workers(w), stage.Buffer(1), stage.Ordered())
		ctx, cancel := context.WithTimeout(context.Background(), r35Watchdog)
		var got []int
		r35Run(t, func() {
			err := sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				got = append(got, v)
				if v == 0 {
					close(took0)
				}
				return nil
			})
			if err != nil {
				t.Errorf("w=%d: %v", w, err)
			}
		})
		cancel()
		if fmt.Sprint(got) != "[0 1 2]" {
			t.Errorf("w=%d: %v", w, got)
		}
	}
}

// Doc (Name): unnamed stages are numbered "in the order a run opens them,
// upstream first", "named or not", "the same pipeline gets the same names in
// every run"; Name panics if name is empty; a Name may be reused.
func TestReview35Names(t *testing.T) {
	o := &r35Names{}
	ctx := stage.Observe(context.Background(), o)
	nm := stage.Name("mine")
	var s stage.Stream[int] = source.Slice(ints(4))
	s = stage.Map(s, double)
	s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, nm)
	s = stage.Unbatch(stage.Batch(s, 2, 0))
	s = stage.FlatMap(s, func(_ context.Context, x int) ([]int, error) { return []int{x}, nil })
	s = stage.Apply(s, func(_ context.Context, x int, emit func(int) bool) error { emit(x); return nil }, nm)
	tasks := stage.Map(s, func(_ context.Context, x int) (func(context.Context) (int, error), error) {
		return func(context.Context) (int, error) { return x, nil }, nil
	})
	c := stage.Concurrent(tasks)
	for run := 0; run < 3; run++ {
		r35Run(t, func() {
			if n, err := sink.Count(ctx, c); err != nil || n != 4 {
				t.Error(n, err)
			}
		})
	}
	var names []string
	for _, i := range o.get() {
		names = append(names, i.Kind+":"+i.Name)
	}
	one := "[map:map#1 filter:mine unbatch:unbatch#3 flatmap:flatmap#4 apply:mine map:map#6 concurrent:concurrent#7]"
	want := "[" + one[1:len(one)-1] + " " + one[1:len(one)-1] + " " + one[1:len(one)-1] + "]"
	if fmt.Sprint(names) != want {
		t.Errorf("names %v\nwant %s", names, want)
	}
	if r35Panics(func() { stage.Name("") }) == nil {
		t.Error("Name(\"\") did not panic")
	}
}

// Errors carry the name the observer saw. (The first Map has one worker,
// so that its outputs keep their input's order and 2 is the second Map's
// item 1: with more, completion order decides, and a loaded machine made 2
// its item 2 once in a shuffled run.)
func TestReview35NameInError(t *testing.T) {
	bad := errors.New("bad")
	s := stage.Map(stage.Map(source.Slice(ints(3)), double, stage.Workers(1)), func(_ context.Context, x int) (int, error) {
		if x == 2 {
			return 0, bad
		}
		return x, nil
	}, stage.Workers(1))
	var err error
	r35Run(t, func() { _, err = sink.Slice(context.Background(), s) })
	var e *stage.Error
	if !errors.As(err, &e) || e.Stage != "map#2" || e.Index != 1 || e.Input != 2 {
		t.Errorf("err %v (%+v), want map#2 index 1 input 2", err, e)
	}
}

// Names in a Merge are the same in every run, whichever branch is opened
// first: "the same pipeline gets the same names in every run", and unnamed
// stages never share one.
func TestReview35NamesMergeStable(t *testing.T) {
	var ins []stage.Stream[int]
	for i := 0; i < 6; i++ {
		ins = append(ins, stage.Map(stage.Map(source.Slice(ints(3)), double), double))
	}
	m := stage.Map(stage.Merge(ins...), double)
	var first string
	for run := 0; run < 20; run++ {
		o := &r35Names{}
		r35Run(t, func() {
			if _, err := sink.Count(stage.Observe(context.Background(), o), m); err != nil {
				t.Error(err)
			}
		})
		seen := map[string]bool{}
		var names []string
		for _, i := range o.get() {
			if seen[i.Name] {
				t.Errorf("run %d: two stages named %q", run, i.Name)
			}
			seen[i.Name] = true
			names = append(names, i.Name)
		}
		if run == 0 {
			first = fmt.Sprint(names)
		} else if fmt.Sprint(names) != first {
			t.Errorf("run %d names %v, first run %s", run, names, first)
		}
	}
}
