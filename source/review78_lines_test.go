package source_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r78Stutter gives the bytes of data one at a time, each after empty reads
// ((0, nil)) as many as empties says, then io.EOF; after the data it gives
// (0, nil) for ever if stall is set.
type r78Stutter struct {
	data    string
	empties int
	stall   bool
	n       int // empty reads given before the next byte
}

func (r *r78Stutter) Read(p []byte) (int, error) {
	if r.data == "" {
		if r.stall {
			return 0, nil
		}
		return 0, io.EOF
	}
	if r.n < r.empties {
		r.n++
		return 0, nil
	}
	r.n = 0
	p[0], r.data = r.data[0], r.data[1:]
	return 1, nil
}

// Lines: "A reader that returns no bytes and no error 100 times in a row is
// a read error too, io.ErrNoProgress". 99 in a row, before every byte, is
// no error; (0, nil) for ever after the lines ends the run with that error,
// after the complete lines went through. (In a child: a regression spins.)
func TestReview78LinesNoProgressIsAReadError(t *testing.T) {
	out, ok := runcheck.InChild(t, func() string {
		for _, wrap := range []bool{false, true} { // Lines' own buffer; a *bufio.Reader of 4 KiB given as r
			read := func(r io.Reader) ([]string, error) {
				if wrap {
					r = bufio.NewReaderSize(r, 4096)
				}
				return sink.Slice(context.Background(), source.Lines(r))
			}
			got, err := read(&r78Stutter{data: "ab\ncd\n", empties: 99})
			if err != nil || !slices.Equal(got, []string{"ab", "cd"}) {
				return fmt.Sprintf("wrap %v, 99 empty reads before each byte: %q, %v; want [ab cd], nil", wrap, got, err)
			}
			got, err = read(&r78Stutter{data: "ab\ncd\nef", stall: true})
			var se *stage.SourceError
			if !errors.As(err, &se) || !errors.Is(err, io.ErrNoProgress) || !slices.Equal(got, []string{"ab", "cd"}) {
				return fmt.Sprintf("wrap %v, stalled after the data: %q, %v; want [ab cd] and a *stage.SourceError wrapping io.ErrNoProgress", wrap, got, err)
			}
		}
		return "ok"
	})
	if ok && out != "ok" {
		t.Fatal(out)
	}
}

// Lines: the maximum counts "the line without its ending, and without a '\r'
// that ends r, which is dropped as bufio.ScanLines drops it".
func TestReview78LinesFinalCRNotCounted(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    []string
		tooLong int // the line named, 0: no error
	}{
		{"abc\r", []string{"abc"}, 0},
		{"x\nabc\r", []string{"x", "abc"}, 0},
		{"abc\r\n", []string{"abc"}, 0},
		{"abcd\r", nil, 1},
		{"x\nabcd\r", []string{"x"}, 2},
		{"ab\r\r", []string{"ab\r"}, 0}, // one '\r' dropped; the line keeps the other
	} {
		got, err := sink.Slice(context.Background(), source.Lines(strings.NewReader(c.in), source.MaxLineLength(3)))
		var tl *source.LineTooLongError
		switch {
		case c.tooLong == 0 && (err != nil || !slices.Equal(got, c.want)):
			t.Errorf("%q: %q, %v; want %q, nil", c.in, got, err, c.want)
		case c.tooLong != 0 && (!errors.As(err, &tl) || tl.Line != c.tooLong || !slices.Equal(got, c.want)):
			t.Errorf("%q: %q, %v; want %q and line %d too long", c.in, got, err, c.want, c.tooLong)
		}
	}
}
