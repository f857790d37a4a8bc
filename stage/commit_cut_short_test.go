package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// Ack's and Run's docs: a sink callback that, once the run was ending,
// returned an error that says so (the context's error, or the run's cause,
// as errors.Is finds them) had its commit cut short: the item's fate is
// unknown and Done is not called (a broker redelivers it; before, it was
// told the error, and a connector counted a failed attempt or dead-lettered
// it on its last delivery). Any other error, or one returned while the run
// was live, is a failed commit, told.
func TestCommitCutShortIsNotAFailure(t *testing.T) {
	errCommit := errors.New("commit failed")
	for _, c := range []struct {
		name   string
		cancel bool // the caller cancels the run's context first
		ret    func(ctx context.Context) error
		want   string // item 0's fate
	}{
		{"ctx.Err", true, func(ctx context.Context) error { return ctx.Err() }, "none"},
		{"wrapped-ctx.Err", true, func(ctx context.Context) error { return fmt.Errorf("write: %w", ctx.Err()) }, "none"},
		{"cause", true, func(ctx context.Context) error { return context.Cause(ctx) }, "none"},
		{"other-error", true, func(context.Context) error { return errCommit }, "err: commit failed"},
		{"canceled-while-live", false, func(context.Context) error { return context.Canceled }, "err: context canceled"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newRvAcks()
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			var err error
			rvRun(t, func() {
				err = stage.Run(ctx, a.source(ints(1)), func(ctx context.Context, v int, _ error) error {
					if c.cancel {
						cancel(errors.New("shutdown"))
						<-ctx.Done()
					}
					return c.ret(ctx)
				})
			})
			if err == nil {
				t.Errorf("Run = nil, want an error")
			}
			if got := a.fate(0); got != c.want {
				t.Errorf("item 0: %s, want %s (Run returned %v)", got, c.want, err)
			}
		})
	}
}
