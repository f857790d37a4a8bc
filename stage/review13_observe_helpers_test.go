package stage_test

// Helpers for the review13 observer tests. Written from the documentation of
// stage.Observe, stage.Observer, stage.Watcher, stage.Info, stage.Stats and
// stage.Logger only.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// r13oGID returns the current goroutine's id, parsed from runtime.Stack.
func r13oGID() uint64 {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	b := bytes.TrimPrefix(buf[:n], []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

// r13oRec is an Observer that records, per stage, what its Watcher is told.
type r13oRec struct {
	mu       sync.Mutex
	ws       []*r13oW
	stageGID []uint64
	// hook, if set, runs at the start of each Stage call.
	hook func(info stage.Info)
	// watch, if set, replaces the watcher returned for a stage (nil: a
	// recording watcher).
	mk func(info stage.Info, w *r13oW) stage.Watcher
}

type r13oW struct {
	info stage.Info

	received, finished, closed  atomic.Int64
	ok, failed, canceled, weird atomic.Int64
	// afterClosed counts Received/Finished calls made after Closed.
	afterClosed atomic.Int64
	closedGID   atomic.Uint64
	// at Closed: received and finished as they were then
	recvAtClose, finAtClose atomic.Int64

	mu        sync.Mutex
	weirdErrs []error
	failErrs  []*stage.Error
}

func (r *r13oRec) Stage(info stage.Info) stage.Watcher {
	if r.hook != nil {
		r.hook(info)
	}
	w := &r13oW{info: info}
	r.mu.Lock()
	r.ws = append(r.ws, w)
	r.stageGID = append(r.stageGID, r13oGID())
	r.mu.Unlock()
	if r.mk != nil {
		return r.mk(info, w)
	}
	return w
}

func (r *r13oRec) watchers() []*r13oW {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*r13oW(nil), r.ws...)
}

func (r *r13oRec) names() []string {
	var ns []string
	for _, w := range r.watchers() {
		ns = append(ns, w.info.Name)
	}
	return ns
}

// byName returns the single watcher of that name (fails the test otherwise).
func (r *r13oRec) byName(t *testing.T, name string) *r13oW {
	t.Helper()
	var found *r13oW
	for _, w := range r.watchers() {
		if w.info.Name == name {
			if found != nil {
				t.Fatalf("two watchers named %q", name)
			}
			found = w
		}
	}
	if found == nil {
		t.Fatalf("no watcher named %q; have %v", name, r.names())
	}
	return found
}

func (w *r13oW) Received() {
	if w.closed.Load() != 0 {
		w.afterClosed.Add(1)
	}
	w.received.Add(1)
}

func (w *r13oW) Finished(_ time.Duration, err error) {
	if w.closed.Load() != 0 {
		w.afterClosed.Add(1)
	}
	w.finished.Add(1)
	var se *stage.Error
	switch e, isErr := err.(*stage.Error); {
	case err == nil:
		w.ok.Add(1)
	case isErr:
		w.failed.Add(1)
		w.mu.Lock()
		w.failErrs = append(w.failErrs, e)
		w.mu.Unlock()
	case errors.Is(err, context.Canceled) && !errors.As(err, &se):
		w.canceled.Add(1)
	default:
		w.weird.Add(1)
		w.mu.Lock()
		w.weirdErrs = append(w.weirdErrs, err)
		w.mu.Unlock()
	}
}

func (w *r13oW) Closed() {
	w.recvAtClose.Store(w.received.Load())
	w.finAtClose.Store(w.finished.Load())
	w.closedGID.Store(r13oGID())
	w.closed.Add(1)
}

// check asserts the invariants every watcher must hold once the sink returned:
// Closed once, every Received finished, nothing after Closed, no Finished
// error outside the three documented classes.
func (w *r13oW) check(t *testing.T) {
	t.Helper()
	if c := w.closed.Load(); c != 1 {
		t.Errorf("%s: Closed called %d times, want 1", w.info.Name, c)
	}
	if r, f := w.received.Load(), w.finished.Load(); r != f {
		t.Errorf("%s: Received %d, Finished %d: in flight %d after the sink returned", w.info.Name, r, f, r-f)
	}
	if a := w.afterClosed.Load(); a != 0 {
		t.Errorf("%s: %d events after Closed", w.info.Name, a)
	}
	if w.recvAtClose.Load() != w.received.Load() || w.finAtClose.Load() != w.finished.Load() {
		t.Errorf("%s: counts moved after Closed: received %d->%d finished %d->%d", w.info.Name,
			w.recvAtClose.Load(), w.received.Load(), w.finAtClose.Load(), w.finished.Load())
	}
	if n := w.weird.Load(); n != 0 {
		w.mu.Lock()
		t.Errorf("%s: %d Finished errors that are neither nil, an unwrapped *stage.Error, nor a cancellation: %v", w.info.Name, n, w.weirdErrs)
		w.mu.Unlock()
	}
}

// r13oWatchdog fails the test if f does not return in a long time: a hang
// detector, not a duration assertion.
func r13oWatchdog(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("hung; goroutines:\n%s", buf[:n])
	}
}

// r13oWait waits for a gate, with a hang watchdog.
func r13oWait(t *testing.T, what string, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatalf("hung waiting for %s", what)
	}
}

var errR13o = errors.New("review13 observe: boom")

type r13oPanicVal struct{ where string }

func (p r13oPanicVal) Error() string { return fmt.Sprintf("review13 panic in %s", p.where) }
