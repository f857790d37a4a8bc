package runcheck

import (
	"testing"
	"time"
)

// A recorded gap is the longest one; a shorter one does not replace it, and
// Excuse compares half the margin with it.
func TestStallsKeepTheLongest(t *testing.T) {
	var w Stalls
	w.note(40 * time.Millisecond)
	w.note(10 * time.Millisecond)
	if got := w.Longest(); got != 40*time.Millisecond {
		t.Fatalf("Longest = %v, want 40ms", got)
	}
	if !w.Excuse(80*time.Millisecond) || w.Excuse(81*time.Millisecond) {
		t.Fatalf("Excuse: a 40ms stall must excuse a margin of 80ms and not one of 81ms")
	}
}

// The watch records the gaps between its ticks, and its goroutine exits
// with the test it was started in (goleak, in TestMain, checks the last).
func TestWatchStallsRecordsAndEnds(t *testing.T) {
	var w *Stalls
	t.Run("watch", func(t *testing.T) {
		w = WatchStalls(t)
		for w.Longest() == 0 { // until the first tick was recorded: order decides
			time.Sleep(time.Millisecond)
		}
	})
	if w.Longest() <= 0 {
		t.Fatal("no gap recorded")
	}
}
