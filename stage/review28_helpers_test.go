package stage_test

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// r28Watchdog is the only duration the review28 tests depend on: a hang
// watchdog. (A few tests also sleep briefly to widen a race window; no
// verdict depends on that sleep when the promise holds.)
const r28Watchdog = 20 * time.Second

func r28Wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(r28Watchdog):
		t.Fatalf("hung waiting for %s", what)
	}
}

// r28Go runs f in a goroutine and returns a channel closed when it returns.
func r28Go(f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	return done
}

// r28Acks records Done calls for items 0..n-1 of an AckSource.
type r28Acks struct {
	mu     sync.Mutex
	calls  map[int][]error
	nexts  atomic.Int64
	ended  atomic.Bool // set when the sink returned: Done after it is a bug
	late   atomic.Int64
	onNext func(i int)
}

func newR28Acks() *r28Acks { return &r28Acks{calls: map[int][]error{}} }

type r28Ack struct {
	a  *r28Acks
	id int
}

func (k r28Ack) Done(err error) {
	if k.a.ended.Load() {
		k.a.late.Add(1)
	}
	k.a.mu.Lock()
	defer k.a.mu.Unlock()
	k.a.calls[k.id] = append(k.a.calls[k.id], err)
}

func (a *r28Acks) source(n int) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i >= n {
				return 0, nil, io.EOF
			}
			id := i
			i++
			a.nexts.Add(1)
			if a.onNext != nil {
				a.onNext(id)
			}
			return id, r28Ack{a, id}, nil
		}, nil
	})
}

// get returns the Done calls of item id.
func (a *r28Acks) get(id int) []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]error(nil), a.calls[id]...)
}

// atMostOnce fails t for any item told more than once, or told after the
// sink returned.
func (a *r28Acks) atMostOnce(t *testing.T) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, c := range a.calls {
		if len(c) > 1 {
			t.Errorf("item %d: Done called %d times: %v", id, len(c), c)
		}
	}
	if n := a.late.Load(); n > 0 {
		t.Errorf("%d Done calls after the sink returned", n)
	}
}

// r28Obs is an Observer whose watchers call hooks (nil: nothing).
type r28Obs struct {
	stage    func(info stage.Info) bool // watch this stage?
	received func(info stage.Info)
	finished func(info stage.Info, err error)
}

func (o *r28Obs) Stage(info stage.Info) stage.Watcher {
	if o.stage != nil && !o.stage(info) {
		return nil
	}
	return &r28Watcher{o: o, info: info}
}

type r28Watcher struct {
	o    *r28Obs
	info stage.Info
}

func (w *r28Watcher) Received() {
	if w.o.received != nil {
		w.o.received(w.info)
	}
}

func (w *r28Watcher) Finished(_ time.Duration, err error) {
	if w.o.finished != nil {
		w.o.finished(w.info, err)
	}
}
func (w *r28Watcher) Closed() {}

// r28Calls records the items a function was called for.
type r28Calls struct {
	mu    sync.Mutex
	items []int
}

func (c *r28Calls) add(v int) {
	c.mu.Lock()
	c.items = append(c.items, v)
	c.mu.Unlock()
}

func (c *r28Calls) list() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.items...)
}
