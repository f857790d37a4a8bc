package stage_test

// Review 55 (fresh eyes on run.go): a FailFast item error that arrives
// while the caller's cancellation is on its way to the run's context (the
// parent's Done is closed, the run's context not yet cancelled) is not the
// run's failure (see run.fail), yet the failing worker stops; if it
// was its queue's last writer, the sink saw its stream end while the run
// was not cancelled, took that for a complete run, and Run returned nil:
// an item had failed, nothing reached f, and the caller's ctx was
// cancelled before the end. Run's doc says the result is then an error for
// which errors.Is(err, context.Canceled) holds (or the *Error), never nil.
// Now the sink takes a stream end for the run's only while the parent has
// not ended (run.sawEnd).
//
// The window is made wide with a caller's context type that has its own
// Done channel (the run watches it from a goroutine of its own,
// run_userctx.go's watched) and whose Err waits for a gate: the watcher
// passes the parent's end on only once the gate opens. The gate opens 200
// ms after the failure, only so that a broken library shows its fault; a
// correct one returns an error whatever the timing, so no verdict depends
// on the delay. The first case, whose Err answers at once, is the control.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r55SlowErrCtx struct {
	done chan struct{}
	gate chan struct{}
}

func (c *r55SlowErrCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *r55SlowErrCtx) Done() <-chan struct{}       { return c.done }
func (c *r55SlowErrCtx) Value(any) any               { return nil }
func (c *r55SlowErrCtx) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	<-c.gate // slow: the run's watcher of this context waits here
	return context.Canceled
}

func TestReview55FailureWhileParentEndingIsLost(t *testing.T) {
	for _, c := range []struct {
		workers int
		slow    bool // false: the control, Err answers at once
		more    []stage.Option
	}{{1, false, nil}, {1, true, nil}, {2, true, nil}, {2, true, []stage.Option{stage.Ordered()}}} {
		workers := c.workers
		parent := &r55SlowErrCtx{done: make(chan struct{}), gate: make(chan struct{})}
		if !c.slow {
			close(parent.gate)
		}
		boom := errors.New("boom")
		s := stage.Map(source.Slice([]int{1}), func(ctx context.Context, v int) (int, error) {
			close(parent.done) // the caller cancels; its end is on its way
			// Open the gate a while later, so that the run's watcher can pass
			// the end on (finish waits for it).
			if c.slow {
				time.AfterFunc(200*time.Millisecond, func() { close(parent.gate) })
			}
			return 0, boom // FailFast: an item error, while the parent is ending
		}, append([]stage.Option{stage.Workers(workers)}, c.more...)...)
		var seen int
		err := stage.Run(parent, s, func(context.Context, int, error) error { seen++; return nil })
		if seen != 0 {
			t.Fatalf("workers=%d: f saw %d items, want 0", workers, seen)
		}
		t.Logf("workers=%d slow=%v ordered=%v: stage.Run = %v", workers, c.slow, len(c.more) > 0, err)
		if err == nil {
			t.Errorf("workers=%d slow=%v more=%d: stage.Run = nil; want the *Error or context.Canceled: an item failed and the caller cancelled before the end", workers, c.slow, len(c.more))
		}
	}
}
