package stage_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// Merge: "together they are at most one item per input ahead of the merged
// stream's consumer (an input that ended leaves its room to the others)".
// (The review found the old doc's "each at most one item ahead" broken
// once a peer ended; the doc now states the bound the queue keeps.) Here
// input a is a counting source, input b is empty, and the consumer (an
// Apply of one worker) holds item 0. Input a then takes items 1 and 2 (the
// two inputs' room), and never item 3 while item 0 is held.
func TestReview23MergeOneItemPerInputAhead(t *testing.T) {
	calls := make(chan int, 16)
	a := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == 10 {
				return 0, io.EOF
			}
			calls <- i
			i++
			return i - 1, nil
		}, nil
	})
	b := stage.Indexed(0, func(int) int { return 0 })
	holding := make(chan struct{})
	release := make(chan struct{})
	s := stage.Apply(stage.Merge(a, b), func(_ context.Context, v int, emit func(int) bool) error {
		if v == 0 {
			close(holding)
			<-release
		}
		emit(v)
		return nil
	}, stage.Workers(1))
	done := make(chan error, 1)
	go func() {
		done <- stage.Run(context.Background(), s, func(context.Context, int, error) error { return nil })
	}()
	<-holding
	ahead := false
	for want := 0; want <= 2; want++ { // items 0-2 must come: there is room for them
		select {
		case i := <-calls:
			if i != want {
				t.Fatalf("source call %d, want %d", i, want)
			}
		case <-time.After(runcheck.Watchdog): // a hang bound only
			close(release)
			<-done
			t.Fatalf("hang: while the consumer held item 0, input a took %d items, want 3: the ended input b did not leave its room to a", want)
		}
	}
	select {
	case <-calls:
		ahead = true
	case <-time.After(200 * time.Millisecond): // room for a violation to show; a slow machine only finds less
	}
	close(release)
	if err := <-done; err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("Run = %v", err)
	}
	if ahead {
		t.Errorf("while the consumer held item 0, Merge took item 3 of input a: more than one item per input ahead")
	}
}
