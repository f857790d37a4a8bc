package source_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r32GateReader gives chunks[0] at its first Read; its second Read signals
// entered and blocks until release is closed, then gives chunks[1]; later
// Reads give io.EOF. It stands for a pipe whose peer sends the rest of a
// line while the run is being cancelled.
type r32GateReader struct {
	chunks  [2]string
	entered chan struct{}
	release chan struct{}
	reads   atomic.Int32
}

func (r *r32GateReader) Read(p []byte) (int, error) {
	switch r.reads.Add(1) {
	case 1:
		return copy(p, r.chunks[0]), nil
	case 2:
		close(r.entered)
		<-r.release
		return copy(p, r.chunks[1]), nil
	}
	return 0, io.EOF
}

// TestReview32LinesLineCompletedByTheBlockedReadIsKeptForTheNextRun: Lines
// over a *bufio.Reader of 4 KiB. The run has delivered "x" and holds "ab"
// of the next line; its Read for the rest is blocked when the run is
// cancelled; that Read then returns "cd\ny\n" (the line in progress is
// complete now). The pipeline does not take "abcd" (the run is cancelled),
// and Lines must not take it out of the caller's reader either:
//
//	package source: "A source takes an item from the caller's world (a
//	channel receive, ..., a line read) only when a stage, or the sink, is
//	ready to work on it, and never after the run was cancelled."
//	Lines: "(A *bufio.Reader of 4 KiB or more is the buffer itself: a
//	second run reads on from the line after the first run's last, ...)"
//
// So the second run must start with "abcd". It starts with "y": "abcd" was
// discarded from the *bufio.Reader after the cancellation and is lost.
func TestReview32LinesLineCompletedByTheBlockedReadIsKeptForTheNextRun(t *testing.T) {
	for _, shape := range []string{"bare", "map4"} {
		t.Run(shape, func(t *testing.T) {
			r := &r32GateReader{chunks: [2]string{"x\nab", "cd\ny\n"}, entered: make(chan struct{}), release: make(chan struct{})}
			br := bufio.NewReaderSize(r, 4096)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var s stage.Stream[string] = source.Lines(br)
			if shape == "map4" {
				s = stage.Map(s, func(_ context.Context, l string) (string, error) { return l, nil }, stage.Workers(4))
			}
			var first []string
			done := make(chan error, 1)
			go func() {
				done <- sink.ForEach(ctx, s, func(_ context.Context, l string) error {
					first = append(first, l)
					return nil
				})
			}()
			select {
			case <-r.entered: // the Read for the rest of "ab..." is blocked
			case <-time.After(time.Minute): // a hang bound
				t.Fatal("hang: no second Read")
			}
			cancel()
			close(r.release)
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Minute): // a hang bound
				t.Fatal("hang: the first run did not return")
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("first run: %v, want context.Canceled", err)
			}
			if slices.Contains(first, "abcd") {
				t.Fatalf("first run delivered %q after its cancellation", first)
			}
			second, err := sink.Slice(context.Background(), source.Lines(br))
			want := []string{"abcd", "y"}
			if err != nil || !slices.Equal(second, want) {
				t.Fatalf("first run delivered %q; second run: %q, %v; want %q: the line the blocked Read completed after the cancellation was taken out of the *bufio.Reader and lost", first, second, err, want)
			}
		})
	}
}
