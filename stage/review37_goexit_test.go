package stage_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview37GoexitInComposition guards ErrGoexit ("a t.Fatal
// (runtime.Goexit) in a function that ran on a goroutine of the run fails it
// with stage.ErrGoexit instead of losing the item ... and every source is
// still stopped") where the composition operators run user code: a Merge
// input's next, the next of a Tee's input, a key function, a Handle
// handler, a Tee branch's function, and a one-item Map fused into a Merge's
// goroutine. Beside each runs an endless source.Seq, whose iterator, if it
// started, must be stopped, and no goroutine may be left. In a child process.
func TestReview37GoexitInComposition(t *testing.T) {
	goexitAt3 := func() stage.Stream[int] {
		n := 0
		return source.Func(func(context.Context) (int, error) {
			if n++; n == 3 {
				runtime.Goexit()
			}
			return n, nil
		})
	}
	cases := map[string]func(endless stage.Stream[int]) stage.Stream[int]{
		"merge-input-next": func(e stage.Stream[int]) stage.Stream[int] { return stage.Merge(e, goexitAt3()) },
		"tee-input-next": func(e stage.Stream[int]) stage.Stream[int] {
			return stage.Merge(append(stage.Tee(goexitAt3(), 2), e)...)
		},
		"key": func(e stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.Merge(e), double, stage.Workers(2), stage.KeyBy(func(v int) int {
				if v == 3 {
					runtime.Goexit()
				}
				return v
			}))
		},
		"handler": func(e stage.Stream[int]) stage.Stream[int] {
			return stage.Map(e, func(_ context.Context, v int) (int, error) {
				if v == 3 {
					return 0, errR37
				}
				return v, nil
			}, stage.Workers(2), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { runtime.Goexit(); return nil })))
		},
		"tee-branch": func(e stage.Stream[int]) stage.Stream[int] {
			b := stage.Tee(e, 2)
			return stage.Merge(stage.Map(b[0], func(_ context.Context, v int) (int, error) {
				if v == 3 {
					runtime.Goexit()
				}
				return v, nil
			}, stage.Workers(2)), b[1])
		},
		"fused-in-merge": func(e stage.Stream[int]) stage.Stream[int] {
			return stage.Merge(e, stage.Map(source.Slice(ints(1)), func(context.Context, int) (int, error) { runtime.Goexit(); return 0, nil }))
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			out, ok := runcheck.InChild(t, func() string {
				var started, stopped atomic.Int32
				endless := source.Seq(iter.Seq[int](func(yield func(int) bool) {
					started.Add(1)
					defer stopped.Add(1)
					for i := 0; yield(i); i++ {
					}
				}))
				_, before := runcheck.Goroutines()
				res := make(chan error, 1)
				go func() {
					defer func() {
						select {
						case res <- errors.New("the sink's goroutine ended without returning"):
						default:
						}
					}()
					_, err := sink.Count(context.Background(), build(endless))
					res <- err
				}()
				err := <-res
				var leaked []string
				for deadline := time.Now().Add(r37Watchdog); time.Now().Before(deadline); { // the sink returned: a goroutine on its way out has only its return left (a watchdog, not a verdict)
					if leaked = runcheck.LeakedSince(before); len(leaked) == 0 {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				return fmt.Sprintf("goexit=%v unstopped=%d leaked=%d", errors.Is(err, stage.ErrGoexit), started.Load()-stopped.Load(), len(leaked))
			})
			if ok && out != "goexit=true unstopped=0 leaked=0" {
				t.Errorf("outcome %q, want goexit=true unstopped=0 leaked=0", out)
			}
		})
	}
}
