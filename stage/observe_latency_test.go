package stage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// latencyWatcher records every Finished of every stage, and signals each
// Received on received (if set).
type latencyWatcher struct {
	received   chan struct{}
	mu         sync.Mutex
	finished   []finishedCall
	receivedAt time.Time // the last Received
}

type finishedCall struct {
	latency time.Duration
	err     error
}

func (w *latencyWatcher) Stage(stage.Info) stage.Watcher { return w }
func (w *latencyWatcher) Received() {
	w.mu.Lock()
	w.receivedAt = time.Now()
	w.mu.Unlock()
	if w.received != nil {
		w.received <- struct{}{}
	}
}
func (w *latencyWatcher) Closed() {}
func (w *latencyWatcher) Finished(d time.Duration, err error) {
	w.mu.Lock()
	w.finished = append(w.finished, finishedCall{d, err})
	w.mu.Unlock()
}

// The Watcher doc: latency runs to the end of the last attempt and counts
// Retry's backoff. Retry promises a wait of at least backoff/2 before the
// first retry, so the reported latency cannot be less, however fast or
// slow the machine.
func TestWatcherLatencyCountsRetryBackoff(t *testing.T) {
	const backoff = 80 * time.Millisecond
	w := &latencyWatcher{}
	ctx := stage.Observe(context.Background(), w)
	calls := 0
	var between time.Duration
	var last time.Time
	f := func(context.Context, int) (int, error) {
		calls++
		now := time.Now()
		if calls == 2 {
			between = now.Sub(last)
		}
		last = now
		if calls == 1 {
			return 0, errors.New("try again")
		}
		return 1, nil
	}
	got, err := sink.Slice(ctx, stage.Map(source.Slice([]int{0}), f, stage.Workers(1), stage.Retry(2, backoff)))
	if err != nil || len(got) != 1 {
		t.Fatalf("Slice = %v, %v; want one value", got, err)
	}
	if len(w.finished) != 1 || w.finished[0].err != nil {
		t.Fatalf("Finished calls %+v; want one, successful", w.finished)
	}
	if between < backoff/2 {
		t.Fatalf("the retry came %v after the first attempt; Retry promises at least %v", between, backoff/2)
	}
	if l := w.finished[0].latency; l < between {
		t.Fatalf("latency %v is less than the %v between the attempts: the backoff was not counted", l, between)
	}
}

// The Watcher doc: a wait for a RateLimit token counts in the call. A call
// whose token never comes (its bucket is spent and refills in an hour) is
// received, then cut short when the run ends, and reported as such.
func TestWatcherReportsACallCutShortWhileWaitingForItsToken(t *testing.T) {
	l := rate.NewLimiter(rate.Every(time.Hour), 1)
	if !l.Allow() { // spend the only token
		t.Fatal("a new limiter has no token")
	}
	w := &latencyWatcher{received: make(chan struct{}, 1)}
	run, cancel := context.WithCancel(stage.Observe(context.Background(), w))
	defer cancel()
	called := false
	f := func(context.Context, int) (int, error) { called = true; return 1, nil }
	done := make(chan error, 1)
	go func() {
		_, err := sink.Slice(run, stage.Map(source.Slice([]int{0}), f, stage.Workers(1), stage.SharedRateLimit(l)))
		done <- err
	}()
	<-w.received // the item is taken; its call waits for a token
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run = %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute): // a hang watchdog
		t.Fatal("the run did not end when cancelled while a call waited for its token")
	}
	if called {
		t.Fatal("the function was called without a token")
	}
	if len(w.finished) != 1 || !errors.Is(w.finished[0].err, context.Canceled) {
		t.Fatalf("Finished calls %+v; want one, cut short (context.Canceled)", w.finished)
	}
}

// The Watcher doc: a wait for a RateLimit token counts in the latency. The
// bucket's only token is spent before the run, so the call starts about a
// second after the item was received; the latency, which runs from
// Received, must cover that wait. (If the machine was so slow that the
// token came back before the item was received, there was no wait to see.)
func TestWatcherLatencyCountsTheWaitForAToken(t *testing.T) {
	l := rate.NewLimiter(rate.Every(time.Second), 1)
	if !l.Allow() {
		t.Fatal("a new limiter has no token")
	}
	w := &latencyWatcher{}
	ctx := stage.Observe(context.Background(), w)
	var started time.Time
	f := func(context.Context, int) (int, error) { started = time.Now(); return 1, nil }
	if _, err := sink.Slice(ctx, stage.Map(source.Slice([]int{0}), f, stage.Workers(1), stage.SharedRateLimit(l))); err != nil {
		t.Fatal(err)
	}
	waited := started.Sub(w.receivedAt)
	if waited < 100*time.Millisecond {
		t.Skipf("the call started %v after the item was received: no wait for the token to see", waited)
	}
	if len(w.finished) != 1 || w.finished[0].err != nil {
		t.Fatalf("Finished calls %+v; want one, successful", w.finished)
	}
	if l := w.finished[0].latency; l < waited/2 {
		t.Fatalf("latency %v, although the call started %v after the item was received: the wait for the token was not counted", l, waited)
	}
}
