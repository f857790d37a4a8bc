package stage_test

import (
	"context"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review59fStacks returns the stack of every goroutine, by id.
func review59fStacks() map[int64]string {
	_, all := runcheck.Goroutines()
	return all
}

// review59fParkedOnQueue reports whether st is a goroutine parked in a
// stage queue's wait for an output (sync.Cond wait under queue.wait).
func review59fParkedOnQueue(st string) bool {
	return strings.Contains(st, "sync.(*Cond).Wait") && strings.Contains(st, "stage.(*queue[...]).wait(")
}

// review59fReadySource is an Interruptible source whose items are always
// ready: it holds a slice of them from the start, and next (with a done
// context too) returns the next one at once, until the slice is empty.
// Its only wait: once the sink's goroutine has asked it (its handle then
// holds a place: only a place's holder asks), the first call from another
// goroutine (a goroutine of the stage) says so on holding and returns only
// once release is closed. That call holds the source's lock, as any call
// of next does, for as long as the test likes: it stands for a call in
// progress when the sink's handle asks.
type review59fReadySource struct {
	mu      sync.Mutex
	buf     []int
	sinkID  atomic.Int64
	hold    atomic.Bool
	held    atomic.Bool
	holding chan struct{}
	release chan struct{}
}

func newReview59fReadySource(n int) *review59fReadySource {
	s := &review59fReadySource{holding: make(chan struct{}), release: make(chan struct{})}
	s.buf = make([]int, n)
	for i := range s.buf {
		s.buf[i] = i
	}
	return s
}

func (s *review59fReadySource) ready() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buf)
}

func (s *review59fReadySource) pop() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.buf) == 0 {
		return 0, false
	}
	v := s.buf[0]
	s.buf = s.buf[1:]
	return v, true
}

func (s *review59fReadySource) stream() stage.Stream[int] {
	return stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(ctx context.Context) (int, error) {
			if id := auditGoid(); id == s.sinkID.Load() {
				s.hold.Store(true)
			} else if s.hold.Load() && s.held.CompareAndSwap(false, true) {
				close(s.holding)
				<-s.release
			}
			if v, ok := s.pop(); ok {
				return v, nil
			}
			return 0, io.EOF
		}, nil
	}))
}

// The Workers doc: "n >= 1: at most n, and with enough input and a
// consumer that keeps up exactly n (see below for a consumer that runs
// calls itself)". Below, the only exceptions: a consumer goroutine inside
// a call takes no output, and "over an Interruptible source, one that
// holds a place and found no item ready waits for an output with it: after
// the source was empty, fewer than n calls may run until outputs come"
// (the Interruptible doc says the same).
//
// Here the source is never empty: every item is ready from the start. The
// stage (Map, Workers(2), fused into the sink's one goroutine) has its
// second place with the sink's handle (it asked the source). A goroutine of
// the stage is then inside a call of next (holding the source's lock) when
// the handle asks again. The handle must not take the held lock for "no
// item ready": it would wait for an output with its place, and with the
// stage's one goroutine in a long call, one call would run while thousands
// of items are ready (a review found exactly that: the handle parked on
// the queue). It must wait for the lock instead, since the holder does not
// wait in the source (the source was not empty). The verdict is the sink's
// goroutine's state while the call is held, an order of events, not a
// time: parked in the queue's wait (the fault) or waiting for the
// source's lock in tryPull. Then every item must arrive.
func TestReview59fTryLockMissIsNotAnEmptySource(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const items = 100_000
		src := newReview59fReadySource(items)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sinkID := make(chan int64, 1)
		done := make(chan error, 1)
		var got atomic.Int64
		go func() {
			src.sinkID.Store(auditGoid())
			sinkID <- src.sinkID.Load()
			done <- sink.ForEach(ctx, stage.Map(src.stream(), review59fIdentity, stage.Workers(2)), func(context.Context, int) error {
				got.Add(1)
				return nil
			})
		}()
		id := <-sinkID
		select {
		case <-src.holding:
		case err := <-done:
			t.Fatalf("the run ended (%v) before a goroutine of the stage asked the source after the sink's handle did: the stage did not fuse", err)
		}
		verdict := ""
		for verdict == "" {
			st := review59fStacks()[id]
			switch {
			case review59fParkedOnQueue(st):
				verdict = "stall"
			case strings.Contains(st, "sync.(*Mutex).Lock") && strings.Contains(st, "tryPull"):
				verdict = "ok"
			default:
				runtime.Gosched()
			}
		}
		ready := src.ready()
		close(src.release)
		if err := <-done; err != nil {
			t.Fatalf("the run failed: %v", err)
		}
		if verdict == "stall" {
			t.Errorf("the sink's handle, holding a place, waits for an output while a goroutine of the stage is inside next and %d items are ready: it took the source's held lock for an empty source", ready)
		}
		if n := got.Load(); n != items {
			t.Errorf("the sink got %d items, want %d", n, items)
		}
	})
}

func review59fIdentity(_ context.Context, x int) (int, error) { return x, nil }

// The same stall with source.Chan itself, nothing held: a channel full from
// the start (never empty until its last item), Workers(2), fused into the
// sink. Item special's call is long (it waits on a gate the test holds).
// When the stage's goroutine makes that call, the sink's handle (holding
// the other place) should make the second: thousands of items are ready
// and the sink waits for one. It stalls instead whenever the handle's last
// try met the source's lock held by the goroutine's pull of special (an
// ordinary pull: the lock is held for each receive): the handle parks on
// the queue with its place until the long call ends. A trial whose long
// call ran on the sink's goroutine (the consumer inside a call, which the
// Workers doc excepts) decides nothing. (In a count of the sink handle's
// tries over such a channel, about half met the lock held while the
// channel had items.)
func TestReview59fTryLockMissOverAChan(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const trials, items, special = 120, 5000, 2000
		stalls, decided := 0, 0
		// trials at least, and more (up to ten times as many) while none
		// decided: on a loaded machine the long call can run on the sink's
		// goroutine trial after trial.
		for trial := 0; trial < trials || decided == 0 && trial < 10*trials; trial++ {
			ch := make(chan int, items)
			for i := range items {
				ch <- i
			}
			close(ch)
			gate := make(chan struct{})
			inLong := make(chan int64, 1)
			var longRunning atomic.Bool
			var started atomic.Int64
			f := func(ctx context.Context, x int) (int, error) {
				if x == special {
					longRunning.Store(true)
					inLong <- auditGoid()
					select {
					case <-gate:
					case <-ctx.Done():
					}
					return x, nil
				}
				if longRunning.Load() {
					started.Add(1)
				}
				return x, nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			sinkID := make(chan int64, 1)
			done := make(chan error, 1)
			go func() {
				sinkID <- auditGoid()
				done <- sink.ForEach(ctx, stage.Map(source.Chan(ch), f, stage.Workers(2)), func(context.Context, int) error { return nil })
			}()
			id := <-sinkID
			longOn := <-inLong
			verdict := ""
			for longOn != id && verdict == "" {
				if started.Load() > 0 {
					verdict = "ok"
					break
				}
				all := review59fStacks()
				workers := 0
				for _, st := range all {
					if strings.Contains(st, "stage.(*applier[...]).work(") {
						workers++
					}
				}
				if review59fParkedOnQueue(all[id]) && workers == 1 && len(ch) > 0 {
					verdict = "stall"
					break
				}
				runtime.Gosched()
			}
			close(gate)
			cancel()
			<-done
			if verdict != "" {
				decided++
			}
			if verdict == "stall" {
				stalls++
			}
		}
		t.Logf("%d trials decided (the long call on the stage's goroutine), %d stalled", decided, stalls)
		if decided == 0 {
			t.Errorf("no trial of %d decided anything: every long call ran on the sink's goroutine", 10*trials)
		}
		if stalls > 0 {
			t.Errorf("in %d of %d decided trials, 1 call of a Workers(2) stage ran while items were ready in its channel and the sink waited for an output with a place: its try had met the source's lock held (fewer than n calls, with a source that was never empty)", stalls, decided)
		}
	})
}
