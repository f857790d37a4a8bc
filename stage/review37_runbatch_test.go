package stage_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview37RunCallbackWaitsWithBuffer found stage.Run's doc wrong: it
// said "the batch counts in the stage's read-ahead (Workers plus Buffer)
// until f has seen all of it, so an f that waits for the pipeline to take
// further items may wait for ever (give the stage a Buffer beyond what f
// waits for)". A sink callback (sink.ForEach) that waits for the pipeline to
// take one item more than it has seen hung with Buffer(2), (8) and (64) (10
// of 10): Run's batch grows to the whole read-ahead, so at the batch's last
// item every place is held, whatever the Buffer. The doc now says so, and
// sends such waits to a stage's function, which gives a place back as its
// consumer takes each output: what this test checks (the sink cases, which
// hang as documented, were taken out).
func TestReview37RunCallbackWaitsWithBuffer(t *testing.T) {
	const N = 300
	for _, c := range []struct {
		consumer, src   string
		workers, buffer int
	}{
		{"stage", "indexed", 1, 1}, {"stage", "func", 2, 3},
	} {
		t.Run(fmt.Sprintf("%s/%s/workers%d/buffer%d", c.consumer, c.src, c.workers, c.buffer), func(t *testing.T) {
			t.Parallel()
			var produced atomic.Int64
			reached := make([]chan struct{}, N+1) // reached[n] is closed when the source has given out n items
			for i := range reached {
				reached[i] = make(chan struct{})
			}
			var in stage.Stream[int]
			switch c.src {
			case "indexed":
				in = stage.Indexed(N, func(i int) int { close(reached[produced.Add(1)]); return i })
			case "func":
				i := 0
				in = source.Func(func(ctx context.Context) (int, error) {
					if i == N {
						return 0, errEOF
					}
					i++
					close(reached[produced.Add(1)])
					return i, nil
				})
			}
			s := stage.Map(in, double, stage.Workers(c.workers), stage.Buffer(c.buffer))
			var seen atomic.Int64
			// waitOneMore waits for the pipeline to take one item more than
			// the waiting function has seen.
			waitOneMore := func(ctx context.Context) error {
				n := int(seen.Add(1))
				select {
				case <-reached[min(n+1, N)]:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				if c.consumer == "sink" {
					done <- sink.ForEach(ctx, s, func(ctx context.Context, v int) error { return waitOneMore(ctx) })
					return
				}
				_, err := sink.Count(ctx, stage.Map(s, func(ctx context.Context, v int) (int, error) { return v, waitOneMore(ctx) }, stage.Workers(1)))
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil || seen.Load() != N {
					t.Fatalf("%v after %d of %d items", err, seen.Load(), N)
				}
			case <-time.After(r37Watchdog):
				t.Errorf("hang: the %s's function waits for 1 more item with Buffer(%d); it has seen %d items, the source gave out %d",
					c.consumer, c.buffer, seen.Load(), produced.Load())
				cancel()
				<-done
			}
		})
	}
}
