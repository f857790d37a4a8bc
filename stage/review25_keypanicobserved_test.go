package stage_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review25Watch counts a stage's Received calls and the Attempts of the
// *Error its Finished calls carry.
type review25Watch struct {
	received, finished atomic.Int64
	zeroAttempts       atomic.Int64
}

func (w *review25Watch) Stage(stage.Info) stage.Watcher { return w }
func (w *review25Watch) Received()                      { w.received.Add(1) }
func (w *review25Watch) Finished(_ time.Duration, err error) {
	w.finished.Add(1)
	var e *stage.Error
	if errors.As(err, &e) && e.Attempts == 0 {
		w.zeroAttempts.Add(1)
	}
}
func (w *review25Watch) Closed() {}

// Watcher.Received: "the stage took an item and is about to call its
// function on it (or, when its KeyBy key function panicked, to hand it to
// the policy without a call: Finished then gets its *Error, of Attempts
// 0)". (The fresh-eyes review found Received promising a call for an item
// that Attempts 0 says was never tried; the doc now says what is
// reported.) Received counts the calls plus the items whose key panicked,
// and exactly those Finished calls carry an *Error of Attempts 0.
func TestReview25KeyPanicItemIsReportedWithZeroAttempts(t *testing.T) {
	var calls atomic.Int64
	w := &review25Watch{}
	ctx := stage.Observe(context.Background(), w)
	s := stage.Map(source.Slice([]int{0, 1, 2}), func(_ context.Context, v int) (int, error) {
		calls.Add(1)
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward), stage.KeyBy(func(v int) int {
		if v == 1 {
			panic("review25: key")
		}
		return v
	}))
	failed := 0
	err := stage.Run(ctx, s, func(_ context.Context, _ int, err error) error {
		if err != nil {
			failed++
		}
		return nil
	})
	if err != nil || failed != 1 {
		t.Fatalf("Run = %v with %d forwarded errors, want nil and 1", err, failed)
	}
	if got, want := w.received.Load(), calls.Load()+1; got != want || w.finished.Load() != want || w.zeroAttempts.Load() != 1 {
		t.Errorf("Received %d, Finished %d (%d of Attempts 0) for %d calls and 1 key that panicked; want %d, %d (1)", got, w.finished.Load(), w.zeroAttempts.Load(), calls.Load(), want, want)
	}
}
