package stage_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// Ack: "Done(err) as soon as its way failed, with the first error: a
// forwarded *Error it led to reached the sink [...]". Run: an item for
// which f returned nil is released with the forwarded error it carries,
// so its source is told it failed.
//
// ae73197 abandons an item whose sink callback, once the run was ending,
// returned an error that errors.Is finds context.Canceled /
// DeadlineExceeded / the run's cause. The branch does not look at whether
// the item carried a forwarded error: a forwarded item, whose failure is
// known (it reached the sink), is then never told, only because f
// returned an error while the run was ending (here: f returns the
// forwarded error itself, which wraps a per-call DeadlineExceeded; or f's
// write of the failure saw the run's context end). Before ae73197 the item
// was told (Done(err)); with f returning nil it is told the forwarded
// error. A broker source thus loses the failed attempt (kafka's Attempts
// count, natsjs's delayed Nak).
func TestReview21ForwardedItemCutShortCommitStillFailed(t *testing.T) {
	callTimeout := fmt.Errorf("lookup: %w", context.DeadlineExceeded) // a stage's own per-call timeout
	for _, c := range []struct {
		name string
		ret  func(ctx context.Context, fwd error) error
	}{
		{"returns-forwarded", func(_ context.Context, fwd error) error { return fwd }},
		{"write-saw-ctx-end", func(ctx context.Context, _ error) error { return ctx.Err() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newRvAcks()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := stage.Map(a.source(ints(1)), func(context.Context, int) (int, error) {
				return 0, callTimeout
			}, stage.OnError(stage.Forward))
			var err error
			rvRun(t, func() {
				err = stage.Run(ctx, s, func(ctx context.Context, _ int, fwd error) error {
					if fwd == nil {
						return nil
					}
					// The sink records the failure; a shutdown arrives
					// meanwhile (gate: the cancel itself, then its end).
					cancel()
					<-ctx.Done()
					return c.ret(ctx, fwd)
				})
			})
			if err == nil {
				t.Errorf("Run = nil, want an error")
			}
			if got := a.fate(0); !strings.HasPrefix(got, "err: ") {
				t.Errorf("item 0 (its forwarded error reached the sink): %s, want Done(err) (Run returned %v)", got, err)
			}
		})
	}
}
