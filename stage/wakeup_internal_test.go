package stage

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestFirstArmAfterFinish: armWake's protocol says that from the
// moment a goroutine may sleep, whatever cancels the run wakes it, and
// finish "waits for every goroutine and the cancellation hooks". Here a
// goroutine of the run first goes to a queue wait after finish has begun
// (after it looked at parentHook: a worker whose call was cut short by the
// sink's early stop and which then finds no token). Its armWake registers
// an AfterFunc on the (live, cancellable) parent and counts it in hooks;
// nobody ever stops that hook, so finish waits in hooks.Wait until the
// parent is cancelled — which a caller that does `defer cancel()` only
// does after the sink returned: the sink hangs.
func TestFirstArmAfterFinish(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newRun(parent)
	q := newQueue[int](r, 0, 1) // no token free: acquire must wait
	r.goroutine(func() {
		<-r.ctx.Done() // the sink has stopped: finish cancelled the run
		for {          // ... and finish has looked at armed and parentHook
			r.mu.Lock()
			w := r.woken
			r.mu.Unlock()
			if w {
				break
			}
			runtime.Gosched()
		}
		q.acquire() // the first wait of the run: arms, sees the run cancelled
	})
	r.start()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.finish()
	}()
	select {
	case <-done:
		return
	case <-time.After(10 * time.Second): // a watchdog, no duration asserted
	}
	cancel() // release the hook, so that the run ends and goleak is content
	select {
	case <-done:
		t.Fatal("run.finish hung in hooks.Wait until the parent context was cancelled: the parent hook armed after finish had looked at parentHook is never stopped")
	case <-time.After(10 * time.Second):
		t.Fatal("run.finish hung, even after the parent was cancelled")
	}
}
