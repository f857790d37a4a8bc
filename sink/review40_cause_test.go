package sink_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// TestReview40CancelWithCause attacks "when ctx was cancelled, an error for
// which errors.Is(err, context.Canceled) (or context.DeadlineExceeded) holds"
// with a ctx cancelled with a cause (context.WithCancelCause,
// WithDeadlineCause): every sink, every shape. The cause is not the error
// the sink must return; context.Canceled must be in it. A stage function
// blocks until ctx ends, so the cancellation comes before the end of s.
func TestReview40CancelWithCause(t *testing.T) {
	for sname, run := range r40Sinks() {
		for shname, sh := range r40Shapes() {
			for _, kind := range []string{"cause", "deadline-cause"} {
				t.Run(sname+"/"+shname+"/"+kind, func(t *testing.T) {
					w := newR40World(false)
					s := sh.build(w, w.source(), w.fn("cancel", 20))
					var ctx context.Context
					var cancel func()
					want := context.Canceled
					if kind == "cause" {
						c, cc := context.WithCancelCause(context.Background())
						ctx, cancel = c, func() { cc(errR40) }
					} else {
						// The deadline is an event here: the held call waits
						// for it; no verdict depends on when it comes.
						c, cc := context.WithDeadlineCause(context.Background(), time.Now().Add(time.Hour), errR40)
						ctx, cancel = c, cc
					}
					defer cancel()
					go func() {
						select {
						case <-w.reached:
							cancel()
						case <-time.After(runcheck.Watchdog):
						}
					}()
					var r r40Result
					runcheck.Run(t, sname, func() { r = run(ctx, s) })
					if !errors.Is(r.err, want) {
						t.Fatalf("ctx cancelled with cause %v: sink returned %v; want an error for which errors.Is(err, %v)", errR40, r.err, want)
					}
					var se *stage.Error
					if errors.As(r.err, &se) && sname != "all" {
						t.Errorf("a cancelled run returned a *stage.Error: %v", r.err)
					}
				})
			}
		}
	}
}

// TestReview40DeadlineWithCause: a ctx whose deadline passes (with a cause):
// the sink's error must satisfy errors.Is(err, context.DeadlineExceeded).
func TestReview40DeadlineWithCause(t *testing.T) {
	for sname, run := range r40Sinks() {
		t.Run(sname, func(t *testing.T) {
			w := newR40World(false)
			s := r40Shapes()["keyby-ordered"].build(w, w.source(), w.fn("cancel", 20))
			ctx, cancel := context.WithTimeoutCause(context.Background(), time.Millisecond, errR40)
			defer cancel()
			var r r40Result
			runcheck.Run(t, sname, func() { r = run(ctx, s) })
			if !errors.Is(r.err, context.DeadlineExceeded) {
				t.Fatalf("ctx past its deadline (cause %v): sink returned %v; want errors.Is(err, context.DeadlineExceeded)", errR40, r.err)
			}
		})
	}
}
