package source_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r30PartialReader stands for a pipe whose writer sent part of a line and
// nothing more yet: its Reads give the chunks in turn, calling cancel inside
// the Read numbered cancelAt (1-based); a Read after that one is counted
// and gives io.EOF (a real pipe would block there, for ever if the writer
// waits for the reader's answer).
type r30PartialReader struct {
	chunks   []string
	cancelAt int64
	cancel   context.CancelFunc
	reads    atomic.Int64
	after    atomic.Int64
}

func (r *r30PartialReader) Read(p []byte) (int, error) {
	n := r.reads.Add(1)
	if n > r.cancelAt {
		r.after.Add(1)
		return 0, io.EOF
	}
	if n == r.cancelAt {
		r.cancel()
	}
	return copy(p, r.chunks[n-1]), nil
}

// TestReview30LinesNoReadAfterCancellationMidLine attacks the package's "A
// source takes an item from the caller's world (... a line read) ... never
// after the run was cancelled" and Lines' "A blocked Read cannot be
// abandoned: when the run is cancelled, the sink waits for it to return":
// the run is cancelled while a Read is under way that returns only part of a
// line (a pipe, a socket: the rest has not been written yet). Once that Read
// returned, the run is cancelled: Lines must not call Read again to finish
// the line (over a pipe that next Read blocks, and the cancelled run hangs
// although no Read was blocked when it was cancelled, only the one the sink
// was told to wait for). The sink returns the cancellation.
func TestReview30LinesNoReadAfterCancellationMidLine(t *testing.T) {
	id := func(_ context.Context, s string) (string, error) { return s, nil }
	shapes := map[string]func(stage.Stream[string]) stage.Stream[string]{
		"bare": func(s stage.Stream[string]) stage.Stream[string] { return s },
		"map1": func(s stage.Stream[string]) stage.Stream[string] { return stage.Map(s, id, stage.Workers(1)) },
		"map4": func(s stage.Stream[string]) stage.Stream[string] { return stage.Map(s, id, stage.Workers(4)) },
	}
	readers := map[string]func(r io.Reader) io.Reader{
		"plain":   func(r io.Reader) io.Reader { return r },
		"bufio4k": func(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 4096) },
	}
	cases := []struct {
		name     string
		chunks   []string
		cancelAt int64
	}{
		{"first read is a partial line", []string{"ab"}, 1},
		{"a line, then a partial one", []string{"x\n", "ab"}, 2},
		{"a line and a partial one in one read", []string{"x\nab"}, 1},
		{"a partial line, then more of it", []string{"ab", "cd"}, 2},
	}
	for sname, shape := range shapes {
		for rname, wrap := range readers {
			for _, c := range cases {
				label := fmt.Sprintf("%s/%s/%s", sname, rname, c.name)
				for range 5 {
					ctx, cancel := context.WithCancel(context.Background())
					r := &r30PartialReader{chunks: c.chunks, cancelAt: c.cancelAt, cancel: cancel}
					var err error
					runcheck.Run(t, label, func() { _, err = sink.Slice(ctx, shape(source.Lines(wrap(r)))) })
					cancel()
					if n := r.after.Load(); n != 0 {
						t.Errorf("%s: %d Read(s) after the Read in which the run was cancelled", label, n)
						break
					}
					if !errors.Is(err, context.Canceled) {
						t.Errorf("%s: err = %v, want context.Canceled", label, err)
						break
					}
				}
			}
		}
	}
}

// TestReview30LinesCancelledOverAPipeStopsAfterTheBlockedRead shows what
// the Reads after a cancellation cost over a real pipe (io.Pipe): "A
// blocked Read cannot be abandoned: when the run is cancelled, the sink
// waits for it to return." The run has delivered line "x" and holds "ab"
// of the next line; the caller cancels ctx (abort), or the stop context of
// stage.Until is done (drain: "the sources upstream take no new item (a
// source blocked waiting for one ... sees its context end and stops
// quietly)"); the writer then sends chunks without a newline, one at a
// time, and stops sending as soon as the sink has returned. At most one
// chunk may be consumed after that (by the Read that was blocked then,
// which the sink waits for); each further chunk consumed is a Read made
// after the run was cancelled — over a pipe or a socket whose peer has
// nothing more to send (it waits for an answer, or for the service to shut
// down), a Read that blocks for ever, and a sink that never returns.
func TestReview30LinesCancelledOverAPipeStopsAfterTheBlockedRead(t *testing.T) {
	for _, mode := range []string{"abort", "drain"} {
		for _, bufio4k := range []bool{false, true} {
			for range 5 {
				label := fmt.Sprintf("%s/bufio=%v", mode, bufio4k)
				pr, pw := io.Pipe()
				var r io.Reader = pr
				if bufio4k {
					r = bufio.NewReaderSize(pr, 4096)
				}
				ctx, cancel := context.WithCancel(context.Background())
				stop, drain := context.WithCancel(context.Background())
				end := cancel
				if mode == "drain" {
					end = drain
				}
				sawX := make(chan struct{})
				done := make(chan error, 1)
				var lines []string
				go func() {
					done <- sink.ForEach(ctx, stage.Until(source.Lines(r), stop), func(_ context.Context, l string) error {
						lines = append(lines, l)
						if l == "x" {
							close(sawX)
						}
						return nil
					})
				}()
				if _, err := pw.Write([]byte("x\nab")); err != nil {
					t.Fatal(err)
				}
				r30Wait(t, sawX)
				end()
				// A drain's stop is done at once, but the source's context
				// ends a moment later (Until: the source "sees its context
				// end"; it is cancelled from a goroutine of the run's), so
				// that a Read of the line in progress may still come
				// meanwhile: the writer goes on sending until the sink
				// returns by itself, which it must, and must not take one
				// more chunk after that.
				limit := 3
				if mode == "drain" {
					limit = 1 << 17 // 256 KiB: under the longest line Lines accepts, whose error would end the run too
				}
				consumed := 0
				var err error
			writing:
				for consumed < limit {
					wrote := make(chan error, 1)
					go func() { _, err := pw.Write([]byte("cd")); wrote <- err }()
					select {
					case err = <-done:
						pw.CloseWithError(io.ErrClosedPipe)
						<-wrote
						break writing
					case werr := <-wrote:
						if werr != nil {
							t.Fatal(werr)
						}
						consumed++
					}
				}
				if consumed == limit {
					pw.CloseWithError(io.ErrClosedPipe)
					err = <-done
				}
				pr.Close()
				cancel()
				drain()
				if mode == "drain" && consumed == limit {
					t.Errorf("%s: the sink did not return while the writer sent %d chunks after the drain (it returned %v once the pipe was closed)", label, consumed, err)
					break
				}
				if mode == "abort" && consumed > 1 {
					t.Errorf("%s: %d chunks read after the run was cancelled (want at most the one Read that was blocked); the sink returned (%v) only once the pipe was closed", label, consumed, err)
					break
				}
				if mode == "abort" && !errors.Is(err, context.Canceled) {
					t.Errorf("%s: err = %v, want context.Canceled", label, err)
					break
				}
				if mode == "drain" && (err != nil || len(lines) != 1) {
					t.Errorf("%s: err = %v, lines %q; want nil and [x] (a partial line is dropped)", label, err, lines)
					break
				}
			}
		}
	}
}

func r30Wait(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("hung (watchdog)")
	}
}
