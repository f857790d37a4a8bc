package sink_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Stage doc, Leaks: "Sources release what they hold (an iterator is
// stopped) before the sink returns" — on every ending; Seq doc: "when the
// run ends, early or not, the iterator is stopped (its deferred calls run)
// before the sink returns".
func TestReview68SeqStoppedBeforeTheSinkReturns(t *testing.T) {
	for _, end := range []string{"success", "first", "break", "errstop", "failfast", "cancel", "cancel userctx", "callback panic", "until"} {
		t.Run(end, func(t *testing.T) {
			var stopped atomic.Bool
			seq := func(yield func(int) bool) {
				defer stopped.Store(true)
				for i := range 100 {
					if !yield(i) {
						return
					}
				}
			}
			kind := "std"
			if end == "cancel userctx" {
				kind = ctxtest.Own
			}
			ctx, cancel := r68CancelPair(kind)
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			s := stage.Map(stage.Until(source.Seq(seq), stop), func(_ context.Context, v int) (int, error) {
				if end == "failfast" && v == 10 {
					return 0, r68ErrBoom
				}
				return v, nil
			}, stage.Workers(3))
			var stoppedAtReturn bool
			runcheck.Run(t, end, func() {
				defer func() {
					if r := recover(); r != nil && end != "callback panic" {
						panic(r)
					}
					stoppedAtReturn = stopped.Load()
				}()
				switch end {
				case "first":
					_, _, _ = sink.First(ctx, s)
				case "break":
					for range sink.All(ctx, s) {
						break
					}
				default:
					n := 0
					_ = sink.ForEach(ctx, s, func(context.Context, int) error {
						n++
						if n == 5 {
							switch end {
							case "errstop":
								return stage.ErrStop
							case "cancel", "cancel userctx":
								cancel()
							case "callback panic":
								panic("r68")
							case "until":
								drain()
							}
						}
						return nil
					})
				}
			})
			if !stoppedAtReturn {
				t.Errorf("the iterator was not stopped when the sink returned")
			}
		})
	}
}
