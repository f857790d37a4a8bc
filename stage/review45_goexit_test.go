package stage_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// r45GoexitCtx embeds a standard cancellable context; its Value calls
// runtime.Goexit (as t.Fatal or t.FailNow in a test's fake context would)
// the first time context.AfterFunc asks it, that is as the run hooks it
// (armWake's hook, run_userctx.go).
type r45GoexitCtx struct {
	context.Context
	goexits atomic.Int64
}

func (c *r45GoexitCtx) Value(key any) any {
	if calledFrom("context.AfterFunc") && c.goexits.CompareAndSwap(0, 1) {
		runtime.Goexit() // once: the deferred calls run with this stack below them
	}
	return c.Context.Value(key)
}

// TestReview45UntilStopGoexitWhenHooked: the same for Until's stop
// context, hooked as the Until is opened, on the sink's goroutine, with no
// lock held: the Goexit ends the sink's goroutine (ErrGoexit's doc: "the
// sink does not return"), whose deferred finish must still end. hook
// counted the hook in run.hooks before context.AfterFunc and never
// releases it (enterScope appends it to untilHooks only once hook
// returned), so finish waits in hooks.Wait for ever.
func TestReview45UntilStopGoexitWhenHooked(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		inner, cancel := context.WithCancel(context.Background())
		defer cancel()
		stop := &r45GoexitCtx{Context: inner}
		var stopped atomic.Bool
		in := stage.Map(stage.Until(countingSource(func() {}, &stopped), stop), double, stage.Workers(2))
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			_ = stage.Run(context.Background(), in, func(context.Context, int, error) error { return stage.ErrStop })
		}()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("the sink's goroutine did not end (%d Goexits in the stop's Value as it was hooked)", stop.goexits.Load())
		}
		if stop.goexits.Load() == 0 {
			t.Fatal("the stop context was never hooked: the test did not test")
		}
	})
}
