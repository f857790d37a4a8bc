package source_test

// Review 62: a Seq iterator whose clean-up (a deferred call) panics when the
// run stops it, for each way the run ends.

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "A panic in seq becomes a *stage.PanicError in a *stage.SourceError", also
// in the iterator's deferred calls that run when it is stopped; stage.Source:
// "a panic in open, next or stop becomes a *SourceError that ends the run
// ... the run fails with that error as it is, unless its result was decided
// first (a failure, a cancellation, an early stop)". So a clean-up panic
// fails a drained run (Until: drain is the end of the input, not a decided
// result), while a cancelled run still reports the cancellation and a run
// stopped with ErrStop returns nil.
func TestReview62SeqCleanupPanicByHowTheRunEnds(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		mk := func(reached chan<- struct{}) stage.Stream[int] {
			return source.Seq(func(yield func(int) bool) {
				defer func() { panic("review62 cleanup") }()
				for i := 0; ; i++ {
					if i == 5 && reached != nil {
						close(reached)
					}
					if !yield(i) {
						return
					}
				}
			})
		}
		id := func(_ context.Context, v int) (int, error) { return v, nil }
		for _, workers := range []int{0, 1, 3} {
			over := func(s stage.Stream[int]) stage.Stream[int] {
				if workers == 0 {
					return s
				}
				return stage.Map(s, id, stage.Workers(workers))
			}

			// drained with Until: the clean-up panic fails the run.
			reached := make(chan struct{})
			stop, drain := context.WithCancel(context.Background())
			s := over(stage.Until(mk(reached), stop))
			var err error
			runcheck.Run(t, "drain", func() {
				err = sink.ForEach(context.Background(), s, func(context.Context, int) error {
					select {
					case <-reached:
						drain()
					default:
					}
					return nil
				})
			})
			var se *stage.SourceError
			var pe *stage.PanicError
			if !errors.As(err, &se) || !errors.As(err, &pe) {
				t.Errorf("workers %d: drained run whose iterator panicked when stopped: %v; want a *PanicError in a *SourceError", workers, err)
			}
			drain()

			// cancelled: the cancellation decided the result first.
			ctx, cancel := context.WithCancel(context.Background())
			runcheck.Run(t, "cancel", func() {
				err = sink.ForEach(ctx, over(mk(nil)), func(_ context.Context, v int) error {
					if v == 3 {
						cancel()
					}
					return nil
				})
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("workers %d: cancelled run whose iterator panicked when stopped: %v; want Canceled", workers, err)
			}

			// ErrStop: nil "whatever happened meanwhile".
			runcheck.Run(t, "stop", func() {
				err = sink.ForEach(context.Background(), over(mk(nil)), func(_ context.Context, v int) error {
					if v == 3 {
						return stage.ErrStop
					}
					return nil
				})
			})
			if err != nil {
				t.Errorf("workers %d: ErrStop run whose iterator panicked when stopped: %v; want nil", workers, err)
			}

			// a failing stage decided it first.
			runcheck.Run(t, "failfast", func() {
				_, err = sink.Slice(context.Background(), stage.Map(mk(nil), func(_ context.Context, v int) (int, error) {
					if v == 3 {
						return 0, errReview62
					}
					return v, nil
				}, stage.Workers(max(workers, 1))))
			})
			if !errors.Is(err, errReview62) {
				t.Errorf("workers %d: FailFast run whose iterator panicked when stopped: %v; want the stage's error", workers, err)
			}
		}
	})
}
