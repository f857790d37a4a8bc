package stage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The Interruptible doc: "A consumer goroutine that found nothing ready
// waits for the stage's next output with its place, so after the source
// was empty fewer than n calls may run (as few as the stage's own
// goroutines, one or more) until outputs come: a function that waits for
// other calls of its stage needs Buffer(1)". So with Buffer(1), n calls
// that wait for each other all run, also after a long stretch of cheap
// calls over a channel (which, without Buffer, moves places to the
// consumer's goroutines) and a pause in which the channel was empty (where
// those goroutines wait for output, holding the places). Without Buffer,
// this scenario stalls with 1 of the 4 calls arrived (5 runs of 5).
func TestInterruptibleBarrierWithBuffer(t *testing.T) {
	const workers, cheap = 4, 2000
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang watchdog
	defer cancel()
	ch := make(chan int)
	allTaken := make(chan struct{})
	go func() {
		defer close(ch)
		for i := range cheap {
			select {
			case ch <- i:
			case <-ctx.Done():
				return
			}
		}
		select { // the pause: the channel stays empty until every cheap item went through
		case <-allTaken:
		case <-ctx.Done():
			return
		}
		for i := range workers {
			select {
			case ch <- cheap + i:
			case <-ctx.Done():
				return
			}
		}
	}()
	wait, arrived := barrier(workers)
	f := func(ctx context.Context, x int) (int, error) {
		if x < cheap {
			return x, nil
		}
		return wait(ctx, x)
	}
	up := stage.Map(source.Chan(ch), f, stage.Workers(workers), stage.Buffer(1))
	// A consumer of as many goroutines as the stage has workers: without
	// Buffer, each could take a place.
	down := stage.Map(up, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(workers))
	var sum, n int
	err := sink.ForEach(ctx, down, func(_ context.Context, x int) error {
		sum += x
		if n++; n == cheap {
			close(allTaken)
		}
		return nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the barrier stalled: %d of %d calls arrived", arrived.Load(), workers)
	}
	if err != nil {
		t.Fatal(err)
	}
	if want := (cheap + workers) * (cheap + workers - 1) / 2; n != cheap+workers || sum != want {
		t.Errorf("got %d items summing to %d, want %d summing to %d", n, sum, cheap+workers, want)
	}
}
