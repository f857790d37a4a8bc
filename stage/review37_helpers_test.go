package stage_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r37Watchdog is a hang detector only; no verdict depends on it.
const r37Watchdog = 25 * time.Second

var errR37 = errors.New("review37: trigger")

// r37Wait waits for ch to be closed (or to deliver), failing the test on a hang.
func r37Wait[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(r37Watchdog):
		t.Fatalf("hang: %s", what)
	}
}

// r37Do runs f and fails the test if it does not return before the watchdog.
func r37Do(t testing.TB, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	r37Wait(t, done, what)
}

// r37CountingN is a waiting source of 1..n.
func r37CountingN(n int) stage.Stream[int] {
	i := 0
	return source.Func(func(ctx context.Context) (int, error) {
		if i == n {
			return 0, errEOF
		}
		i++
		return i, nil
	})
}

// r37Jitter sometimes sleeps a little, to vary the order of completion.
func r37Jitter() {
	switch rand.IntN(8) {
	case 0:
		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
	case 1:
		time.Sleep(0)
	}
}

// r37Barrier is a cyclic barrier of n calls.
type r37Barrier struct {
	mu      sync.Mutex
	cond    *sync.Cond
	n       int
	in, gen int
}

func newR37Barrier(n int) *r37Barrier {
	b := &r37Barrier{n: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *r37Barrier) wait() {
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.gen
	if b.in++; b.in == b.n {
		b.in, b.gen = 0, b.gen+1
		b.cond.Broadcast()
		return
	}
	for g == b.gen {
		b.cond.Wait()
	}
}

// r37Laggard is a user function that ignores its ctx: it blocks until its
// gate opens and counts itself while it runs.
type r37Laggard struct {
	entered, gate, fired chan struct{}
	enterOnce, fireOnce  sync.Once
	running              atomic.Int32
}

func newR37Laggard() *r37Laggard {
	return &r37Laggard{entered: make(chan struct{}), gate: make(chan struct{}), fired: make(chan struct{})}
}

func (l *r37Laggard) hold() {
	l.running.Add(1)
	defer l.running.Add(-1)
	l.enterOnce.Do(func() { close(l.entered) })
	<-l.gate
}

func (l *r37Laggard) fire() { l.fireOnce.Do(func() { close(l.fired) }) }
