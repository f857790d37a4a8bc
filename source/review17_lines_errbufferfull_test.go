package source_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r17ScriptedReader returns its steps one Read each, then io.EOF.
type r17ScriptedReader struct {
	steps []r17ReadStep
}

type r17ReadStep struct {
	data string
	err  error
}

func (r *r17ScriptedReader) Read(p []byte) (int, error) {
	if len(r.steps) == 0 {
		return 0, io.EOF
	}
	s := r.steps[0]
	r.steps = r.steps[1:]
	return copy(p, s.data), s.err
}

// Lines: "A read error ends the run with a *stage.SourceError after the
// complete lines before it went through (a partial line before the error
// is dropped)." Any error of r is a read error, bufio.ErrBufferFull too (a
// reader built over a bufio.Reader's Peek or ReadSlice passes it on). Lines
// takes the reader's bufio.ErrBufferFull for bufio's own ("the line goes on
// past the buffer"): it drops the read error, glues the partial line to the
// next read's line ("b" + "c" = "bc"), and the run ends with nil.
func TestReview17LinesReaderErrBufferFullIsAReadError(t *testing.T) {
	r := &r17ScriptedReader{steps: []r17ReadStep{
		{data: "a\nb", err: bufio.ErrBufferFull}, // "b" is a partial line, then the read fails
		{data: "c\n"},
	}}
	var got []string
	var err error
	runcheck.Run(t, "lines", func() { got, err = sink.Slice(context.Background(), source.Lines(r)) })
	var se *stage.SourceError
	if !slices.Equal(got, []string{"a"}) || !errors.As(err, &se) || !errors.Is(err, bufio.ErrBufferFull) {
		t.Fatalf("Lines over a reader failing with bufio.ErrBufferFull after \"a\\nb\": %q, %v; want [a] and a *stage.SourceError wrapping bufio.ErrBufferFull (the read error, the partial line \"b\" dropped)", got, err)
	}
}

// The same confusion with a reader that keeps failing with
// bufio.ErrBufferFull and no data: next loops for ever without reading a
// byte (bufio's own ErrBufferFull comes only with a full buffer) and never
// looks at the run's context, so the sink never returns. Run in a child
// process: it hangs now.
func TestReview17LinesReaderErrBufferFullDoesNotSpin(t *testing.T) {
	out, ok := runcheck.InChild(t, func() string {
		r := r17ReaderFunc(func([]byte) (int, error) { return 0, bufio.ErrBufferFull })
		n, err := sink.Count(context.Background(), source.Lines(r))
		var se *stage.SourceError
		return fmt.Sprint(n, errors.As(err, &se) && errors.Is(err, bufio.ErrBufferFull))
	})
	if !ok {
		return
	}
	if out != "0 true" {
		t.Fatalf("Lines over a reader that always fails with bufio.ErrBufferFull: %s; want \"0 true\" (no line, a *stage.SourceError wrapping the read error)", out)
	}
}

type r17ReaderFunc func([]byte) (int, error)

func (f r17ReaderFunc) Read(p []byte) (int, error) { return f(p) }
