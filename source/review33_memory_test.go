package source_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
)

// r33Endless is a hostile input: one line that never ends. It counts the
// bytes read from it.
type r33Endless struct{ n int }

func (r *r33Endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	r.n += len(p)
	return len(p), nil
}

// TestReview33LinesTooLongOverALargeBufioReadsBounded: Lines over a
// caller's *bufio.Reader larger than 4 KiB (which Lines uses as its buffer)
// and a line that never ends:
//
//	"a line longer than the maximum ... ends the run with a
//	*stage.SourceError wrapping a *LineTooLongError that names the line; at
//	most the maximum plus 4 KiB is read into memory for it."
//
// Lines fills the caller's buffer before it looks at the line's length: with
// a 64 KiB *bufio.Reader and a maximum of 1, it reads 64 KiB of the line;
// in general the maximum plus the buffer's size.
func TestReview33LinesTooLongOverALargeBufioReadsBounded(t *testing.T) {
	for _, size := range []int{4096, 4097, 65536} {
		for _, max := range []int{1, 4095, 4096, 4097, 8191} {
			label := fmt.Sprintf("bufio %d/max %d", size, max)
			r := &r33Endless{}
			_, err := sink.Slice(context.Background(), source.Lines(bufio.NewReaderSize(r, size), source.MaxLineLength(max)))
			var tl *source.LineTooLongError
			if !errors.As(err, &tl) || tl.Line != 1 || tl.Max != max {
				t.Errorf("%s: err %v, want a *LineTooLongError for line 1", label, err)
				continue
			}
			// The doc (since this round): "at most the maximum plus one
			// buffer (4 KiB, or the size of a *bufio.Reader given as r,
			// which is then the buffer)".
			if r.n > max+size {
				t.Errorf("%s: %d bytes of the line read into memory, want at most the maximum plus the buffer, %d", label, r.n, max+size)
			}
		}
	}
}
