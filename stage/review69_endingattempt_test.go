package stage_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r69GatedCtx is a caller's own context type whose Err waits for a gate:
// the run's watcher, which asks Err once Done closed, then cannot pass the
// end on to the run's context until the test opens the gate.
type r69GatedCtx struct {
	*ctxtest.DoneCtx
	gate chan struct{}
}

func (c r69GatedCtx) Err() error {
	if c.DoneCtx.Err() != nil {
		<-c.gate
	}
	return c.DoneCtx.Err()
}

// r69Finished opens the gate when the stage reports its item finished.
type r69Finished struct{ gate chan struct{} }

func (o r69Finished) Stage(stage.Info) stage.Watcher { return o }
func (o r69Finished) Received()                      {}
func (o r69Finished) Closed()                        {}
func (o r69Finished) Finished(time.Duration, error)  { close(o.gate) }

// TestReview69NoRetryOnceDoneClosed: the Cancellation section's "from the
// moment its Done channel is closed ... no call starts", for a retry. The
// first attempt closes the caller's Done (a context type of its own, whose
// end the run's watcher passes on only once the gate opens) and fails;
// Retry(3, 0) would try again at once. No second attempt may start: the
// gate opens only when the stage reports the item finished, after the
// retry loop decided, so the count is decided by order. (A second attempt
// started before the fix: the loop asked only the run's context.) The same
// check guards an attempt whose rate-limit token came in that moment.
func TestReview69NoRetryOnceDoneClosed(t *testing.T) {
	gate := make(chan struct{})
	parent := r69GatedCtx{DoneCtx: ctxtest.NewDoneCtx(), gate: gate}
	var calls atomic.Int32
	m := stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
		if calls.Add(1) == 1 {
			parent.Cancel()
		}
		return 0, errors.New("r69: failed")
	}, stage.Retry(3, 0))
	var err error
	runcheck.Run(t, "retry", func() {
		_, err = sink.Slice(stage.Observe(parent, r69Finished{gate}), m)
	})
	if n := calls.Load(); n != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("%d calls, %v; want 1 call and context.Canceled", n, err)
	}
}
