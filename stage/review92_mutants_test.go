package stage_test

// review92: tests from a mutation-testing round on the engine's harder
// parts (engine_fuse.go, engine_fuse_ordered.go, engine_reorder.go,
// run_cancel.go, run_end.go, run_finish.go). Each pins a documented promise
// that no earlier test checked (a mutant of the library that breaks it
// passed the whole suite). Every verdict depends only on the order of
// events: durations are hang watchdogs.

import (
	"context"
	"io"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Interruptible: "a consumer goroutine asks next for an item that is
// ready, and leaves the waiting to the stage's own workers, at least one
// of which stays a goroutine of the stage", which calls next "with the
// run's context only when that found nothing ready". A cheap Map of two
// workers over an Interruptible source, read by a Map of two workers (a
// consumer of two goroutines, each of which may take a place), is fed one
// value at a time, each only once a call of next with a live context waits
// in the source (and once the sink has the previous value). Were both
// places given to the consumer's goroutines (engine_fuse.go, retire, with
// no floor of one goroutine over a source that may wait), only calls with
// a done context would come, asking again and again, and no value would be
// sent.
func TestReview92InterruptibleKeepsAGoroutineInTheSource(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const n = 2000
		ch := make(chan int)
		waiting := make(chan struct{}, 4*n) // one per call of next with a live context
		src := stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(ctx context.Context) (int, error) {
				if ctx.Err() == nil {
					waiting <- struct{}{}
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
		got := make(chan int)
		first := stage.Map(src, double, stage.Workers(2))
		second := stage.Map(first, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2))
		errc := make(chan error, 1)
		go func() {
			errc <- sink.ForEach(context.Background(), second, func(_ context.Context, v int) error {
				got <- v
				return nil
			})
		}()
		runcheck.NoHang(t, "one value at a time, each to a goroutine waiting in the source", func() {
			for i := range n {
				<-waiting
				ch <- i
				if v := <-got; v != 2*i {
					t.Errorf("value %d came out as %d, want %d", i, v, 2*i)
				}
			}
			close(ch)
			if err := <-errc; err != nil {
				t.Errorf("ForEach: %v, want nil", err)
			}
		})
	})
}
