package bench

import (
	"context"
	"io"
	"runtime"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestNoAllocationPerItem checks the zero allocs/item of the benchmarks as a
// test: a run over 100 times the items allocates about the same.
func TestNoAllocationPerItem(t *testing.T) {
	for _, opts := range [][]stage.Option{
		{stage.Workers(1)},
		{stage.Workers(4)},
		{stage.Workers(4), stage.Ordered()},
		{stage.Workers(4), stage.Buffer(2)},
	} {
		allocs := func(n int) float64 {
			s := stage.Map(source.Slice(input[:n]), mapDouble, opts...)
			return testing.AllocsPerRun(2, func() {
				if _, err := total(stage.Filter(s, func(_ context.Context, x int) (bool, error) { return x >= 0, nil }, opts...)); err != nil {
					t.Fatal(err)
				}
			})
		}
		small, large := allocs(items/100), allocs(items)
		if perItem := (large - small) / float64(items-items/100); perItem > 0.01 {
			t.Errorf("%d options: %.0f allocations over %d items, %.0f over %d: %.3f per item, want 0", len(opts), small, items/100, large, items, perItem)
		}
	}
}

// TestAcknowledgementNodesComeInSlabs checks the cost stage.AckSource's doc
// and the README state: a node per item that carries an Ack, allocated 64
// at a time, so about 1/64 of an allocation per item (the Ack itself is the
// source's: here a zero-size one, which allocates nothing).
func TestAcknowledgementNodesComeInSlabs(t *testing.T) {
	next := func(n int) func() func(context.Context) (int, error) {
		return func() func(context.Context) (int, error) {
			c := counter(n)
			return func(context.Context) (int, error) {
				if v, ok := c(); ok {
					return v, nil
				}
				return 0, io.EOF
			}
		}
	}
	allocs := func(n int) float64 {
		return testing.AllocsPerRun(2, func() {
			if _, err := sink.Reduce(context.Background(), stage.Map(ackSource(next(n)), mapDouble, stage.Workers(4)), 0, add); err != nil {
				t.Fatal(err)
			}
		})
	}
	const small, large = 1_000, 65_000
	perItem := (allocs(large) - allocs(small)) / (large - small)
	if perItem > 1.5/64 {
		t.Errorf("%.4f allocations per acknowledged item, want about 1/64 (%.4f)", perItem, 1.0/64)
	}
	t.Logf("%.4f allocations per acknowledged item", perItem)
}

// TestSmallRunAllocations checks the cost of a whole small run that the
// README states (a per-request fan-out: the pipeline built, run into
// sink.Slice, and its result): at most 9 allocations for one item and 13
// for ten, with four workers (a fused stage's state, the steppers of up to
// four goroutines and the sink's batch come from pools: see
// stage/engine_recycle.go).
// Allocation counts do not depend on timing except where a goroutine gives
// its place away, or where the pool is empty (a pool is emptied by its
// second garbage collection; -race drops a quarter of what goes back), so
// the bounds keep a margin of two.
//
// Under a parent context that can be cancelled (a request's), a run of one
// item makes as many (TestRequestRunAllocations holds that exactly): no
// cancellation hook, since nothing of the run ever sleeps (see armWake in
// stage/run_cancel.go; a run that arms it makes several more: 19 against
// 13 at ten items), and no Done channel of its own context, which such a
// run never asks for (a hook, a source primitive's context or a Batch
// would).
func TestSmallRunAllocations(t *testing.T) {
	request, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range []struct {
		n, max int
		ctx    context.Context
	}{{1, 9 + 2, context.Background()}, {10, 13 + 2, context.Background()}, {1, 9 + 2, request}} {
		got := testing.AllocsPerRun(200, smallRun(t, c.ctx, c.n))
		parent := "context.Background()"
		if c.ctx != context.Background() {
			parent = "a cancellable parent"
		}
		if got > float64(c.max) {
			t.Errorf("a run of %d items under %s: %.1f allocations, want at most %d", c.n, parent, got, c.max)
		}
		t.Logf("a run of %d items under %s: %.1f allocations", c.n, parent, got)
	}
}

// TestSmallOrderedRunAllocations checks the cost the README states for the
// per-request snippet in input order (Ordered, four workers): a run of one
// item calls the function in the sink's goroutine and makes at most 9
// allocations, as an unordered one (its reorder window is recycled with
// the stage's state), where a run whose ordered stage started a goroutine
// made 21 or more; the same margin of two as TestSmallRunAllocations.
func TestSmallOrderedRunAllocations(t *testing.T) {
	in := input[:1]
	got := testing.AllocsPerRun(200, func() {
		out, err := sink.Slice(context.Background(), stage.Map(source.Slice(in), mapDouble, stage.Workers(4), stage.Ordered()))
		if err != nil || len(out) != 1 {
			t.Fatalf("1 item: %d outputs, %v", len(out), err)
		}
	})
	if got > 9+2 {
		t.Errorf("an ordered run of 1 item: %.1f allocations, want at most 9", got)
	}
	t.Logf("an ordered run of 1 item: %.1f allocations", got)
}

// TestOrderedWindowAllocations checks that an Ordered stage's reorder
// window allocates nothing per item, nor per run: an item of one output
// waits in its slot itself, a worker's buffer starts in its own room, and
// the window, ring and all, and the first goroutines' steppers are
// recycled with the stage's state. Ordered runs of 10 to 1,000 items (four
// workers, so their calls run on goroutines of the stage's own) make as
// many allocations as an unordered 10-item run (13), where the window made
// one per item until its ring came round (27 at 10 items, 36 at 1,000).
// The margin of two of TestSmallRunAllocations.
func TestOrderedWindowAllocations(t *testing.T) {
	for _, n := range []int{10, 100, 1000} {
		in := input[:n]
		got := testing.AllocsPerRun(100, func() {
			out, err := sink.Slice(context.Background(), stage.Map(source.Slice(in), mapDouble, stage.Workers(4), stage.Ordered()))
			if err != nil || len(out) != n {
				t.Fatalf("%d items: %d outputs, %v", n, len(out), err)
			}
			checkOrder(t, out)
		})
		if got > 13+2 {
			t.Errorf("an ordered run of %d items: %.1f allocations, want at most 13", n, got)
		}
		t.Logf("an ordered run of %d items: %.1f allocations", n, got)
	}
}

// TestRequestRunAllocations checks that a 1-item run under a request's
// context (a parent that can be cancelled) allocates no more than under
// context.Background(): the run watches such a parent through its own
// context's Err, not a Done channel it would make for itself (see
// run.cancelled in stage), and arms no hook. TestSmallRunAllocations's
// bounds keep a margin of two for the pools; here both runs meet the same
// pools, so their averages over many runs are compared, with less than half
// an allocation between them (on one processor, as testing.AllocsPerRun
// measures, since the count is the whole process's).
func TestRequestRunAllocations(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	request, cancel := context.WithCancel(context.Background())
	defer cancel()
	perRun := func(ctx context.Context) float64 {
		mallocs, _ := memPerRun(2000, smallRun(t, ctx, 1))
		return mallocs
	}
	background, underRequest := perRun(context.Background()), perRun(request)
	if underRequest-background >= 0.5 {
		t.Errorf("a 1-item run: %.2f allocations under a request's context, %.2f under context.Background(); want as many", underRequest, background)
	}
	t.Logf("a 1-item run: %.2f allocations under a request's context, %.2f under context.Background()", underRequest, background)
}

// TestSmallRunBytes checks the bytes a whole small run allocates, which the
// README states (0.96 KB for one item, 1.3 KB for ten): the fused stage's
// state and the sink's batch come back from their pools instead of being
// allocated anew (without the pools: 3.2 and 3.8 KB), and the run and the
// stage as built are kept small (see run.opening and config.calls in
// stage). The bounds keep a margin for a pool emptied by the garbage
// collector during the measure; under -race, which drops a quarter of what
// goes back to a pool on purpose, a wider one (about 0.6 KB more on
// average).
func TestSmallRunBytes(t *testing.T) {
	bounds := []struct{ n, max int }{{1, 1000}, {10, 1400}}
	if raceEnabled {
		bounds = []struct{ n, max int }{{1, 2000}, {10, 2400}}
	}
	for _, c := range bounds {
		_, got := memPerRun(1000, smallRun(t, context.Background(), c.n))
		if got > float64(c.max) {
			t.Errorf("a run of %d items: %.0f bytes, want at most %d", c.n, got, c.max)
		}
		t.Logf("a run of %d items: %.0f bytes", c.n, got)
	}
}

// smallRun returns a whole small run of n items under ctx (the pipeline
// built, run into sink.Slice, and its result checked), as a service runs
// one per request.
func smallRun(t *testing.T, ctx context.Context, n int) func() {
	in := input[:n]
	return func() {
		out, err := sink.Slice(ctx, stage.Map(source.Slice(in), mapDouble, stage.Workers(4)))
		if err != nil || len(out) != n {
			t.Fatalf("%d items: %d outputs, %v", n, len(out), err)
		}
	}
}

// memPerRun runs run once for the pools to fill, then runs times, and
// returns the process's allocations and bytes allocated per run.
func memPerRun(runs int, run func()) (mallocs, bytes float64) {
	run()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		run()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs), float64(after.TotalAlloc-before.TotalAlloc) / float64(runs)
}
