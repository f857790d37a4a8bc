package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r2Gid is the calling goroutine's id.
func r2Gid() int {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	id, _ := strconv.Atoi(s[:strings.IndexByte(s, ' ')])
	return id
}

var errR2Watchdog = errors.New("review2: a call waited 10 s for what it waits for (the watchdog)")

// r2Barrier is closed once want calls are in at once.
type r2Barrier struct {
	in   atomic.Int32
	want int32
	all  chan struct{}
	once sync.Once
}

func newR2Barrier(want int) *r2Barrier {
	return &r2Barrier{want: int32(want), all: make(chan struct{})}
}

// wait enters the barrier and waits until want calls are in (or the
// watchdog).
func (b *r2Barrier) wait() error {
	if b.in.Add(1) >= b.want {
		b.once.Do(func() { close(b.all) })
	}
	select {
	case <-b.all:
		return nil
	case <-time.After(10 * time.Second): // watchdog only
		return errR2Watchdog
	}
}

// TestFuseMinNKAtOnce: Workers(n) over a source.Slice of k items
// runs min(n, k) calls at once ("with enough input exactly n"): every call
// waits until min(n, k) calls are in. Map, Filter, FlatMap and Concurrent
// (fusable stages), for the sink, for a consumer of several goroutines
// (Apply(Workers(4))), and nested.
func TestFuseMinNKAtOnce(t *testing.T) {
	reps := 10
	if testing.Short() {
		reps = 3
	}
	shapes := []struct {
		name  string
		build func(k, n int, f func(context.Context, int) (int, error)) stage.Stream[int]
	}{
		{"Map", func(k, n int, f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Map(source.Slice(ints(k)), f, stage.Workers(n))
		}},
		{"Filter", func(k, n int, f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Filter(source.Slice(ints(k)), func(ctx context.Context, x int) (bool, error) {
				_, err := f(ctx, x)
				return true, err
			}, stage.Workers(n))
		}},
		{"FlatMap", func(k, n int, f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.FlatMap(source.Slice(ints(k)), func(ctx context.Context, x int) ([]int, error) {
				v, err := f(ctx, x)
				return []int{v}, err
			}, stage.Workers(n))
		}},
		{"Concurrent", func(k, n int, f func(context.Context, int) (int, error)) stage.Stream[int] {
			tasks := make([]func(context.Context) (int, error), k)
			for i := range tasks {
				tasks[i] = func(ctx context.Context) (int, error) { return f(ctx, i) }
			}
			return stage.Concurrent(source.Slice(tasks), stage.Workers(n))
		}},
		{"Apply(W4) over Map", func(k, n int, f func(context.Context, int) (int, error)) stage.Stream[int] {
			m := stage.Map(source.Slice(ints(k)), f, stage.Workers(n))
			return stage.Apply(m, func(_ context.Context, x int, emit func(int) bool) error { emit(x); return nil }, stage.Workers(4))
		}},
		{"Map(W4) over Map (nested fused)", func(k, n int, f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Map(stage.Map(source.Slice(ints(k)), f, stage.Workers(n)), double, stage.Workers(4))
		}},
		{"Map over Map(W4) (f outside)", func(k, n int, f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Map(stage.Map(source.Slice(ints(k)), double, stage.Workers(4)), f, stage.Workers(n))
		}},
	}
	for _, sh := range shapes {
		for _, n := range []int{2, 3, 4, 8} {
			for k := 1; k <= 6; k++ {
				for rep := range reps {
					b := newR2Barrier(min(n, k))
					s := sh.build(k, n, func(_ context.Context, x int) (int, error) { return x, b.wait() })
					var got int
					var err error
					if !r2Guard(t, sh.name, nil, func() { got, err = sink.Count(context.Background(), s) }) {
						return
					}
					if err != nil || got != k {
						t.Fatalf("%s, Workers(%d), %d items, rep %d: %d items, err %v; want %d calls at once and %d items",
							sh.name, n, k, rep, got, err, min(n, k), k)
					}
				}
			}
		}
	}
}

// TestFuseOneItemInConsumer: a run of exactly one item calls the
// fused stage's function in its consumer's goroutine (the sink's, or the
// consuming stage's worker's).
func TestFuseOneItemInConsumer(t *testing.T) {
	for rep := range 20 {
		for _, n := range []int{4, 8} { // fused under Apply(W4) only if n >= 4 (see Stream.fuse)
			var fg atomic.Int64
			f := func(_ context.Context, x int) (int, error) { fg.Store(int64(r2Gid())); return x, nil }
			// The sink.
			var sg int
			err := stage.Run(context.Background(), stage.Map(source.Slice([]int{7}), f, stage.Workers(n)),
				func(context.Context, int, error) error { sg = r2Gid(); return nil })
			if err != nil || int(fg.Load()) != sg {
				t.Fatalf("rep %d, Workers(%d): err %v; f ran in goroutine %d, the sink is %d", rep, n, err, fg.Load(), sg)
			}
			// A consuming stage of several goroutines.
			var ag atomic.Int64
			a := stage.Apply(stage.Map(source.Slice([]int{7}), f, stage.Workers(n)), func(_ context.Context, x int, emit func(int) bool) error {
				ag.Store(int64(r2Gid()))
				emit(x)
				return nil
			}, stage.Workers(4))
			if _, err := sink.Slice(context.Background(), a); err != nil || fg.Load() != ag.Load() {
				t.Fatalf("rep %d, Workers(%d) under Apply(W4): err %v; f ran in goroutine %d, the Apply's call in %d", rep, n, err, fg.Load(), ag.Load())
			}
		}
	}
}

// TestFuseOneItemByLenInConsumer: the Workers doc: a stage whose input is
// known to hold a single item (its Stream.Len is 1) calls its function in
// its consumer's goroutine, whatever the input is built of.
func TestFuseOneItemByLenInConsumer(t *testing.T) {
	keep := func(_ context.Context, x int) (int, error) { return x, nil }
	for rep := range 20 {
		var fg atomic.Int64
		f := func(_ context.Context, x int) (int, error) { fg.Store(int64(r2Gid())); return x, nil }
		for name, in := range map[string]stage.Stream[int]{
			"Map over Map over a slice": stage.Map(source.Slice([]int{7}), keep, stage.Workers(4)),
			"Map over Until":            stage.Until(source.Slice([]int{7}), context.Background()),
			"Map over Indexed":          stage.Indexed(1, func(int) int { return 7 }),
		} {
			if in.Len() != 1 {
				t.Fatalf("%s: Len %d, want 1", name, in.Len())
			}
			var sg int
			err := stage.Run(context.Background(), stage.Map(in, f, stage.Workers(4)),
				func(context.Context, int, error) error { sg = r2Gid(); return nil })
			if err != nil || int(fg.Load()) != sg {
				t.Fatalf("rep %d, %s: err %v; f ran in goroutine %d, the sink is %d", rep, name, err, fg.Load(), sg)
			}
		}
	}
}

// TestFuseWaitsForSink: with Buffer(1), a stage's function may wait
// for the sink to receive another item's output (Workers' doc: without a
// Buffer, a consumer goroutine may be inside a call and such a function
// waits for ever). Item i waits until the sink has received the output of
// item i-1 (a chain; two workers are enough for it). k = 2..5, and longer
// runs whose first items are cheap (without the Buffer, the stage's
// goroutines would give their places to the consumer). Map, FlatMap and
// Filter; Workers 2..4.
func TestFuseWaitsForSink(t *testing.T) {
	reps := 20
	if testing.Short() {
		reps = 5
	}
	type cfg struct{ k, cheap int }
	cfgs := []cfg{{2, 0}, {3, 0}, {4, 0}, {5, 0}, {5, 3}, {60, 50}, {300, 290}}
	kinds := []string{"Map", "FlatMap", "Filter"}
	for _, c := range cfgs {
		for _, n := range []int{2, 3, 4} {
			for _, kind := range kinds {
				for rep := range reps {
					var sinkG atomic.Int64
					seen := make([]chan struct{}, c.k)
					for i := range seen {
						seen[i] = make(chan struct{})
					}
					f := func(_ context.Context, x int) (int, error) {
						if x > c.cheap && x > 0 {
							select {
							case <-seen[x-1]:
							case <-time.After(10 * time.Second): // watchdog only
								return 0, fmt.Errorf("item %d (called in the sink's goroutine: %v): %w", x, int64(r2Gid()) == sinkG.Load(), errR2Watchdog)
							}
						}
						return x, nil
					}
					var s stage.Stream[int]
					switch kind {
					case "Map":
						s = stage.Map(source.Slice(ints(c.k)), f, stage.Workers(n), stage.Buffer(1))
					case "FlatMap":
						s = stage.FlatMap(source.Slice(ints(c.k)), func(ctx context.Context, x int) ([]int, error) {
							v, err := f(ctx, x)
							return []int{v}, err
						}, stage.Workers(n), stage.Buffer(1))
					case "Filter":
						s = stage.Filter(source.Slice(ints(c.k)), func(ctx context.Context, x int) (bool, error) {
							_, err := f(ctx, x)
							return true, err
						}, stage.Workers(n), stage.Buffer(1))
					}
					got := 0
					var err error
					if !r2Guard(t, kind, nil, func() {
						sinkG.Store(int64(r2Gid()))
						err = stage.Run(context.Background(), s, func(_ context.Context, v int, _ error) error {
							got++
							close(seen[v])
							return nil
						})
					}) {
						return
					}
					if err != nil || got != c.k {
						t.Fatalf("%s, Workers(%d), %d items (%d cheap), rep %d: %d items, err %v",
							kind, n, c.k, c.cheap, rep, got, err)
					}
				}
			}
		}
	}
}

// TestFuseSlowCallInConsumer: Workers(2) and Buffer(1) over a
// slice: the first items are cheap (without the Buffer, a goroutine of the
// stage would give its place to the sink), then the calls wait until two of
// them run at once. "With enough input and a consumer that keeps up exactly
// n" calls run at once.
func TestFuseSlowCallInConsumer(t *testing.T) {
	runs := 150 // stops at the first failure
	if testing.Short() {
		runs = 20
	}
	const cheap, k = 400, 420
	for run := range runs {
		b := newR2Barrier(2)
		s := stage.Map(source.Slice(ints(k)), func(_ context.Context, x int) (int, error) {
			if x < cheap {
				return x, nil
			}
			return x, b.wait()
		}, stage.Workers(2), stage.Buffer(1))
		var got int
		var err error
		if !r2Guard(t, "slow call", nil, func() { got, err = sink.Count(context.Background(), s) }) {
			return
		}
		if err != nil || got != k {
			t.Fatalf("run %d: %d items, err %v: two calls never ran at once", run, got, err)
		}
	}
}

// r2AckSource is an AckSource (NeverWaits: a fusable input of unknown size)
// of the items 0..n-1 that counts each item's Done calls.
type r2AckSource struct {
	mu   sync.Mutex
	nils []int
	errs []error
}

type r2Ack struct {
	s  *r2AckSource
	id int
}

func (a r2Ack) Done(err error) {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if err != nil {
		a.s.errs = append(a.s.errs, err)
		return
	}
	a.s.nils[a.id]++
}

func (s *r2AckSource) stream(n int) stage.Stream[int] {
	s.nils = make([]int, n)
	return stage.NeverWaits(stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i >= n {
				return 0, nil, io.EOF
			}
			i++
			return i - 1, r2Ack{s, i - 1}, nil
		}, nil
	}))
}

// check reports items not told Done(nil) exactly once.
func (s *r2AckSource) check() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var bad []string
	for id, c := range s.nils {
		if c != 1 {
			bad = append(bad, fmt.Sprintf("item %d: %d Done(nil)", id, c))
		}
	}
	if len(s.errs) > 0 {
		bad = append(bad, fmt.Sprintf("%d Done(err), first %v", len(s.errs), s.errs[0]))
	}
	if len(bad) > 5 {
		bad = append(bad[:5], fmt.Sprintf("... (%d in all)", len(bad)))
	}
	return strings.Join(bad, "; ")
}

// TestFuseAckExactlyOnce: over a NeverWaits AckSource, fused stages
// (with the sink, under an Apply of several goroutines, nested, serial)
// deliver every output exactly once and tell every item Done(nil) exactly
// once.
func TestFuseAckExactlyOnce(t *testing.T) {
	reps := 8
	if testing.Short() {
		reps = 2
	}
	cheapOrNot := func(_ context.Context, x int) (int, error) {
		if x%50 == 49 {
			time.Sleep(50 * time.Microsecond) // a slow call now and then: places go back to goroutines
		}
		return x, nil
	}
	shapes := []struct {
		name  string
		per   func(x int) []int // the outputs of item x
		build func(s stage.Stream[int]) stage.Stream[int]
	}{
		{"Map W4", func(x int) []int { return []int{x} }, func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, cheapOrNot, stage.Workers(4))
		}},
		{"Map W1", func(x int) []int { return []int{x} }, func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, cheapOrNot, stage.Workers(1))
		}},
		{"Filter W3 (even)", func(x int) []int {
			if x%2 == 0 {
				return []int{x}
			}
			return nil
		}, func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Filter(s, func(ctx context.Context, x int) (bool, error) {
				_, err := cheapOrNot(ctx, x)
				return x%2 == 0, err
			}, stage.Workers(3))
		}},
		{"FlatMap W4 (x3)", func(x int) []int { return []int{x, x, x} }, func(s stage.Stream[int]) stage.Stream[int] {
			return stage.FlatMap(s, func(ctx context.Context, x int) ([]int, error) {
				_, err := cheapOrNot(ctx, x)
				return []int{x, x, x}, err
			}, stage.Workers(4))
		}},
		{"Apply(W4) over Map(W4)", func(x int) []int { return []int{x} }, func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Apply(stage.Map(s, cheapOrNot, stage.Workers(4)), func(_ context.Context, x int, emit func(int) bool) error {
				emit(x)
				return nil
			}, stage.Workers(4))
		}},
		{"Map(W3) over Map(W4)", func(x int) []int { return []int{x} }, func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.Map(s, cheapOrNot, stage.Workers(4)), cheapOrNot, stage.Workers(3))
		}},
		{"FlatMap(W2) over Filter(W4) over Map(W4)", func(x int) []int {
			if x%3 == 0 {
				return nil
			}
			return []int{x, x}
		}, func(s stage.Stream[int]) stage.Stream[int] {
			f := stage.Filter(stage.Map(s, cheapOrNot, stage.Workers(4)), func(_ context.Context, x int) (bool, error) { return x%3 != 0, nil }, stage.Workers(4))
			return stage.FlatMap(f, func(_ context.Context, x int) ([]int, error) { return []int{x, x}, nil }, stage.Workers(2))
		}},
	}
	for _, sh := range shapes {
		for _, n := range []int{1, 2, 5, 300} {
			for rep := range reps {
				src := &r2AckSource{}
				s := sh.build(src.stream(n))
				var got []int
				var err error
				if !r2Guard(t, sh.name, nil, func() { got, err = sink.Slice(context.Background(), s) }) {
					return
				}
				count := map[int]int{}
				for _, v := range got {
					count[v]++
				}
				var bad []string
				for x := range n {
					if w := len(sh.per(x)); count[x] != w {
						bad = append(bad, fmt.Sprintf("value %d: %d outputs, want %d", x, count[x], w))
					}
					delete(count, x)
				}
				if len(count) > 0 {
					bad = append(bad, fmt.Sprintf("unexpected values %v", count))
				}
				if len(bad) > 5 {
					bad = bad[:5]
				}
				if err != nil || len(bad) > 0 {
					t.Fatalf("%s, %d items, rep %d: err %v; %s", sh.name, n, rep, err, strings.Join(bad, "; "))
				}
				if msg := src.check(); msg != "" {
					t.Fatalf("%s, %d items, rep %d: acknowledgements: %s", sh.name, n, rep, msg)
				}
			}
		}
	}
}

// TestFuseStartsAtMostKGoroutines: the Workers doc: a stage whose input
// holds k items starts at most k goroutines of its own. Both calls of a
// Workers(8) stage over 2 items wait until both are in; meanwhile the
// process has at most 2 goroutines more than before the run.
func TestFuseStartsAtMostKGoroutines(t *testing.T) {
	for range 20 {
		before := runtime.NumGoroutine()
		var in atomic.Int32
		all := make(chan struct{})
		var extra atomic.Int64
		s := stage.Map(source.Slice([]int{1, 2}), func(_ context.Context, x int) (int, error) {
			if in.Add(1) == 2 {
				extra.Store(int64(runtime.NumGoroutine() - before))
				close(all)
			}
			select {
			case <-all:
			case <-time.After(10 * time.Second): // a watchdog: two calls must run at once
				return 0, errors.New("the second call never came")
			}
			return x, nil
		}, stage.Workers(8))
		if _, err := sink.Slice(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		if e := extra.Load(); e > 2 {
			t.Fatalf("%d goroutines more than before the run while its 2 items ran, want at most 2", e)
		}
	}
}
