package sink_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// source.Chan over runs at the same time: "source.Chan receives from the same
// channel (each value goes to one run)", with ForEach's "calls f for each
// value" (nothing lost, nothing twice) and Filter's "emits the item when keep
// returns true".
//
// 8 concurrent ForEach runs of Map(4 workers) then Filter over one channel
// fed by a producer: the union of what they saw is every kept value, each
// once; the producer closes the channel, which ends every run with nil.
func TestReview71ChanSharedByConcurrentRuns(t *testing.T) {
	const n, runs = 20000, 8
	for round := range 3 {
		ch := make(chan int)
		s := stage.Filter(
			stage.Map(source.Chan(ch), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(4)),
			func(_ context.Context, v int) (bool, error) { return v%3 != 0, nil }, stage.Workers(2))
		seen := make([]atomic.Int32, n)
		var wg sync.WaitGroup
		errs := make([]error, runs)
		for r := range runs {
			wg.Go(func() {
				errs[r] = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
					seen[v].Add(1)
					return nil
				})
			})
		}
		go func() {
			for i := range n {
				ch <- i
			}
			close(ch)
		}()
		runcheck.NoHang(t, "runs", wg.Wait)
		for r, err := range errs {
			if err != nil {
				t.Fatalf("round %d: run %d: %v", round, r, err)
			}
		}
		for i := range n {
			want := int32(1)
			if i%3 == 0 {
				want = 0
			}
			if got := seen[i].Load(); got != want {
				t.Fatalf("round %d: value %d seen %d times, want %d", round, i, got, want)
			}
		}
	}
}

// source.Func's "Each run calls the same next function from both runs (it
// must be safe for that)", "The run calls next only when a stage is ready for
// an item, never concurrently" (within a run), with Count's "returns how many
// values reached the end".
//
// Runs of Count at the same time share one generator (safe for concurrent
// use): every value is counted by exactly one run.
func TestReview71FuncSharedByConcurrentRuns(t *testing.T) {
	const n, runs = 10000, 6
	var next atomic.Int64
	gen := func(context.Context) (int, error) {
		v := next.Add(1)
		if v > n {
			return 0, io.EOF
		}
		return int(v), nil
	}
	s := stage.Map(source.Func(gen), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3))
	counts := make([]int, runs)
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for r := range runs {
		wg.Go(func() { counts[r], errs[r] = sink.Count(context.Background(), s) })
	}
	runcheck.NoHang(t, "runs", wg.Wait)
	total := 0
	for r := range runs {
		if errs[r] != nil {
			t.Fatalf("run %d: %v", r, errs[r])
		}
		total += counts[r]
	}
	if total != n {
		t.Fatalf("the runs counted %d values in all (%s), want %d", total, fmt.Sprint(counts), n)
	}
}
