package stage_test

import (
	"context"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// The ErrGoexit doc lists what runs on the sink's goroutine, where a Goexit
// ends the sink instead of failing the run, and it includes "the source's
// next (or an Indexed at) that such a stage calls there; and next when the
// sink reads a source directly" (a review found the list without them: the
// sink reading a source directly, and a fused stage's handle on the sink's
// goroutine pulling (NeverWaits) or trying (Interruptible) its input, call
// next there). Each shape: a Goexit in next, the first time it runs on the
// sink's goroutine, ends that goroutine as the doc says (the sink does not
// return), with nothing left behind and no hang; where next never ran there
// (a fused stage whose calls never proved cheap), the run completes.
func TestReview59fGoexitInNextOnTheSinksGoroutine(t *testing.T) {
	shapes := map[string]func(src stage.Stream[int]) stage.Stream[int]{
		"direct": func(src stage.Stream[int]) stage.Stream[int] { return src },
		"fused-neverwaits": func(src stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.NeverWaits(src), double, stage.Workers(2))
		},
		"fused-interruptible": func(src stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.Interruptible(src), double, stage.Workers(2))
		},
	}
	for name, shape := range shapes {
		t.Run(name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				const items = 200_000
				var sinkID atomic.Int64
				var onSink atomic.Int64 // calls of next made on the sink's goroutine
				src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(context.Context) (int, error) {
						if auditGoid() == sinkID.Load() {
							if onSink.Add(1) == 1 {
								runtime.Goexit()
							}
						}
						if i == items {
							return 0, io.EOF
						}
						i++
						return i, nil
					}, nil
				})
				_, before := runcheck.Goroutines()
				done := make(chan struct{})
				returned := false
				var err error
				go func() {
					defer close(done)
					sinkID.Store(auditGoid())
					err = sink.ForEach(context.Background(), shape(src), func(context.Context, int) error { return nil })
					returned = true
				}()
				select {
				case <-done:
				case <-time.After(runcheck.Watchdog): // a hang watchdog only
					t.Fatal("the sink hung")
				}
				if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
					t.Fatalf("%d goroutine(s) left once the sink's goroutine ended:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				}
				switch {
				case onSink.Load() > 0 && returned:
					t.Errorf("a Goexit in next on the sink's goroutine, and the sink returned (%v)", err)
				case onSink.Load() == 0 && name == "direct":
					t.Errorf("a sink reading a source directly did not call next on its own goroutine")
				case onSink.Load() == 0 && err != nil:
					t.Errorf("ForEach = %v, want nil", err)
				}
			})
		})
	}
}

// The Source doc: a stage of one worker without a Buffer may call next
// from its consumer's goroutine (the sequential path), where nothing else
// can wait for it. A Map of one worker over a plain Source and over an
// Interruptible one: every item arrives, in order, whichever goroutine
// calls next (a review found the sink's goroutine making almost every call,
// with the run's live context, against the doc as it then read).
func TestReview59fOneWorkerOverAWaitingSource(t *testing.T) {
	for _, name := range []string{"source", "interruptible"} {
		t.Run(name, func(t *testing.T) {
			const items = 50_000
			var sinkID atomic.Int64
			var onSink, liveOnSink atomic.Int64
			src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				i := 0
				return func(ctx context.Context) (int, error) {
					if auditGoid() == sinkID.Load() {
						onSink.Add(1)
						if ctx.Err() == nil {
							liveOnSink.Add(1)
						}
					}
					if i == items {
						return 0, io.EOF
					}
					i++
					return i, nil
				}, nil
			})
			if name == "interruptible" {
				src = stage.Interruptible(src)
			}
			var n int
			runcheck.Run(t, name, func() {
				sinkID.Store(auditGoid())
				err := sink.ForEach(context.Background(), stage.Map(src, double, stage.Workers(1)), func(_ context.Context, v int) error {
					n++
					if v != 2*n {
						t.Errorf("item %d is %d, want %d: out of order", n, v, 2*n)
						return stage.ErrStop
					}
					return nil
				})
				if err != nil || n != items {
					t.Errorf("ForEach = %v after %d items, want nil after %d", err, n, items)
				}
			})
			t.Logf("next called %d times on the sink's goroutine, %d of them with a live context", onSink.Load(), liveOnSink.Load())
		})
	}
}
