package source_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r30BadCount is a reader that breaks io.Reader's contract: it returns a
// count outside 0 <= n <= len(p).
type r30BadCount struct {
	calls int
	n     func(p []byte) int
}

func (r *r30BadCount) Read(p []byte) (int, error) {
	r.calls++
	if r.calls == 1 {
		return copy(p, "a\nb\n"), nil
	}
	return r.n(p), nil
}

// TestReview30LinesReaderWithInvalidCount attacks "A source's failure (... a
// read error in Lines, or a panic in any of them) ends the run with a
// *stage.SourceError" and PanicError's "so the process never crashes because
// a user function panicked" with a reader that returns a negative count, or
// a count larger than the buffer it was given: the run must end with a
// *stage.SourceError after the complete lines before it, not crash the
// process or deliver garbage.
func TestReview30LinesReaderWithInvalidCount(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    func(p []byte) int
	}{
		{"negative", func([]byte) int { return -1 }},
		{"too large", func(p []byte) int { return len(p) + 1 }},
		{"huge", func([]byte) int { return 1 << 40 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outcome, ok := runcheck.InChild(t, func() string {
				got, err := sink.Slice(context.Background(), source.Lines(&r30BadCount{n: tc.n}))
				var se *stage.SourceError
				if !errors.As(err, &se) {
					return fmt.Sprintf("err = %v (%T), want a *stage.SourceError; lines %q", err, err, got)
				}
				if !slices.Equal(got, []string{"a", "b"}) {
					return fmt.Sprintf("lines %q, want [a b]", got)
				}
				return "ok"
			})
			if ok && outcome != "ok" {
				t.Fatal(outcome)
			}
		})
	}
}

// TestReview30LinesDataWithError attacks "A read error ends the run with a
// *stage.SourceError after the complete lines before it went through (a
// partial line before the error is dropped)" and "a last line without a
// newline is delivered" with readers that return data and an error from the
// same Read, as io.Reader allows.
func TestReview30LinesDataWithError(t *testing.T) {
	boom := errors.New("boom")
	// data and io.EOF together: everything, the last partial line included.
	got, err := sink.Slice(context.Background(), source.Lines(iotest.DataErrReader(strings.NewReader("a\nb\nc"))))
	if err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("DataErrReader: %q, %v; want [a b c], nil", got, err)
	}
	// data and a read error together, in one Read.
	r := &r30Steps{steps: []r30Step{{"a\nb\nc", boom}}}
	got, err = sink.Slice(context.Background(), source.Lines(r))
	if !errors.Is(err, boom) || !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("data+error: %q, %v; want [a b] and the read error", got, err)
	}
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("data+error: err %T, want a *stage.SourceError", err)
	}
	// a timeout error (iotest.TimeoutReader) after the first read.
	got, err = sink.Slice(context.Background(), source.Lines(iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader("x\ny\n")))))
	if !errors.Is(err, iotest.ErrTimeout) || len(got) != 0 {
		t.Fatalf("timeout reader: %q, %v; want no line and ErrTimeout", got, err)
	}
}

type r30Step struct {
	data string
	err  error
}

type r30Steps struct{ steps []r30Step }

func (r *r30Steps) Read(p []byte) (int, error) {
	if len(r.steps) == 0 {
		return 0, io.EOF
	}
	s := &r.steps[0]
	n := copy(p, s.data)
	s.data = s.data[n:]
	if s.data != "" {
		return n, nil
	}
	err := s.err
	r.steps = r.steps[1:]
	return n, err
}

// r30Expect is what bufio.ScanLines makes of in, with lines longer than max
// (without their ending) ending it with a line-too-long at that line.
func r30Expect(in string, max int) (lines []string, tooLong int) {
	sc := bufio.NewScanner(strings.NewReader(in))
	sc.Buffer(make([]byte, 0, 64), len(in)+8)
	n := 0
	for sc.Scan() {
		n++
		if len(sc.Text()) > max {
			return lines, n
		}
		lines = append(lines, sc.Text())
	}
	return lines, 0
}

// TestReview30LinesAtBufferBoundaries attacks "split as bufio.ScanLines
// splits them" and the maximum ("in bytes without its line ending") at the
// sizes where read buffers end: lines of max-1, max and max+1 bytes, ended by
// "\n", "\r\n" or nothing, with max around 4 KiB, 8 KiB and 64 KiB, read
// through a strings.Reader, a reader that gives one byte at a time, a reader
// that gives half, and bufio.Readers of 4 KiB and 16 KiB (the buffer itself).
func TestReview30LinesAtBufferBoundaries(t *testing.T) {
	readers := map[string]func(string) io.Reader{
		"strings":  func(s string) io.Reader { return strings.NewReader(s) },
		"bytes":    func(s string) io.Reader { return bytes.NewBufferString(s) },
		"half":     func(s string) io.Reader { return iotest.HalfReader(struct{ io.Reader }{strings.NewReader(s)}) },
		"bufio4k":  func(s string) io.Reader { return bufio.NewReaderSize(strings.NewReader(s), 4096) },
		"bufio16k": func(s string) io.Reader { return bufio.NewReaderSize(strings.NewReader(s), 16384) },
		"bufio4k-half": func(s string) io.Reader {
			return bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(s)), 4096)
		},
	}
	maxes := []int{4095, 4096, 4097, 8191, 8192, 8193, 65536}
	for _, max := range maxes {
		for _, d := range []int{-1, 0, 1} {
			for _, end := range []string{"\n", "\r\n", "", "\r"} {
				body := strings.Repeat("x", max+d)
				inputs := []string{
					body + end,
					"ab\n" + body + end + "z\n",
					strings.Repeat("y", max) + "\r\n" + body + end,
					strings.Repeat("q", 4093) + "\n" + body + end,
				}
				for i, in := range inputs {
					want, tooLong := r30Expect(in, max)
					for rname, mk := range readers {
						label := fmt.Sprintf("max %d, line %d, end %q, input %d, %s", max, max+d, end, i, rname)
						got, err := sink.Slice(context.Background(), source.Lines(mk(in), source.MaxLineLength(max)))
						var lt *source.LineTooLongError
						if tooLong > 0 {
							if !errors.As(err, &lt) || lt.Line != tooLong || lt.Max != max {
								t.Fatalf("%s: err %v, want a line-too-long at line %d", label, err, tooLong)
							}
							if !slices.Equal(got, want) {
								t.Fatalf("%s: %d lines before the long one, want %d", label, len(got), len(want))
							}
							continue
						}
						if err != nil || !slices.Equal(got, want) {
							t.Fatalf("%s: err %v, %d lines (%v), want %d", label, err, len(got), r30Lens(got), len(want))
						}
					}
				}
			}
		}
	}
}

func r30Lens(ls []string) []int {
	var n []int
	for _, l := range ls {
		n = append(n, len(l))
	}
	return n
}
