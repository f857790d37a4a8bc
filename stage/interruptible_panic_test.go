package stage_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Over an Interruptible source, a consumer goroutine holding a place asks
// next for an item with a context that is already done. A next that then
// panics with that context's error (panic(ctx.Err())) panicked all the
// same: the run fails with a *SourceError wrapping a *PanicError, never
// takes the panic for "nothing ready". Whether a consumer goroutine takes
// a place depends on the engine's measure of the calls, so each run
// asserts what its own events call for: a run in which next panicked
// fails, one in which it never did succeeds.
func TestInterruptiblePanicInATryIsAFailure(t *testing.T) {
	const items = 20000
	panicked := 0
	for range 20 {
		ch := make(chan int, items)
		for i := range items {
			ch <- i
		}
		close(ch)
		var panics atomic.Int64
		src := stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(ctx context.Context) (int, error) {
				if err := ctx.Err(); err != nil {
					panics.Add(1)
					panic(err)
				}
				select {
				case v, ok := <-ch:
					if !ok {
						return 0, io.EOF
					}
					return v, nil
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}, nil
		}))
		var n int
		var err error
		runcheck.Run(t, "run", func() {
			n, err = sink.Count(context.Background(), stage.Map(src, double, stage.Workers(4)))
		})
		var se *stage.SourceError
		var pe *stage.PanicError
		switch {
		case panics.Load() == 0 && (err != nil || n != items):
			t.Fatalf("no panic: got %d items, err %v; want %d, nil", n, err, items)
		case panics.Load() > 0 && !(errors.As(err, &se) && errors.As(err, &pe) && errors.Is(err, context.Canceled)):
			t.Fatalf("next panicked with ctx.Err() in a try: got %d items, err %v; want a *SourceError wrapping the *PanicError", n, err)
		case panics.Load() > 0:
			panicked++
		}
	}
	if panicked == 0 {
		t.Skip("no consumer goroutine took a place in 20 runs: the scenario did not happen")
	}
	t.Logf("%d runs of 20 panicked in a try", panicked)
}
