package source_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r32Expect is what Lines promises for input under max: the lines as
// bufio.ScanLines splits them, or, at the first line longer than max
// (without its line ending), those before it and a *LineTooLongError
// naming that line.
func r32Expect(input string, max int) (lines []string, tooLong int) {
	sc := bufio.NewScanner(strings.NewReader(input))
	sc.Buffer(nil, len(input)+16)
	for sc.Scan() {
		if len(sc.Text()) > max {
			return lines, len(lines) + 1
		}
		lines = append(lines, sc.Text())
	}
	return lines, 0
}

// r32Readers are the ways a caller hands Lines its input.
var r32Readers = map[string]func(string) io.Reader{
	"bytes":     func(s string) io.Reader { return bytes.NewReader([]byte(s)) },
	"waiting":   func(s string) io.Reader { return struct{ io.Reader }{strings.NewReader(s)} },
	"onebyte":   func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	"half":      func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
	"dataerr":   func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	"bufio16":   func(s string) io.Reader { return bufio.NewReaderSize(strings.NewReader(s), 16) },
	"bufio4096": func(s string) io.Reader { return bufio.NewReaderSize(strings.NewReader(s), 4096) },
	"bufio5000": func(s string) io.Reader { return bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(s)), 5000) },
}

// TestReview32LinesAgainstScanLines checks Lines' "split as
// bufio.ScanLines splits them: the line ending ("\n" or "\r\n") is
// dropped, and a last line without a newline is delivered" and "a line
// longer than the maximum ... ends the run with a *stage.SourceError
// wrapping a *LineTooLongError that names the line" on inputs whose lines
// sit around the 4 KiB buffer and the maximum, with '\r' and '\n' at and
// around buffer boundaries, through readers of every shape.
func TestReview32LinesAgainstScanLines(t *testing.T) {
	rng := rand.New(rand.NewPCG(32, 32))
	lengths := []int{0, 1, 4094, 4095, 4096, 4097, 8191, 8192, 8193}
	var inputs []string
	for _, n := range lengths {
		for _, end := range []string{"\n", "\r\n", "\r", "", "\r\r\n"} {
			inputs = append(inputs, strings.Repeat("a", n)+end, "x\n"+strings.Repeat("b", n)+end+"y")
		}
	}
	for range 60 { // random mixes of short and buffer-sized lines
		var b strings.Builder
		for range 1 + rng.IntN(6) {
			b.WriteString(strings.Repeat("c", max(lengths[rng.IntN(len(lengths))]-rng.IntN(2), 0)))
			b.WriteString([]string{"\n", "\r\n", "\r", "\n\n"}[rng.IntN(4)])
		}
		inputs = append(inputs, b.String())
	}
	maxes := []int{1, 4094, 4095, 4096, 4097, source.DefaultMaxLineLength}
	for name, mk := range r32Readers {
		for _, max := range maxes {
			for i, in := range inputs {
				want, tooLong := r32Expect(in, max)
				got, err := sink.Slice(context.Background(), source.Lines(mk(in), source.MaxLineLength(max)))
				label := fmt.Sprintf("%s/max=%d/input %d (len %d)", name, max, i, len(in))
				var tl *source.LineTooLongError
				var se *stage.SourceError
				switch {
				case tooLong == 0 && err != nil:
					t.Fatalf("%s: err %v, want nil", label, err)
				case tooLong > 0 && (!errors.As(err, &se) || !errors.As(err, &tl) || tl.Line != tooLong || tl.Max != max):
					t.Fatalf("%s: err %v, want a *SourceError wrapping a *LineTooLongError for line %d", label, err, tooLong)
				case !slices.Equal(got, want):
					t.Fatalf("%s: %d lines, want %d (first difference at %d)", label, len(got), len(want), r32Diff(got, want))
				}
			}
		}
	}
}

func r32Diff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// r32Counting counts the bytes read from it.
type r32Counting struct {
	r io.Reader
	n int
}

func (c *r32Counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestReview32LinesTooLongReadsAtMostMaxPlus4KiB: Lines' "a line longer
// than the maximum ... ends the run with a *stage.SourceError wrapping a
// *LineTooLongError that names the line; at most the maximum plus 4 KiB is
// read into memory for it." A line of 'a's with no '\r' anywhere, under a
// maximum of 4095 (4 KiB - 1): Lines reads 8192 bytes of it, one more
// than 4095 + 4096, before it gives up (it keeps a full buffer that ends
// in 'a' as if its last byte were a '\r' the line ending could drop).
func TestReview32LinesTooLongReadsAtMostMaxPlus4KiB(t *testing.T) {
	for _, max := range []int{4095, 2*4096 - 1, 4096, 5000} {
		c := &r32Counting{r: struct{ io.Reader }{strings.NewReader(strings.Repeat("a", 1<<16) + "\n")}}
		_, err := sink.Slice(context.Background(), source.Lines(c, source.MaxLineLength(max)))
		var tl *source.LineTooLongError
		if !errors.As(err, &tl) || tl.Line != 1 {
			t.Fatalf("max %d: err %v, want a *LineTooLongError for line 1", max, err)
		}
		if c.n > max+4096 {
			t.Errorf("max %d: %d bytes of the line read into memory, want at most the maximum plus 4 KiB, %d", max, c.n, max+4096)
		}
	}
}
