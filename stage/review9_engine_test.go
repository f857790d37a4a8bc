package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review9Barrier is a cyclic barrier of n parties: each call of wait
// returns once n calls of the same round have arrived, or false when ctx
// ended first.
type review9Barrier struct {
	mu      sync.Mutex
	n       int
	arrived int
	round   chan struct{}
}

func newReview9Barrier(n int) *review9Barrier {
	return &review9Barrier{n: n, round: make(chan struct{})}
}

func (b *review9Barrier) wait(ctx context.Context) bool {
	b.mu.Lock()
	round := b.round
	b.arrived++
	if b.arrived == b.n {
		b.arrived = 0
		b.round = make(chan struct{})
		close(round)
	}
	b.mu.Unlock()
	select {
	case <-round:
		return true
	case <-ctx.Done():
		return false
	}
}

// review9Layouts are the options of a stage that keeps its workers as
// goroutines of its own (the path whose goroutine count the change bounds
// by the input's known length).
func review9Layouts() map[string][]stage.Option {
	return map[string][]stage.Option{
		"ordered":         {stage.Ordered()},
		"keyby":           {stage.KeyBy(func(x int) int { return x })},
		"buffer":          {stage.Buffer(1)},
		"ordered+keyby":   {stage.Ordered(), stage.KeyBy(func(x int) int { return x })},
		"ordered+buffer":  {stage.Ordered(), stage.Buffer(3)},
		"keyby+buffer":    {stage.KeyBy(func(x int) int { return x }), stage.Buffer(2)},
		"ordered+retry":   {stage.Ordered(), stage.Retry(2, 0)},
		"buffer+forward":  {stage.Buffer(1), stage.OnError(stage.Forward)},
		"ordered+timeout": {stage.Ordered(), stage.Timeout(time.Hour)},
	}
}

// review9Inputs are inputs of known length k (Stream.Len == k) built in
// every way that keeps the length known: a bare Indexed source, Map and
// Concurrent over it (fused upstream stages of more workers than k, so that
// the downstream stage, now opening its input for k consumers, gets a fused
// input where it used to get a plain one; of fewer workers; ordered), and
// Until over them.
func review9Inputs(k int) map[string]func() stage.Stream[int] {
	id := func(_ context.Context, x int) (int, error) { return x, nil }
	bg := context.Background()
	return map[string]func() stage.Stream[int]{
		"indexed":          func() stage.Stream[int] { return source.Slice(ints(k)) },
		"map-fused-wide":   func() stage.Stream[int] { return stage.Map(source.Slice(ints(k)), id, stage.Workers(k+1)) },
		"map-fused-narrow": func() stage.Stream[int] { return stage.Map(source.Slice(ints(k)), id, stage.Workers(2)) },
		"map-ordered": func() stage.Stream[int] {
			return stage.Map(source.Slice(ints(k)), id, stage.Workers(k+3), stage.Ordered())
		},
		"map-serial":    func() stage.Stream[int] { return stage.Map(source.Slice(ints(k)), id, stage.Workers(1)) },
		"until-indexed": func() stage.Stream[int] { return stage.Until(source.Slice(ints(k)), bg) },
		"until-map-fused": func() stage.Stream[int] {
			return stage.Until(stage.Map(source.Slice(ints(k)), id, stage.Workers(k+1)), bg)
		},
		"map-over-until": func() stage.Stream[int] {
			return stage.Map(stage.Until(source.Slice(ints(k)), bg), id, stage.Workers(k+2))
		},
		"map-of-map-fused": func() stage.Stream[int] {
			return stage.Map(stage.Map(source.Slice(ints(k)), id, stage.Workers(k+1)), id, stage.Workers(k+1))
		},
		"map-unlimited": func() stage.Stream[int] { return stage.Map(source.Slice(ints(k)), id, stage.Workers(-1)) },
		"concurrent-tasks": func() stage.Stream[int] {
			tasks := stage.Map(source.Slice(ints(k)), func(_ context.Context, x int) (func(context.Context) (int, error), error) {
				return func(context.Context) (int, error) { return x, nil }, nil
			}, stage.Workers(k+1))
			return stage.Concurrent(tasks, stage.Workers(k+1))
		},
	}
}

// The change starts min(n, k) goroutines for a stage of Workers(n) over an
// input of known length k, and opens its input for that many consumers.
// If the length were not an upper bound in some composition, or a handle
// opened on a fused input never pulled, fewer than k calls could run at
// once: a barrier of all k calls (the Workers doc's "exactly n" with
// enough input) would hang. Every input of known length × every layout that
// keeps its own goroutines, with Workers(n) far above k and n == k.
func TestReview9BarrierOfAllItemsOverKnownLength(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const k = 5
		for inName, in := range review9Inputs(k) {
			for layName, lay := range review9Layouts() {
				if inName == "map-fused-narrow" && strings.Contains(layName, "keyby") {
					continue // a KeyBy over a narrower fused stage: see TestReview9KeyByOverNarrowerFusedUpstreamRunsAllWorkers
				}
				for _, workers := range []int{k, 64} {
					name := fmt.Sprintf("%s/%s/workers=%d", inName, layName, workers)
					if got := in().Len(); got != k {
						t.Fatalf("%s: Len = %d, want %d", name, got, k)
					}
					b := newReview9Barrier(k)
					f := func(ctx context.Context, x int) (int, error) {
						if !b.wait(ctx) {
							return 0, ctx.Err()
						}
						return x, nil
					}
					var got []int
					var err error
					runcheck.Run(t, name, func() {
						got, err = sink.Slice(context.Background(), stage.Map(in(), f, append(lay, stage.Workers(workers))...))
					})
					if err != nil || len(got) != k {
						t.Fatalf("%s: Slice = %v, %v; want %d items", name, got, err, k)
					}
				}
			}
		}
	})
}

// Forwarded errors count as items of a known-length input: a Forward Map
// over k items whose every call fails gives k forwarded errors, and the
// stage after it (k goroutines) passes them all through, with its own
// barrier over the items that are values.
func TestReview9ForwardedErrorsOverKnownLength(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const k = 6
		boom := errors.New("boom")
		up := stage.Map(source.Slice(ints(k)), func(_ context.Context, x int) (int, error) {
			if x%2 == 1 {
				return 0, boom
			}
			return x, nil
		}, stage.Workers(8), stage.OnError(stage.Forward))
		if up.Len() != k {
			t.Fatalf("Len = %d, want %d", up.Len(), k)
		}
		b := newReview9Barrier(k / 2) // the values' calls all run at once
		f := func(ctx context.Context, x int) (int, error) {
			if !b.wait(ctx) {
				return 0, ctx.Err()
			}
			return x, nil
		}
		vals, errs := 0, 0
		runcheck.Run(t, "forwarded", func() {
			for v, err := range sink.All(context.Background(), stage.Map(up, f, stage.Workers(64), stage.Ordered())) {
				var se *stage.Error
				switch {
				case err == nil:
					if v%2 != 0 {
						t.Errorf("value %d should have failed", v)
					}
					vals++
				case errors.As(err, &se) && errors.Is(err, boom):
					errs++
				default:
					t.Fatalf("unexpected error %v", err)
				}
			}
		})
		if vals != k/2 || errs != k/2 {
			t.Fatalf("%d values and %d forwarded errors, want %d and %d", vals, errs, k/2, k/2)
		}
	})
}

// A non-fused stage of many workers over a fused Map of one item now opens
// it for one consumer (min(n, 1)): its single worker takes the Map's only
// place and calls the Map's function itself. The run still delivers, with
// acknowledgement-free items and with a forwarded error, and leaks nothing.
func TestReview9SingleItemUpstreamRunsInDownstreamWorker(t *testing.T) {
	boom := errors.New("boom")
	for _, fail := range []bool{false, true} {
		for layName, lay := range review9Layouts() {
			name := fmt.Sprintf("%s/fail=%v", layName, fail)
			up := stage.Map(source.Slice([]int{7}), func(_ context.Context, x int) (int, error) {
				if fail {
					return 0, boom
				}
				return x, nil
			}, stage.Workers(4), stage.OnError(stage.Forward))
			var got []int
			var err error
			runcheck.Run(t, name, func() {
				got, err = sink.Slice(context.Background(), stage.Map(up, double, append(lay, stage.Workers(1000))...))
			})
			switch {
			case fail:
				var se *stage.Error
				if !errors.As(err, &se) || !errors.Is(err, boom) {
					t.Errorf("%s: err = %v, want the forwarded *stage.Error wrapping boom", name, err)
				}
			case err != nil || len(got) != 1 || got[0] != 14:
				t.Errorf("%s: Slice = %v, %v; want [14]", name, got, err)
			}
		}
	}
}

// Workers(1<<30) and Buffer(1<<30) over every known-length input of three
// items: no layout sizes anything by n or the buffer up front (in a child
// process: if one did, the process would die).
func TestReview9HugeWorkersAndBufferOverComposedSmallInputs(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const k = 3
		for inName, in := range review9Inputs(k) {
			for layName, lay := range map[string][]stage.Option{
				"ordered+buffer": {stage.Ordered(), stage.Buffer(1 << 30)},
				"keyby+buffer":   {stage.KeyBy(func(x int) int { return x }), stage.Buffer(1 << 30)},
				"buffer":         {stage.Buffer(1 << 30)},
				"ordered+keyby":  {stage.Ordered(), stage.KeyBy(func(x int) int { return x })},
			} {
				got, err := sink.Slice(context.Background(), stage.Map(in(), double, append(lay, stage.Workers(1<<30))...))
				if err != nil || len(got) != k {
					t.Fatalf("%s/%s: Slice = %v, %v", inName, layName, got, err)
				}
			}
		}
	})
}

// review9Out is an output of an Apply: item and the output's number.
type review9Out struct{ item, n int }

// An Ordered Apply with a window far larger than the ring's first 64 slots:
// the head streams its first output, then waits while 100 items after it
// emit three outputs each, all parked (the ring grows from 64 to 128 slots
// while the head's worker holds the emitter role and the parked slots hold
// their buffers; 300 parked outputs stay within the window's 308, beyond
// which a later item's further outputs would wait for the head); the head
// then emits more and returns. Every output leaves, in input order and in
// each item's emit order.
func TestReview9OrderedApplyParkedOutputsAcrossGrowth(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const workers, buffer, outs = 4, 300, 3
		const others = buffer / outs // items after the head that finish behind it, their outputs within the window
		const n = 1000
		release := make(chan struct{})
		var finished atomic.Int64
		f := func(ctx context.Context, x int, emit func(review9Out) bool) error {
			if x == 0 {
				emit(review9Out{0, 0})
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				for i := 1; i < outs; i++ {
					emit(review9Out{0, i})
				}
				return nil
			}
			for i := range outs {
				emit(review9Out{x, i})
			}
			if finished.Add(1) == others {
				close(release) // the window is well past its first room
			}
			return nil
		}
		var got []review9Out
		var err error
		runcheck.Run(t, "apply", func() {
			got, err = sink.Slice(context.Background(), stage.Apply(source.Slice(ints(n)), f, stage.Workers(workers), stage.Buffer(buffer), stage.Ordered()))
		})
		if err != nil {
			t.Fatal(err)
		}
		review9CheckOrder(t, got, n, outs)
	})
}

func review9CheckOrder(t *testing.T, got []review9Out, n, outs int) {
	t.Helper()
	if len(got) != n*outs {
		t.Fatalf("%d outputs, want %d", len(got), n*outs)
	}
	for i, o := range got {
		if o.item != i/outs || o.n != i%outs {
			t.Fatalf("output %d is %+v, want {%d %d}: out of order", i, o, i/outs, i%outs)
		}
	}
}

// An item behind the head parks an output, then waits for its consumer to
// take that output (Apply's doc: once the items before it have left, its
// waiting outputs go to the queue even while f runs); meanwhile the items
// after it fill a window far past the ring's first room, so the ring grows
// while that item's slot holds its parked output (and, as the head after
// the first item leaves, while it streams).
func TestReview9OrderedApplyRunningItemPromotedAcrossGrowth(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const workers, buffer, outs = 4, 200, 2
		const n = 600
		releaseHead := make(chan struct{})
		seen1 := make(chan struct{}) // the consumer took item 1's first output
		var finished atomic.Int64
		f := func(ctx context.Context, x int, emit func(review9Out) bool) error {
			wait := func(ch <-chan struct{}) error {
				select {
				case <-ch:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			switch x {
			case 0:
				if err := wait(releaseHead); err != nil {
					return err
				}
			case 1:
				emit(review9Out{1, 0}) // parked: item 0 is the head
				if err := wait(seen1); err != nil {
					return err
				}
				emit(review9Out{1, 1})
				return nil
			}
			for i := range outs {
				emit(review9Out{x, i})
			}
			if x > 1 && finished.Add(1) == buffer/outs {
				close(releaseHead) // items 2..101 are parked behind the head (201 outputs, within the window's 208)
			}
			return nil
		}
		var got []review9Out
		once := sync.Once{}
		err := error(nil)
		runcheck.Run(t, "apply", func() {
			err = sink.ForEach(context.Background(), stage.Apply(source.Slice(ints(n)), f, stage.Workers(workers), stage.Buffer(buffer), stage.Ordered()),
				func(_ context.Context, o review9Out) error {
					got = append(got, o)
					if o == (review9Out{1, 0}) {
						once.Do(func() { close(seen1) })
					}
					return nil
				})
		})
		if err != nil {
			t.Fatal(err)
		}
		review9CheckOrder(t, got, n, outs)
	})
}

// Random stress of the growing window: Ordered Apply and FlatMap with a
// large Buffer, random output counts and random pauses (runtime yields,
// no sleeps), several runs; every output in input order and emit order.
func TestReview9OrderedGrowthStress(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const n = 3000
		counts := make([]int, n)
		rng := rand.New(rand.NewPCG(9, 9))
		for i := range counts {
			counts[i] = rng.IntN(4) // 0 to 3 outputs
		}
		want := []review9Out{}
		for i, c := range counts {
			for j := range c {
				want = append(want, review9Out{i, j})
			}
		}
		spin := func(x int) {
			for range (x * 7919) % 13 {
				time.Sleep(0) // a yield, no duration asserted
			}
		}
		check := func(name string, got []review9Out, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(got) != len(want) {
				t.Fatalf("%s: %d outputs, want %d", name, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s: output %d is %+v, want %+v", name, i, got[i], want[i])
				}
			}
		}
		for _, cfg := range []struct{ workers, buffer int }{{32, 500}, {8, 100}, {64, 2000}} {
			for round := range 3 {
				opts := []stage.Option{stage.Workers(cfg.workers), stage.Buffer(cfg.buffer), stage.Ordered()}
				name := fmt.Sprintf("apply/w=%d/b=%d/%d", cfg.workers, cfg.buffer, round)
				var got []review9Out
				var err error
				runcheck.Run(t, name, func() {
					got, err = sink.Slice(context.Background(), stage.Apply(source.Slice(ints(n)), func(_ context.Context, x int, emit func(review9Out) bool) error {
						for j := range counts[x] {
							spin(x + j)
							emit(review9Out{x, j})
						}
						return nil
					}, opts...))
				})
				check(name, got, err)
				name = fmt.Sprintf("flatmap/w=%d/b=%d/%d", cfg.workers, cfg.buffer, round)
				runcheck.Run(t, name, func() {
					got, err = sink.Slice(context.Background(), stage.FlatMap(source.Slice(ints(n)), func(_ context.Context, x int) ([]review9Out, error) {
						spin(x)
						outs := make([]review9Out, counts[x])
						for j := range outs {
							outs[j] = review9Out{x, j}
						}
						return outs, nil
					}, opts...))
				})
				check(name, got, err)
			}
		}
	})
}

// REVIEW9 FINDING (pre-existing before fe1e1ff, not introduced by it; found
// while checking that every handle opened on a fused input pulls; fails at
// 7b2a24c, fixed by c5f9406, which landed while this review ran): a KeyBy
// stage opened its input for one consumer (config.consumers is 1 under
// KeyBy), so a fused upstream Map of fewer workers stayed fused, yet start
// took a fused handle per worker goroutine. Once the upstream's goroutines
// had given their places to some KeyBy workers' handles (cheap calls), a
// handle without a place saw the upstream's queue end (no writer, no
// baton) and its worker exited while items remained: fewer than Workers(n)
// calls ever ran at once (the upstream's worker count), and a barrier of n
// calls hung. Both with a long input (3 KeyBy workers over a Workers(2)
// Map of 300 items) and with the small-input layout of fe1e1ff (Workers(64)
// over a Workers(2) Map of 5 items: 5 goroutines, 5 handles, 2 places).
func TestReview9KeyByOverNarrowerFusedUpstreamRunsAllWorkers(t *testing.T) {
	for _, c := range []struct{ workers, upstream, n, parties, rounds int }{
		{3, 2, 300, 3, 1},
		{64, 2, 5, 5, 200}, // the hang needs the places to go to the wrong handles: many runs
	} {
		t.Run(fmt.Sprintf("workers=%d/upstream=%d/n=%d", c.workers, c.upstream, c.n), func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				for range c.rounds {
					review9KeyByBarrierRun(t, c.workers, c.upstream, c.n, c.parties)
				}
			})
		})
	}
}

// review9KeyByBarrierRun runs a KeyBy Workers(workers) stage whose calls
// wait for each other in groups of parties, over a fused Workers(upstream)
// Map of n items; it fails t if the run hangs.
func review9KeyByBarrierRun(t *testing.T, workers, upstream, n, parties int) {
	t.Helper()
	id := func(_ context.Context, x int) (int, error) { return x, nil }
	b := newReview9Barrier(parties)
	f := func(ctx context.Context, x int) (int, error) {
		if !b.wait(ctx) {
			return 0, ctx.Err()
		}
		return x, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	var got []int
	var err error
	go func() {
		defer close(done)
		got, err = sink.Slice(ctx, stage.Map(stage.Map(source.Slice(ints(n)), id, stage.Workers(upstream)), f,
			stage.KeyBy(func(x int) int { return x }), stage.Workers(workers)))
	}()
	select {
	case <-done:
	case <-time.After(runcheck.Watchdog / 2): // a hang watchdog
		cancel()
		<-done
		t.Fatalf("a KeyBy Workers(%d) stage over a fused Workers(%d) Map of %d items never ran %d calls at once (a barrier of its calls hung)", workers, upstream, n, parties)
	}
	if err != nil || len(got) != n {
		t.Fatalf("Slice = %d items, %v", len(got), err)
	}
}
