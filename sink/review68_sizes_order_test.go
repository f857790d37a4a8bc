package sink_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Hostile sizes against README promises: "Workers(n) runs at most n calls
// at once" (any n), "memory is bounded by the configuration" (Ordered:
// 2×workers+buffer, which overflows int here), "the slice is made with room
// for that many values before the run (at most 4096 values and 64 KiB)",
// "a large size costs memory only when batches fill up", "the first eight"
// forwarded errors, Retry's backoff "capped at 64·backoff and at the
// longest time.Duration". Each in a child: an overflow may crash or hang.
func TestReview68HostileSizes(t *testing.T) {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	ctx := context.Background()
	type sc struct {
		run   func() (int, error)
		want  int
		check func(err error) bool
	}
	ok := func(err error) bool { return err == nil }
	scenarios := map[string]sc{
		"ordered maxint workers and buffer": {func() (int, error) {
			return sink.Count(ctx, stage.Map(source.Slice(r68Ints(100)), id, stage.Workers(math.MaxInt), stage.Buffer(math.MaxInt), stage.Ordered()))
		}, 100, ok},
		"ordered maxint workers, unknown length": {func() (int, error) {
			var p atomic.Int64
			return sink.Count(ctx, stage.Map(r68FuncSource(100, &p), id, stage.Workers(math.MaxInt), stage.Ordered()))
		}, 100, ok},
		"ordered maxint/2 buffer": {func() (int, error) {
			return sink.Count(ctx, stage.Map(source.Slice(r68Ints(100)), id, stage.Workers(4), stage.Buffer(math.MaxInt/2), stage.Ordered()))
		}, 100, ok},
		"maxint buffer": {func() (int, error) {
			var p atomic.Int64
			return sink.Count(ctx, stage.Map(r68FuncSource(100, &p), id, stage.Workers(3), stage.Buffer(math.MaxInt)))
		}, 100, ok},
		"maxint workers keyby": {func() (int, error) {
			return sink.Count(ctx, stage.Map(source.Slice(r68Ints(100)), id, stage.Workers(math.MaxInt), stage.KeyBy(func(v int) int { return v % 2 })))
		}, 100, ok},
		"maxint workers apply ordered": {func() (int, error) {
			return sink.Count(ctx, stage.Apply(source.Slice(r68Ints(10)), func(_ context.Context, v int, emit func(int) bool) error {
				for k := range 50 {
					emit(k)
				}
				return nil
			}, stage.Workers(math.MaxInt), stage.Ordered()))
		}, 500, ok},
		"maxint batch": {func() (int, error) {
			n := 0
			err := sink.ForEach(ctx, stage.Batch(source.Slice(r68Ints(10)), math.MaxInt, 0), func(_ context.Context, b []int) error {
				n += len(b)
				return nil
			})
			return n, err
		}, 10, ok},
		"slice over a huge indexed, failing early": {func() (int, error) {
			vals, err := sink.Slice(ctx, stage.Map(stage.Indexed(math.MaxInt, func(i int) int { return i }), func(_ context.Context, v int) (int, error) {
				if v == 1000 {
					return 0, r68ErrBoom
				}
				return v, nil
			}, stage.Workers(1)))
			if cap(vals) > 1<<14 {
				return -1, fmt.Errorf("capacity %d", cap(vals))
			}
			// "the values received before it ended": items 0..998; item 999
			// too, unless slow calls (under load) gave the place to a
			// goroutine of the stage, whose output the failure at item 1000
			// may then drop, as in the scenario below.
			if n := len(vals); n == 999 || n == 1000 {
				return 1000, err
			}
			return len(vals), err
		}, 1000, func(err error) bool { return errors.Is(err, r68ErrBoom) }},
		"slice of big values over a huge indexed": {func() (int, error) {
			type big [1 << 12]byte
			vals, err := sink.Slice(ctx, stage.Map(stage.Indexed(math.MaxInt, func(i int) int { return i }), func(_ context.Context, v int) (big, error) {
				if v == 3 {
					return big{}, r68ErrBoom
				}
				return big{}, nil
			}, stage.Workers(1)))
			if cap(vals)*len(big{}) > 64<<10 {
				return -1, fmt.Errorf("capacity %d values of 4 KiB", cap(vals))
			}
			// "the values received before it ended": items 0 and 1 (the
			// sequential path hands them over itself); item 2 too, unless
			// two slow calls (4 KiB copies on a loaded machine) gave the
			// place to a goroutine of the stage, whose queued output the
			// failure at item 3 may then drop (1 run in a shuffled -race
			// suite run under load).
			if n := len(vals); n == 2 || n == 3 {
				return 3, err
			}
			return len(vals), err
		}, 3, func(err error) bool { return errors.Is(err, r68ErrBoom) }},
		"first over a huge indexed": {func() (int, error) {
			// Unordered: which item comes first is up to the run; any will do.
			v, ok, err := sink.First(ctx, stage.Map(stage.Indexed(math.MaxInt, func(i int) int { return i + 1 }), id, stage.Workers(math.MaxInt)))
			if !ok || v < 1 {
				return -1, err
			}
			return 1, err
		}, 1, ok},
		"10000 forwarded": {func() (int, error) {
			n, err := sink.Count(ctx, stage.Map(source.Slice(r68Ints(10000)), func(context.Context, int) (int, error) { return 0, r68ErrBoom },
				stage.OnError(stage.Forward)))
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != 10000 || len(fe.Sample) != 8 {
				return -1, err
			}
			return n, nil
		}, 0, ok},
		"budget maxint": {func() (int, error) {
			return sink.Count(ctx, stage.Map(source.Slice(r68Ints(1000)), r68FailEvery3, stage.OnError(stage.Budget(math.MaxInt, nil))))
		}, 666, ok},
		"flatmap 100000 outputs": {func() (int, error) {
			return sink.Count(ctx, stage.FlatMap(source.Slice(r68Ints(2)), func(context.Context, int) ([]int, error) { return make([]int, 100000), nil }, stage.Workers(2), stage.Ordered()))
		}, 200000, ok},
		"merge of 500": {func() (int, error) {
			ins := make([]stage.Stream[int], 500)
			for i := range ins {
				ins[i] = source.Slice(r68Ints(3))
			}
			return sink.Count(ctx, stage.Merge(ins...))
		}, 1500, ok},
		"tee of 300": {func() (int, error) {
			b := stage.Tee(source.Slice(r68Ints(20)), 300)
			return sink.Count(ctx, stage.Merge(b...))
		}, 6000, ok},
		"timeout maxint64": {func() (int, error) {
			return sink.Count(ctx, stage.Map(source.Slice(r68Ints(10)), id, stage.Timeout(math.MaxInt64)))
		}, 10, ok},
		"ratelimit huge": {func() (int, error) {
			return sink.Count(ctx, stage.Map(source.Slice(r68Ints(10)), id, stage.RateLimit(math.MaxFloat64, math.MaxInt)))
		}, 10, ok},
		"retry maxint attempts, no backoff": {func() (int, error) {
			var calls atomic.Int32
			return sink.Count(ctx, stage.Map(source.Slice(r68Ints(3)), func(_ context.Context, v int) (int, error) {
				if calls.Add(1) < 50 {
					return 0, r68ErrBoom
				}
				return v, nil
			}, stage.Workers(1), stage.Retry(math.MaxInt, 0)))
		}, 3, ok},
		"empty everything": {func() (int, error) {
			a, err1 := sink.Count(ctx, stage.Merge[int]())
			b, err2 := sink.Count(ctx, stage.Unbatch(stage.Batch(source.Slice[int](nil), 3, time.Second)))
			c, err3 := sink.Count(ctx, stage.Merge(stage.Tee(stage.Indexed(0, func(int) int { return 0 }), 3)...))
			v, err4 := sink.Slice(ctx, stage.Map(source.Slice([]int{}), id, stage.Workers(math.MaxInt), stage.Ordered()))
			if v != nil {
				return -1, fmt.Errorf("Slice without any value returned %#v, want a nil slice", v)
			}
			return a + b + c, errors.Join(err1, err2, err3, err4)
		}, 0, ok},
	}
	runcheck.InChildTest(t, func(t *testing.T) {
		for name, sc := range scenarios {
			t.Run(name, func(t *testing.T) {
				var n int
				var err error
				runcheck.Run(t, name, func() { n, err = sc.run() })
				if n != sc.want || !sc.check(err) {
					t.Errorf("%d, %v; want %d", n, err, sc.want)
				}
			})
		}
	})
}

// Retry doc: the backoff d = backoff·2^(n-1) is "capped at 64·backoff and
// at the longest time.Duration"; "The wait holds the worker and ends early,
// without a retry, when the run is cancelled." With a backoff near the
// longest Duration, an overflow would retry at once.
func TestReview68RetryHugeBackoffNoOverflow(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, backoff := range []time.Duration{math.MaxInt64, math.MaxInt64 / 3, time.Duration(1) << 57} {
			t.Run(fmt.Sprint(int64(backoff)), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var calls atomic.Int32
				first := make(chan struct{})
				var err error
				wait := r68Start(func() {
					_, err = sink.Count(ctx, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
						if calls.Add(1) == 1 {
							close(first)
						}
						return 0, r68ErrBoom
					}, stage.Retry(70, backoff), stage.Buffer(1)))
				})
				<-first
				r68Settle()
				if c := calls.Load(); c != 1 {
					t.Errorf("%d attempts before the cancel with a backoff of %v: the wait overflowed", c, backoff)
				}
				cancel()
				wait(t, "retry")
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err %v, want context.Canceled", err)
				}
			})
		}
	})
}

// README Guarantees, Ordering: "Completion order by default; input order
// with Ordered() or with Workers(1), kept across stages that all keep it."
// Completion is shuffled by making item i wait for item i+1 to finish
// (every other pair), where the window allows it.
func TestReview68OrderingKeptAcrossStages(t *testing.T) {
	const n = 60
	// finished[i] is closed when the first stage's call of i returned.
	mkFirst := func(finished []chan struct{}) func(context.Context, int) (int, error) {
		return func(_ context.Context, v int) (int, error) {
			if v%2 == 0 && v+1 < n {
				<-finished[v+1] // the even one finishes after the next odd one
			}
			defer close(finished[v])
			return v, nil
		}
	}
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	keep := func(_ context.Context, v int) (bool, error) { return v%5 != 0, nil }
	double := func(_ context.Context, v int) ([]int, error) { return []int{v, v}, nil }
	cases := map[string]func(f func(context.Context, int) (int, error)) stage.Stream[int]{
		"ordered map, ordered filter, workers(1) map": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Map(stage.Filter(stage.Map(source.Slice(r68Ints(n)), f, stage.Workers(4), stage.Ordered()), keep, stage.Workers(3), stage.Ordered()), id, stage.Workers(1))
		},
		"ordered flatmap after ordered map": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.FlatMap(stage.Map(source.Slice(r68Ints(n)), f, stage.Workers(2), stage.Ordered(), stage.Buffer(2)), double, stage.Workers(3), stage.Ordered())
		},
		"ordered over func source with batch": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
			var p atomic.Int64
			return stage.Unbatch(stage.Batch(stage.Map(r68FuncSource(n, &p), f, stage.Workers(3), stage.Ordered()), 7, 0))
		},
		"keyby ordered": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Map(source.Slice(r68Ints(n)), f, stage.Workers(4), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 3 }))
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			finished := make([]chan struct{}, n)
			for i := range finished {
				finished[i] = make(chan struct{})
			}
			var got []int
			var err error
			runcheck.Run(t, name, func() { got, err = sink.Slice(context.Background(), build(mkFirst(finished))) })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.IsSorted(got) {
				t.Errorf("output not in input order: %v", got)
			}
		})
	}
	// Workers(1) unordered keeps input order, through every kind of stage.
	var got []int
	s := stage.Map(stage.FlatMap(stage.Filter(source.Slice(r68Ints(200)), keep, stage.Workers(1)), double, stage.Workers(1)), id, stage.Workers(1))
	runcheck.Run(t, "workers 1", func() { got, _ = sink.Slice(context.Background(), s) })
	if !slices.IsSorted(got) || len(got) != 320 {
		t.Errorf("Workers(1) chain: %d items, sorted %v", len(got), slices.IsSorted(got))
	}
}

// README Ordering: "With KeyBy, items of one key run one at a time in input
// order while keys run in parallel". Key "a"'s first item waits until key
// "b"'s first item has started (parallel keys); per key, at most one call
// at a time, in input order.
func TestReview68KeyByOneAtATimeInOrder(t *testing.T) {
	type item struct {
		key string
		seq int
	}
	var items []item
	for i := range 30 {
		items = append(items, item{"a", i}, item{"b", i}, item{"c", i})
	}
	bStarted := make(chan struct{})
	var bOnce sync.Once
	var mu sync.Mutex
	running := map[string]int{}
	last := map[string]int{"a": -1, "b": -1, "c": -1}
	var errs []string
	f := func(_ context.Context, it item) (item, error) {
		mu.Lock()
		running[it.key]++
		if running[it.key] > 1 {
			errs = append(errs, fmt.Sprintf("two calls of key %s at once", it.key))
		}
		if it.seq != last[it.key]+1 {
			errs = append(errs, fmt.Sprintf("key %s: item %d after %d", it.key, it.seq, last[it.key]))
		}
		last[it.key] = it.seq
		mu.Unlock()
		if it.key == "b" {
			bOnce.Do(func() { close(bStarted) })
		}
		if it.key == "a" && it.seq == 0 {
			<-bStarted // keys run in parallel: b starts while a's first item runs
		}
		for range 10 {
			mu.Lock()
			_ = running[it.key] // give other workers a chance to overlap
			mu.Unlock()
		}
		mu.Lock()
		running[it.key]--
		mu.Unlock()
		return it, nil
	}
	for _, opts := range [][]stage.Option{
		{stage.Workers(4)},
		{stage.Workers(4), stage.Ordered()},
		{stage.Workers(2), stage.Buffer(3)},
	} {
		bStarted = make(chan struct{})
		bOnce = sync.Once{}
		last = map[string]int{"a": -1, "b": -1, "c": -1}
		var got []item
		var err error
		runcheck.Run(t, "keyby", func() {
			got, err = sink.Slice(context.Background(), stage.Map(source.Slice(items), f,
				append(opts, stage.KeyBy(func(it item) string { return it.key }))...))
		})
		if err != nil || len(got) != len(items) {
			t.Errorf("%d items, err %v", len(got), err)
		}
	}
	if len(errs) > 0 {
		t.Errorf("%v", errs)
	}
}

// README Ordering: "Batch keeps input order, and a forwarded error is a
// batch boundary."
func TestReview68BatchOrderAndBoundary(t *testing.T) {
	s := stage.Batch(stage.Map(source.Slice(r68Ints(12)), func(_ context.Context, v int) (int, error) {
		if v == 4 || v == 5 {
			return 0, r68ErrBoom
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward)), 3, 0)
	var got []string
	runcheck.Run(t, "batch", func() {
		for b, err := range sink.All(context.Background(), s) {
			if err != nil {
				var se *stage.Error
				errors.As(err, &se)
				got = append(got, fmt.Sprintf("err%d", se.Index))
				continue
			}
			got = append(got, fmt.Sprint(b))
		}
	})
	want := []string{"[0 1 2]", "[3]", "err4", "err5", "[6 7 8]", "[9 10 11]"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// README Guarantees: "Checked before it runs. A run opens the whole
// pipeline (observers see every stage) and checks it before any goroutine
// starts: a run that does not consume every branch of a stage.Tee fails
// with stage.ErrUnconsumedBranch before any item is taken. (stage.Until
// over some of a Tee's branches, whose source they share, panics when
// built: put it before the Tee.)"
func TestReview68CheckedBeforeItRuns(t *testing.T) {
	var c r68Counters
	b := stage.Tee(r68Counted(&c, 10), 3)
	var obs r68Observer
	ctx := stage.Observe(context.Background(), &obs)
	keep := func(context.Context, int) (bool, error) { return true, nil }
	for name, s := range map[string]stage.Stream[int]{
		"one of three":  stage.Filter(b[0], keep),
		"two of three":  stage.Merge(b[0], stage.Filter(b[2], keep)),
		"branch itself": b[1],
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			runcheck.Run(t, name, func() { _, err = sink.Slice(ctx, s) })
			if !errors.Is(err, stage.ErrUnconsumedBranch) {
				t.Errorf("err %v, want ErrUnconsumedBranch", err)
			}
			if c.nexts.Load() != 0 {
				t.Errorf("%d items taken before the check failed", c.nexts.Load())
			}
			if c.opens.Load() != c.stops.Load() {
				t.Errorf("%d opens, %d stops", c.opens.Load(), c.stops.Load())
			}
		})
	}
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("Until over one branch of a Tee did not panic when built")
			}
		}()
		b := stage.Tee(source.Slice(r68Ints(3)), 2)
		stage.Until(stage.Merge(b[0], stage.Map(source.Slice(r68Ints(2)), func(_ context.Context, v int) (int, error) { return v, nil })), stop)
	}()
	// Before the Tee, or over a stream that reads all the branches: fine.
	b2 := stage.Tee(stage.Until(source.Slice(r68Ints(3)), stop), 2)
	if n, err := sink.Count(context.Background(), stage.Merge(b2...)); n != 6 || err != nil {
		t.Errorf("Until before a Tee: %d, %v", n, err)
	}
	b3 := stage.Tee(source.Slice(r68Ints(3)), 2)
	if n, err := sink.Count(context.Background(), stage.Until(stage.Merge(b3...), stop)); n != 6 || err != nil {
		t.Errorf("Until over all branches: %d, %v", n, err)
	}
}
