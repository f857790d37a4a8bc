package stage_test

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The Workers doc: a stage whose input is known to hold k items starts at
// most k goroutines, whatever n is. Every layout that keeps its workers as
// goroutines of its own (Ordered, KeyBy, a Buffer), with Workers(1000)
// over 3 items: while the three calls run at once (a barrier: the doc's
// "exactly n" with enough input), the process has at most a few goroutines
// more than before the run, not a thousand.
func TestLargeWorkersOverASmallInputStartsFewGoroutines(t *testing.T) {
	const items, workers = 3, 1000
	for name, opts := range map[string][]stage.Option{
		"ordered":   {stage.Ordered()},
		"keyby":     {stage.KeyBy(func(x int) int { return x })},
		"buffer":    {stage.Buffer(1)},
		"ordered+b": {stage.Ordered(), stage.Buffer(8)},
	} {
		t.Run(name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			var barrier sync.WaitGroup
			barrier.Add(items)
			var mu sync.Mutex
			most := 0
			f := func(_ context.Context, x int) (int, error) {
				barrier.Done()
				barrier.Wait() // all three calls run at once
				mu.Lock()
				most = max(most, runtime.NumGoroutine())
				mu.Unlock()
				return x, nil
			}
			got, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(items)), f, append(opts, stage.Workers(workers))...))
			if err != nil || len(got) != items {
				t.Fatalf("Slice = %v, %v", got, err)
			}
			// The stage's 3 workers, and for KeyBy or a Buffer nothing more
			// of the run's: a few spare for the runtime's own.
			if most > before+items+3 {
				t.Errorf("%d goroutines during the run, %d before: a Workers(%d) stage over %d items started more than %d", most, before, workers, items, items)
			}
		})
	}
}

// The same with Workers(1<<30): a run of 3 items neither runs out of
// memory nor waits to start a billion goroutines (in a child process: if
// it did, the process would die).
func TestHugeWorkersOverASmallInput(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		id := func(_ context.Context, x int) (int, error) { return x, nil }
		for _, opts := range [][]stage.Option{{stage.Ordered()}, {stage.KeyBy(func(x int) int { return x })}, {stage.Buffer(1)}} {
			got, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(3)), id, append(opts, stage.Workers(1<<30))...))
			if err != nil || len(got) != 3 {
				t.Fatalf("Slice = %v, %v", got, err)
			}
		}
	})
}
