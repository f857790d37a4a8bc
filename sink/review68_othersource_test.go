package sink_test

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

// Stage doc, Cancellation: "from the moment its Done channel is closed no
// source's next is called and the sink delivers nothing more, as with a
// standard context. (A next already waiting, as in a channel source, may
// still take an item until the functions' ctx ends; the run drops it".
// Two sources merged: B's next is waiting (held by a gate) when A's next
// cancels the caller's ctx; B's item is then dropped and B is not asked
// again, nor is A.
func TestReview68CancelInOneSourceStopsTheOther(t *testing.T) {
	for _, kind := range r68CtxKinds {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := r68CancelPair(kind)
			defer cancel()
			var cancelled atomic.Bool
			var afterA, afterB atomic.Int32
			bWaiting := make(chan struct{})
			releaseB := make(chan struct{})
			mk := func(name string, after *atomic.Int32, step func(i int) int) stage.Stream[int] {
				return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(context.Context) (int, error) {
						if cancelled.Load() {
							after.Add(1)
						}
						if i == 1000 {
							return 0, io.EOF
						}
						i++
						return step(i - 1), nil
					}, nil
				})
			}
			a := mk("a", &afterA, func(i int) int {
				if i == 5 {
					<-bWaiting // B is inside next, deaf to ctx
					cancel()
					cancelled.Store(true)
					close(releaseB)
				}
				return i
			})
			b := mk("b", &afterB, func(i int) int {
				if i == 3 {
					close(bWaiting)
					<-releaseB
					return 1000 + i // B's item taken as the run ended: dropped
				}
				return 1000 + i
			})
			id := func(_ context.Context, v int) (int, error) { return v, nil }
			var got []int
			var err error
			runcheck.Run(t, kind, func() {
				err = sink.ForEach(ctx, stage.Merge(stage.Map(a, id, stage.Workers(2)), stage.Map(b, id, stage.Workers(2))),
					func(_ context.Context, v int) error { got = append(got, v); return nil })
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err %v, want context.Canceled", err)
			}
			if afterA.Load() != 0 || afterB.Load() != 0 {
				t.Errorf("next called after the cancellation: A %d times, B %d times", afterA.Load(), afterB.Load())
			}
			for _, v := range got {
				if v == 5 || v == 1003 {
					t.Errorf("item %d, taken after the cancellation, was delivered", v)
				}
			}
		})
	}
}
