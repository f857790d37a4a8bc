package source_test

import (
	"bufio"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Lines' doc: "A *bufio.Reader of 4 KiB or more is the buffer itself: a
// second run reads on from the line after the first run's last."
func TestLinesOverABufioReaderReadsOnLineByLine(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("a\nb\nc\n"), 8192)
	lines := source.Lines(br)
	for _, want := range []string{"a", "b", "c"} {
		got, ok, err := sink.First(context.Background(), lines)
		if err != nil || !ok || got != want {
			t.Fatalf("sink.First = %q, %v, %v; want %q", got, ok, err, want)
		}
	}
}

// errBufferFullReader returns its data with bufio.ErrBufferFull, then more.
type errBufferFullReader struct{ step int }

func (r *errBufferFullReader) Read(p []byte) (int, error) {
	r.step++
	switch r.step {
	case 1:
		return copy(p, "a\nb"), bufio.ErrBufferFull
	case 2:
		return copy(p, "c\n"), nil
	}
	return 0, errors.New("unreachable: the run should have ended at the read error")
}

// Over a *bufio.Reader read directly, its reader's own bufio.ErrBufferFull
// (with less than a full buffer) is a read error too: the lines before it
// go through, the partial line is dropped.
func TestLinesOverABufioReaderReaderErrBufferFull(t *testing.T) {
	got, err := sink.Slice(context.Background(), source.Lines(bufio.NewReaderSize(&errBufferFullReader{}, 4096)))
	var se *stage.SourceError
	if !errors.As(err, &se) || !errors.Is(err, bufio.ErrBufferFull) || len(got) != 1 || got[0] != "a" {
		t.Fatalf("got %q, %v; want [a] and a *stage.SourceError wrapping bufio.ErrBufferFull", got, err)
	}
}
