package source_test

// Review 89: mutation testing of package source; tests for documented
// promises that no test pinned down.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// DefaultMaxLineLength: "the longest line [Lines] accepts unless told
// otherwise with [MaxLineLength]: 1 MiB." Lines: "a line longer than the
// maximum ([DefaultMaxLineLength] [...]) ends the run with a
// *stage.SourceError wrapping a *[LineTooLongError] that names the line".
// A line of exactly 1 MiB goes through; the next, one byte longer, ends the
// run.
func TestReview89DefaultMaxLineLengthIsOneMiB(t *testing.T) {
	const mib = 1 << 20
	ok, long := strings.Repeat("a", mib), strings.Repeat("b", mib+1)
	got, err := sink.Slice(context.Background(), source.Lines(strings.NewReader(ok+"\n"+long+"\nc\n")))
	if len(got) != 1 || got[0] != ok {
		t.Fatalf("got %d lines, want only the first, of 1 MiB", len(got))
	}
	var se *stage.SourceError
	var tl *source.LineTooLongError
	if !errors.As(err, &se) || !errors.As(err, &tl) || tl.Line != 2 || tl.Max != mib {
		t.Fatalf("err = %v, want a *stage.SourceError wrapping a *source.LineTooLongError{Line: 2, Max: 1 MiB}", err)
	}
}

// r89Script is a reader whose Reads the test answers one at a time: a Read
// sends the length of its p on asks, then returns the next chunk (which
// must fit in p), or io.EOF once chunks is closed.
type r89Script struct {
	asks   chan int
	chunks chan string
}

func (r *r89Script) Read(p []byte) (int, error) {
	r.asks <- len(p)
	c, ok := <-r.chunks
	if !ok {
		return 0, io.EOF
	}
	if len(c) > len(p) {
		return 0, errors.New("r89Script: a chunk longer than the Read's p")
	}
	return copy(p, c), nil
}

// Lines: "A *bufio.Reader of 4 KiB or more is the buffer itself: a second
// run reads on from the line after the first run's last, unless the first
// stopped within a line that filled the buffer: as long as the buffer or
// longer, counting a final '\r'." And: "A blocked Read cannot be
// abandoned: when the run is cancelled, the sink waits for it to return,
// and no Read follows it, even within a line".
//
// The boundary: a run cancelled within a line one byte shorter than the
// buffer, which does not fill it, leaves the whole line to the next run
// (TestLinesCancelledWithinALineLeavesItToTheNextRun does it for a short
// line).
func TestReview89CancelledWithinALineJustShorterThanTheBuffer(t *testing.T) {
	const size = 4096
	r := &r89Script{asks: make(chan int, 8), chunks: make(chan string)}
	br := bufio.NewReaderSize(r, size)
	watchdog := time.After(30 * time.Second) // hang watchdog only
	ask := func() {
		t.Helper()
		select {
		case <-r.asks:
		case <-watchdog:
			t.Fatal("hang: no Read")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 4)
	done := make(chan error, 1)
	go func() {
		done <- sink.ForEach(ctx, source.Lines(br), func(_ context.Context, l string) error {
			got <- l
			return nil
		})
	}()
	ask()
	r.chunks <- "first\n"
	select {
	case l := <-got:
		if l != "first" {
			t.Fatalf("first run: first line %q, want %q", l, "first")
		}
	case <-watchdog:
		t.Fatal("hang: no first line")
	}
	ask()
	long := strings.Repeat("x", size-1) // the line in progress: one byte short of the buffer
	r.chunks <- long
	ask() // the Read for the rest of the line waits
	cancel()
	r.chunks <- "\n" // the Read that was blocked completes the line; none follows
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("first run: %v, want context.Canceled", err)
		}
	case <-watchdog:
		t.Fatal("hang: the first run did not return")
	}
	if len(got) != 0 {
		t.Fatalf("first run delivered %d more lines after it was cancelled, want none", len(got))
	}
	close(r.chunks) // any further Read: io.EOF
	v, ok, err := sink.First(context.Background(), source.Lines(br))
	if err != nil || !ok || v != long {
		t.Fatalf("second run: first line of %d bytes (ok %v, err %v), want the interrupted line of %d bytes", len(v), ok, err, len(long))
	}
}
