package stage_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// Retry and Timeout with an Ack: a call that ignores its Timeout ctx and
// returns nil after the deadline is a success (Done(nil) after the
// commit); under Retry the item is settled once, after its last attempt,
// with that attempt's error (never at an attempt that another follows).
func TestReview26AckRetryTimeout(t *testing.T) {
	t.Run("ignores-deadline", func(t *testing.T) {
		a := newR26Acks()
		s := stage.Map(a.source(1), func(ctx context.Context, x int) (int, error) {
			<-ctx.Done() // the deadline passed; the function ignores it and succeeds
			return x, nil
		}, stage.Timeout(time.Nanosecond), stage.Workers(2))
		err := stage.Run(context.Background(), s, func(context.Context, int, error) error {
			if f := a.fate(0); f != "unsettled" {
				t.Errorf("settled (%s) before the commit", f)
			}
			return nil
		})
		if err != nil || a.fate(0) != "nil" {
			t.Fatalf("Run = %v, item 0 %s; want nil, nil", err, a.fate(0))
		}
		a.check(t, 1)
	})
	t.Run("retry-last-attempt", func(t *testing.T) {
		a := newR26Acks()
		var attempts atomic.Int32
		var atDone atomic.Int32
		a.onDone = func(int, error) { atDone.Store(attempts.Load()) }
		errLast := errors.New("third attempt")
		s := stage.Map(a.source(1), func(ctx context.Context, x int) (int, error) {
			if attempts.Add(1) < 3 {
				<-ctx.Done()
				return 0, ctx.Err() // DeadlineExceeded: retryable
			}
			return 0, errLast
		}, stage.Timeout(time.Nanosecond), stage.Retry(3, 0), stage.Workers(2))
		err := stage.Run(context.Background(), s, func(context.Context, int, error) error { return nil })
		var e *stage.Error
		if !errors.As(err, &e) || e.Attempts != 3 || !errors.Is(err, errLast) {
			t.Fatalf("Run = %v, want the third attempt's *Error", err)
		}
		if !errors.Is(a.errOf(0), errLast) || a.fate(0) == "unsettled" || len(a.fate(0)) > 5 && a.fate(0)[:5] == "TWICE" {
			t.Fatalf("item 0: %s, want Done(third attempt's error) once", a.fate(0))
		}
		if atDone.Load() != 3 {
			t.Fatalf("Done came after attempt %d, want after the 3rd", atDone.Load())
		}
		a.check(t, 1)
	})
}
