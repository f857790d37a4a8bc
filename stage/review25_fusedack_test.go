package stage_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type review25Ack struct {
	mu    *sync.Mutex
	told  map[int][]error
	index int
}

func (a review25Ack) Done(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.told[a.index] = append(a.told[a.index], err)
}

// Ack (ack.go): "Done is not called when the run ended before the item's
// fate was known: a [FailFast] error at another item, ...". engine.go: an
// output dropped because the run ended is abandoned (never Done(nil)).
//
// The same item on two paths. Through a queue (a stage's own goroutine),
// an output put after the run was cancelled is dropped and its reference
// abandoned (queueOut.put), so the item is never told. Through a handle of
// the consumer's that holds the place (handOut), the output of a call that
// returned after the cancellation is handed to the next stage, whose
// function runs on it in the cancelled run (see
// review25_fusedfirst_test.go); a Filter there that does not keep it
// settles the item Done(nil): an item of a run cut short by another item's
// FailFast error is acknowledged as done, and a broker never redelivers it.
//
// Order: a Map of one worker (the sequential path) over an AckSource; its
// goroutine's first two calls are cheap, so it gives its place to the
// Filter's worker (retire, at the top of its loop, before it takes item 2),
// which then calls the Map itself for item 2. That call waits until the
// other branch's FailFast error cancelled the run, then returns nil. (If
// the first two calls are not timed cheap, item 2 goes through the queue
// and the test passes: it can only miss the bug, not invent it.)
func TestReview25FusedOutputAfterCancelIsAcked(t *testing.T) {
	// A cold first run may time its calls slow: a few runs, so that one
	// takes the handle's path; any run that shows the bug fails the test.
	for range 200 { // up to 200 runs; one on the handle's path suffices
		if review25FusedAckRun(t) {
			return
		}
	}
}

func review25FusedAckRun(t *testing.T) (failed bool) {
	var mu sync.Mutex
	told := map[int][]error{}
	src := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == 3 {
				return 0, nil, io.EOF
			}
			i++
			return i - 1, review25Ack{&mu, told, i - 1}, nil
		}, nil
	})
	started := make(chan struct{})
	errBranch := errors.New("review25: the other branch fails")
	m := stage.Map(src, func(ctx context.Context, v int) (int, error) {
		if v == 2 {
			close(started)
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Second): // hang watchdog only
				t.Error("the run was never cancelled")
			}
		}
		return v, nil
	}, stage.Workers(1))
	f := stage.Filter(m, func(_ context.Context, v int) (bool, error) { return v != 2, nil }, stage.Workers(1), stage.Buffer(1))
	other := stage.Map(source.Slice([]int{-1}), func(context.Context, int) (int, error) {
		<-started
		return 0, errBranch
	}, stage.Workers(2), stage.Buffer(1))
	var err error
	hangGuard(t, func() {
		err = stage.Run(context.Background(), stage.Merge(f, other), func(context.Context, int, error) error { return nil })
	})
	if !errors.Is(err, errBranch) {
		t.Fatalf("Run = %v, want the other branch's error", err)
	}
	if t.Failed() {
		return true
	}
	mu.Lock()
	defer mu.Unlock()
	if errs, ok := told[2]; ok {
		t.Errorf("item 2, whose Map call returned after another item's FailFast error cancelled the run, was told Done(%v): its fate was not known when the run ended (on the queue path it is abandoned, never told)", errs)
		return true
	}
	return false
}
