package stage_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview94OrderedReleaseWakesEveryWaitingWorker: Workers, "n >= 1: at
// most n, and with enough input and a consumer that keeps up exactly n".
// The input here is an Ordered stage whose head was slow: items 1 and 2
// finished behind it, and the head's end lets all three leave at once. The
// next stage's three workers all wait for input at that moment; each must
// get one of the three, so that three calls run at once (its function is
// a barrier of three). A release that woke one waiting worker for the
// three outputs would leave the other two asleep beside two ready items
// (the Ordered stage's input stays open, so nothing else wakes them), and
// the run would hang.
//
// Order, not time, decides: the head is released only once the goroutines
// that ran items 1 and 2 have left their calls and are parked (their stacks
// say so), and the three workers of the next stage are parked waiting for
// input.
func TestReview94OrderedReleaseWakesEveryWaitingWorker(t *testing.T) {
	ch := make(chan int, 3)
	ch <- 0
	ch <- 1
	ch <- 2
	head := make(chan struct{})
	var mu sync.Mutex
	var behind []int64 // the goroutines that ran items 1 and 2
	first := stage.Map(source.Chan(ch), func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			select {
			case <-head:
				return v, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		id, _ := runcheck.Goroutines()
		mu.Lock()
		behind = append(behind, id)
		mu.Unlock()
		return v, nil
	}, stage.Workers(3), stage.Ordered())
	barrier := newR2Barrier(3)
	second := stage.Map(first, func(_ context.Context, v int) (int, error) {
		return v, barrier.wait()
	}, stage.Workers(3))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := 0
	var err error
	done := r40Go(func() {
		err = sink.ForEach(ctx, second, func(context.Context, int) error {
			if got++; got == 3 {
				close(ch) // the input ends only once all three arrived
			}
			return nil
		})
	})
	deadline := time.Now().Add(runcheck.Watchdog) // a hang bound only
	for !r94qReady(&mu, &behind) {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("hang: the scene was never set (items 1 and 2 left behind the head, three workers waiting)")
		}
		time.Sleep(time.Millisecond)
	}
	close(head)
	select {
	case <-done:
	case <-time.After(runcheck.Watchdog):
		cancel()
		<-done
		t.Fatalf("hang: %d of the second stage's 3 workers got an item once the Ordered head let three go at once; the others slept beside ready items", barrier.in.Load())
	}
	if err != nil || got != 3 {
		t.Fatalf("run: %d items, %v; want 3, nil", got, err)
	}
}

// r94qReady reports whether the goroutines that ran items 1 and 2 (behind)
// are parked outside their calls (their outputs are in the Ordered
// window), and three goroutines are parked waiting for a stage's queue
// (the second stage's workers).
func r94qReady(mu *sync.Mutex, behind *[]int64) bool {
	mu.Lock()
	ids := append([]int64(nil), *behind...)
	mu.Unlock()
	if len(ids) != 2 {
		return false
	}
	_, all := runcheck.Goroutines()
	for _, id := range ids {
		st, ok := all[id]
		head, _, _ := strings.Cut(st, "\n")
		if !ok || strings.Contains(head, "[running]") || strings.Contains(head, "[runnable]") || strings.Contains(st, "]).process(") {
			return false
		}
	}
	waiting := 0
	for _, st := range all {
		if strings.Contains(st, "sync.(*Cond).Wait") && strings.Contains(st, "stage.(*queue[") && strings.Contains(st, "]).pull(") {
			waiting++
		}
	}
	return waiting == 3
}
