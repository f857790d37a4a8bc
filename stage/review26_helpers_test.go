package stage_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// r26Watchdog is the only duration these tests use: a hang watchdog.
const r26Watchdog = 20 * time.Second

// r26Wait waits for ch; it fails the test after the watchdog.
func r26Wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(r26Watchdog):
		t.Fatalf("hung waiting for %s", what)
	}
}

// r26Acks records every Done call of an AckSource whose items are 0..n-1,
// and every call of next and stop.
type r26Acks struct {
	mu       sync.Mutex
	calls    map[int][]error
	nexts    int
	stops    int
	inNext   int // next calls in progress (never more than one, promised)
	overlap  bool
	afterEOF bool
	eof      bool
	slowNext func()                  // called in every next, outside the lock (widens races)
	onDone   func(id int, err error) // called in every Done, before it is recorded
}

// check reports the promises of Source broken so far: next overlapping
// itself, next after io.EOF, stop not called exactly once.
func (a *r26Acks) check(t *testing.T, stops int) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.overlap {
		t.Error("next was called concurrently")
	}
	if a.afterEOF {
		t.Error("next was called after it returned io.EOF")
	}
	if a.stops != stops {
		t.Errorf("stop called %d times, want %d", a.stops, stops)
	}
}

func newR26Acks() *r26Acks { return &r26Acks{calls: map[int][]error{}} }

type r26Ack struct {
	a  *r26Acks
	id int
}

func (k r26Ack) Done(err error) {
	if k.a.onDone != nil {
		k.a.onDone(k.id, err)
	}
	k.a.mu.Lock()
	defer k.a.mu.Unlock()
	k.a.calls[k.id] = append(k.a.calls[k.id], err)
}

// source is an AckSource of 0..n-1, each with its own Ack.
func (a *r26Acks) source(n int) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		next := func(context.Context) (int, stage.Ack, error) {
			a.mu.Lock()
			a.nexts++
			a.inNext++
			if a.inNext > 1 {
				a.overlap = true
			}
			if a.eof {
				a.afterEOF = true
			}
			a.mu.Unlock()
			defer func() {
				a.mu.Lock()
				a.inNext--
				a.mu.Unlock()
			}()
			if a.slowNext != nil {
				a.slowNext()
			}
			if i == n {
				a.mu.Lock()
				a.eof = true
				a.mu.Unlock()
				return 0, nil, io.EOF
			}
			i++
			return i - 1, r26Ack{a, i - 1}, nil
		}
		stop := func() {
			a.mu.Lock()
			a.stops++
			a.mu.Unlock()
		}
		return next, stop
	})
}

// fate is "unsettled", "nil", the single error's text, or "TWICE: ..." when
// Done was called more than once.
func (a *r26Acks) fate(id int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.calls[id]
	switch len(c) {
	case 0:
		return "unsettled"
	case 1:
		if c[0] == nil {
			return "nil"
		}
		return c[0].Error()
	}
	return fmt.Sprintf("TWICE: %v", c)
}

func (a *r26Acks) errOf(id int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.calls[id]; len(c) > 0 {
		return c[0]
	}
	return nil
}

// r26AfterWatchdog is a hang watchdog's channel.
func r26AfterWatchdog() <-chan time.Time { return time.After(r26Watchdog) }
