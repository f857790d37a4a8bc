package stage_test

// Review 79 (fresh eyes on 930c845: every failure but the sink callback's
// yields to a parent's end on its way). A failure dropped because the
// parent's end is on its way leaves the run to that end: it must still end
// by itself, without waiting for the watcher to pass the parent's end on,
// as every other path does under review66's gated type (whose Err waits
// until the run's own context is done: run_end.go, "It asks the parent
// nothing: its Err may wait for the run's end").

import (
	"context"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r79Gated is a caller's context type with its own Done channel whose Err,
// once Done is closed, waits until the gate opens; the gate opens once the
// context handed to seen (a context of the run's) is done.
type r79Gated struct {
	*ctxtest.DoneCtx
	gate chan struct{}
	once sync.Once
}

func newR79Gated() *r79Gated {
	return &r79Gated{DoneCtx: ctxtest.NewDoneCtx(), gate: make(chan struct{})}
}

func (c *r79Gated) Err() error {
	err := c.DoneCtx.Err()
	if err != nil {
		<-c.gate
	}
	return err
}

func (c *r79Gated) open() { c.once.Do(func() { close(c.gate) }) }

// seen opens the gate once ctx is done (or the test ends).
func (c *r79Gated) seen(ctx context.Context, stop <-chan struct{}) {
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		c.open()
	}()
}

// TestReview79CheckDroppedUnderGatedParent: the caller cancels its ctx in
// an observer's Stage while the pipeline is opened, then the Tee check
// fails at start (a branch nobody reads). Since 930c845 the check's
// failure is dropped (the parent's end is on its way), start returns
// without starting the run's goroutines, and the sink pulls from a queue
// no goroutine will ever write: only the watcher's cancellation can wake
// it. Under a parent whose Err waits for the run's end, nothing does.
// Before 930c845 the check failed the run (the run cancelled its own
// context), and the sink returned ErrUnconsumedBranch at once.
func TestReview79CheckDroppedUnderGatedParent(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		p := newR79Gated()
		stop := make(chan struct{})
		defer close(stop)
		defer p.open()
		o := &r74obs{hook: func(n int, _ stage.Info) {
			if n == 1 {
				p.Cancel()
			}
		}}
		src := stage.Source(func(ctx context.Context) (func(context.Context) (int, error), func()) {
			p.seen(ctx, stop) // the sources' context, which ends with the run's
			return func(context.Context) (int, error) { return 1, nil }, nil
		})
		b := stage.Tee(stage.Map(src, double), 2)
		var err error
		runcheck.NoHang(t, "count", func() {
			_, err = sink.Count(stage.Observe(p, o), stage.Map(b[0], double))
		})
		if !r74isCanceled(err) {
			t.Errorf("err = %v; want context.Canceled (the caller's cancellation came first)", err)
		}
	})
}
