package source_test

// Review 62: liveness of the waiting sources (a request/reply protocol,
// where the source's next item exists only once the sink has seen the one
// before). A consumer goroutine that sat in a waiting source while the
// output it waits for sat behind it would deadlock: child process, watchdog.

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "a waiting source (a channel, a reader, a function or iterator that may
// block) is always safe", and Source: "a stage of more than one worker calls
// it from goroutines of its own, so that no consumer waits in next while
// outputs wait for it". After warmFree items that come at once (so that the
// cheap stages have proved cheap and run in their consumers' goroutines),
// item k comes only once the sink has seen item k-1.
func TestReview62WaitingSourcesPingPong(t *testing.T) {
	const warm, total = 3000, 4000
	for _, workers := range []int{1, 2, 4} {
		for _, kind := range []string{"Func", "Chan", "Seq", "Seq2", "Lines-pipe"} {
			t.Run(fmt.Sprintf("%s/workers%d", kind, workers), func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) {
					seen := make(chan int, 1) // the sink tells the source what it saw
					wait := func(ctx context.Context, k int) bool {
						if k < warm {
							return true
						}
						select {
						case v := <-seen:
							if v != k-1 {
								t.Errorf("the sink saw %d before item %d was made", v, k)
							}
							return true
						case <-ctx.Done():
							return false
						}
					}
					var s stage.Stream[int]
					switch kind {
					case "Func":
						k := 0
						s = source.Func(func(ctx context.Context) (int, error) {
							if k == total {
								return 0, io.EOF
							}
							if !wait(ctx, k) {
								return 0, ctx.Err()
							}
							k++
							return k - 1, nil
						})
					case "Chan":
						ch := make(chan int)
						go func() {
							defer close(ch)
							for k := range total {
								wait(context.Background(), k)
								ch <- k
							}
						}()
						s = source.Chan(ch)
					case "Seq":
						s = source.Seq(func(yield func(int) bool) {
							for k := range total {
								if !wait(context.Background(), k) || !yield(k) {
									return
								}
							}
						})
					case "Seq2":
						s = source.Seq2(func(yield func(int, error) bool) {
							for k := range total {
								if !wait(context.Background(), k) || !yield(k, nil) {
									return
								}
							}
						})
					case "Lines-pipe":
						pr, pw := io.Pipe()
						go func() {
							for k := range total {
								wait(context.Background(), k)
								if _, err := fmt.Fprintf(pw, "%d\n", k); err != nil {
									return
								}
							}
							pw.Close()
						}()
						s = stage.Map(source.Lines(pr), func(_ context.Context, line string) (int, error) { return strconv.Atoi(line) }, stage.Workers(workers))
					}
					m := stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers))
					f := stage.Filter(m, func(_ context.Context, v int) (bool, error) { return true, nil }, stage.Workers(workers))
					next := 0
					var err error
					runcheck.Run(t, kind, func() {
						err = sink.ForEach(context.Background(), f, func(_ context.Context, v int) error {
							if workers == 1 && v != next {
								t.Errorf("got %d; want %d (one worker keeps input order)", v, next)
							}
							next++
							if v >= warm-1 && v < total-1 {
								seen <- v
							}
							return nil
						})
					})
					if err != nil || next != total {
						t.Errorf("%d items, %v; want %d, nil", next, err, total)
					}
				})
			})
		}
	}
}
