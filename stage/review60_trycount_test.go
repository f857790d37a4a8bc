package stage_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// 4f91cdd, Interruptible's doc: "the stage's own goroutines also ask with a
// done context first, and call next with the run's context only when that
// found nothing ready: over an empty source each wait costs one more call
// of next". Items come one at a time into an empty source (the next is
// sent once the sink got the previous output), so a goroutine of the stage
// waits in next before each. Counted on goroutines other than the sink's
// (whose tries are the consumer's, not the stage's): calls with a done
// context that found nothing (tries) and calls with the live context
// (waits). The doc's cost is one try per wait, and one more per try of a
// consumer goroutine (the sink's, counted too) that meets it.
//
// Failed 10 of 10 against the first version of the fix (whose doc said one
// per wait): about 1.3 failed tries per wait with Workers(2) and 11 to 18
// with Workers(64) (up to 121 in a row on one goroutine of the stage),
// while the sink's goroutine tried at most once between two deliveries:
// a pull that saw one consumer's try deciding let the lock go and tried
// again, and each of the stage's goroutines queued on the lock took it in
// turn for a full try before it looked at contenders. Now a pull looks at
// contenders before its try, and the doc counts the one extra try.
func TestReview60InterruptibleOneTryPerWait(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, workers := range []int{2, 64} {
			ch := make(chan int)
			got := make(chan int, 1)
			var sinkID, tries, waits, sinkRun, maxSinkRun, sinkTries atomic.Int64
			run := map[int64]int{} // per goroutine: failed tries in a row (next is never called concurrently)
			maxRun := 0
			sinkID.Store(-1)
			src := stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				return func(ctx context.Context) (int, error) {
					if ctx.Err() != nil && auditGoid() == sinkID.Load() {
						sinkTries.Add(1)
					}
					select {
					case v, ok := <-ch:
						if !ok {
							return 0, io.EOF
						}
						if id := auditGoid(); id != sinkID.Load() {
							run[id] = 0
						}
						return v, nil
					default:
					}
					id := auditGoid()
					mine := id != sinkID.Load()
					if ctx.Err() != nil {
						if mine {
							tries.Add(1)
							run[id]++
							maxRun = max(maxRun, run[id])
						} else if r := sinkRun.Add(1); r > maxSinkRun.Load() {
							maxSinkRun.Store(r)
						}
						return 0, context.Cause(ctx)
					}
					if mine {
						run[id] = 0
						waits.Add(1)
					}
					select {
					case v, ok := <-ch:
						if !ok {
							return 0, io.EOF
						}
						return v, nil
					case <-ctx.Done():
						return 0, context.Cause(ctx)
					}
				}, nil
			}))
			s := stage.Map(src, review60Cheap, stage.Workers(workers))
			done := make(chan error, 1)
			go func() {
				sinkID.Store(auditGoid())
				done <- sink.ForEach(context.Background(), s, func(_ context.Context, x int) error {
					sinkRun.Store(0) // the sink's failed tries are counted between deliveries
					got <- x
					return nil
				})
			}()
			const items = 3000
			for i := range items {
				ch <- i
				<-got
			}
			close(ch)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if tr, w, c := tries.Load(), waits.Load(), sinkTries.Load(); tr > w+c {
				t.Errorf("Workers(%d): the stage's goroutines tried %d times with nothing ready and waited %d times, with %d tries of the consumer: want at most one try per wait and one per consumer try (at most %d failed tries in a row on one goroutine of the stage, %d on the sink's)", workers, tr, w, c, maxRun, maxSinkRun.Load())
			} else {
				t.Logf("Workers(%d): %d failed tries, %d waits, %d consumer tries", workers, tr, w, c)
			}
		}
	})
}
