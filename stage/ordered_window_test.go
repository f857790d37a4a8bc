package stage_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// An Ordered stage's window fills to its documented bound (2×workers+buffer
// items taken and not yet taken by the consumer) behind a slow head, with a
// buffer far larger than the window's first room, and still emits in input
// order once the head finishes: the window grows as items need it.
func TestOrderedWindowFillsBehindASlowHead(t *testing.T) {
	const workers, buffer, n = 4, 300, 2000
	const window = 2*workers + buffer
	release := make(chan struct{})
	var finished atomic.Int64 // calls after the head's that returned
	full := make(chan struct{})
	f := func(_ context.Context, x int) (int, error) {
		if x == 0 {
			<-release
			return x, nil
		}
		if finished.Add(1) == window-1 {
			close(full) // every place of the window but the head's is done
		}
		return x, nil
	}
	var taken atomic.Int64
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, errEOF
			}
			i++
			taken.Add(1)
			return i - 1, nil
		}, nil
	})
	done := make(chan []int, 1)
	errc := make(chan error, 1)
	go func() {
		got, err := sink.Slice(context.Background(), stage.Map(src, f, stage.Workers(workers), stage.Buffer(buffer), stage.Ordered()))
		done <- got
		errc <- err
	}()
	select {
	case <-full:
	case <-time.After(time.Minute): // a hang watchdog
		t.Fatalf("the window did not fill behind the slow head: %d calls finished, want %d", finished.Load(), window-1)
	}
	// The window is full: the stage takes nothing more until the head
	// leaves. (Its workers may each have taken one more item, which waits
	// for a token before its call.)
	if got := taken.Load(); got > window+workers {
		t.Errorf("the source gave %d items behind a held head; the window holds at most %d (plus one per worker waiting)", got, window)
	}
	close(release)
	var got []int
	select {
	case got = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the run did not finish after the head was released")
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d outputs, want %d", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("output %d is %d: not in input order", i, v)
		}
	}
}
