package stage_test

import (
	"context"
	"iter"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// waitingSources are sources whose user-supplied next waits for the next
// item from a queue, as a service's source waits for a broker: each kind the
// packages offer. The queue is closed to end the stream.
var waitingSources = map[string]func(queue <-chan int) stage.Stream[int]{
	"source.Func": func(queue <-chan int) stage.Stream[int] {
		return source.Func(waitNext(queue))
	},
	"source.Seq": func(queue <-chan int) stage.Stream[int] {
		return source.Seq(iter.Seq[int](func(yield func(int) bool) {
			for v := range queue {
				if !yield(v) {
					return
				}
			}
		}))
	},
	"source.Seq2": func(queue <-chan int) stage.Stream[int] {
		return source.Seq2(iter.Seq2[int, error](func(yield func(int, error) bool) {
			for v := range queue {
				if !yield(v, nil) {
					return
				}
			}
		}))
	},
	"stage.Source": func(queue <-chan int) stage.Stream[int] {
		return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return waitNext(queue), nil
		})
	},
}

// waitNext is a next function that waits for an item from queue, or for the
// end of the run; a closed queue ends the stream.
func waitNext(queue <-chan int) func(context.Context) (int, error) {
	return func(ctx context.Context) (int, error) {
		select {
		case v, ok := <-queue:
			if !ok {
				return 0, errEOF
			}
			return v, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// TestWaitingSourceDoesNotHoldBackFinishedOutputs pins: a source's next may
// wait for outside events (a select on a queue) as long as it likes, and
// while it waits, the outputs of items already taken still reach the sink.
// Each round sends 2 items into the queue and then waits until the sink has
// both, before sending more: no output may need a later input to come out.
// Only a hang watchdog measures time.
func TestWaitingSourceDoesNotHoldBackFinishedOutputs(t *testing.T) {
	const rounds = 200
	for _, kind := range []string{"source.Func", "source.Seq", "source.Seq2", "stage.Source"} {
		t.Run(kind, func(t *testing.T) {
			queue := make(chan int)
			var closeOnce sync.Once
			closeQueue := func() { closeOnce.Do(func() { close(queue) }) }
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := stage.Map(waitingSources[kind](queue), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4))
			got := make(chan int, 2*rounds)
			runDone := make(chan error, 1)
			go func() {
				runDone <- sink.ForEach(ctx, s, func(_ context.Context, v int) error { got <- v; return nil })
			}()
			watchdog := time.After(20 * time.Second)
			hung := func(format string, args ...any) {
				t.Helper()
				cancel()
				closeQueue()
				<-runDone
				t.Fatalf("hung: "+format, args...)
			}
			var all []int
			for r := range rounds {
				for j := range 2 {
					select {
					case queue <- 2*r + j:
					case <-watchdog:
						hung("round %d: the source never took item %d", r, 2*r+j)
					}
				}
				for range 2 {
					select {
					case v := <-got:
						all = append(all, v)
					case <-watchdog:
						hung("round %d: the outputs of items %d and %d, both taken, did not both reach the sink without another input (got %d of %d items)", r, 2*r, 2*r+1, len(all), 2*r+2)
					}
				}
			}
			closeQueue()
			select {
			case err := <-runDone:
				if err != nil {
					t.Fatalf("err = %v", err)
				}
			case <-watchdog:
				cancel()
				<-runDone
				t.Fatal("hung: the run did not end after the queue was closed")
			}
			slices.Sort(all)
			if !slices.Equal(all, ints(2*rounds)) {
				t.Fatalf("got %v, want 0..%d", all, 2*rounds-1)
			}
		})
	}
}
