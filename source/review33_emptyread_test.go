package source_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r33EmptyReader gives its chunks in turn; the Read numbered cancelAt
// (1-based) calls cancel and returns (0, nil): it was blocked when the run
// was cancelled, and returns without data (a reader that was interrupted, a
// wrapper whose inner read gave nothing yet). io.Reader discourages (0, nil)
// but allows it ("Callers should treat a return of 0 and nil as indicating
// that nothing happened"). Every Read after that one is counted and returns
// io.EOF (over a pipe or a socket it would block).
type r33EmptyReader struct {
	chunks   []string
	cancelAt int
	cancel   context.CancelFunc
	reads    int
	after    int
}

func (r *r33EmptyReader) Read(p []byte) (int, error) {
	r.reads++
	switch {
	case r.reads > r.cancelAt:
		r.after++
		return 0, io.EOF
	case r.reads == r.cancelAt:
		r.cancel()
		return 0, nil
	}
	return copy(p, r.chunks[r.reads-1]), nil
}

// TestReview33LinesNoReadAfterAnEmptyReadAtCancellation: the run is
// cancelled while a Read is under way (at the start of a line, or within
// one); that Read then returns (0, nil). Lines says:
//
//	"A blocked Read cannot be abandoned: when the run is cancelled, the
//	sink waits for it to return, and no Read follows it, even within a
//	line"
//
// Over a plain reader that holds (Lines' own buffer reads through a
// wrapper that stops with the run). Over a caller's *bufio.Reader of 4 KiB
// or more, which Lines uses as its buffer, bufio.Reader's fill retries the
// empty Read up to 100 times, and Lines cannot stop it: the doc now says so
// ("a *bufio.Reader given as r still retries a Read that returned nothing,
// up to 100 times"), and this checks that bound.
func TestReview33LinesNoReadAfterAnEmptyReadAtCancellation(t *testing.T) {
	id := func(_ context.Context, s string) (string, error) { return s, nil }
	shapes := map[string]func(stage.Stream[string]) stage.Stream[string]{
		"bare": func(s stage.Stream[string]) stage.Stream[string] { return s },
		"map4": func(s stage.Stream[string]) stage.Stream[string] { return stage.Map(s, id, stage.Workers(4)) },
	}
	readers := map[string]func(io.Reader) io.Reader{
		"plain":    func(r io.Reader) io.Reader { return r },
		"bufio4k":  func(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 4096) },
		"bufio64k": func(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 65536) },
	}
	cases := []struct {
		name     string
		chunks   []string
		cancelAt int
	}{
		{"first read", nil, 1},
		{"between lines", []string{"x\n"}, 2},
		{"within a line", []string{"x\nab"}, 2},
	}
	for sname, shape := range shapes {
		for rname, wrap := range readers {
			for _, c := range cases {
				label := fmt.Sprintf("%s/%s/%s", sname, rname, c.name)
				ctx, cancel := context.WithCancel(context.Background())
				r := &r33EmptyReader{chunks: c.chunks, cancelAt: c.cancelAt, cancel: cancel}
				var err error
				runcheck.Run(t, label, func() { _, err = sink.Slice(ctx, shape(source.Lines(wrap(r)))) })
				cancel()
				// A caller's *bufio.Reader retries the empty Read up to 100
				// times in all (Lines' doc names this exception since this
				// round); Lines' own buffer stops at once.
				allowed := 0
				if rname != "plain" {
					allowed = 99
				}
				if r.after > allowed {
					t.Errorf("%s: %d Read(s) after the Read during which the run was cancelled (%v), want at most %d", label, r.after, err, allowed)
					continue
				}
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%s: err = %v, want context.Canceled", label, err)
				}
			}
		}
	}
}
