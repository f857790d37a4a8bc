package source_test

// Review 62: adversarial tests of source.Lines, from its documentation only.

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

// review62Chunks serves data in chunks of size step, with empties empty reads
// ((0, nil), which io.Reader allows) before each chunk, then end (io.EOF or
// another error); with withErr, the last chunk comes with end (n > 0 and an
// error, as io.Reader allows).
type review62Chunks struct {
	data    []byte
	step    int
	empties int
	end     error
	withErr bool
	pending int
	reads   int
}

func (r *review62Chunks) Read(p []byte) (int, error) {
	r.reads++
	if len(r.data) == 0 {
		return 0, r.end
	}
	if r.pending < r.empties {
		r.pending++
		return 0, nil
	}
	r.pending = 0
	n := copy(p, r.data[:min(r.step, len(r.data))])
	r.data = r.data[n:]
	if len(r.data) == 0 && r.withErr {
		return n, r.end
	}
	return n, nil
}

func review62Collect(t *testing.T, s stage.Stream[string]) ([]string, error) {
	t.Helper()
	var got []string
	var err error
	runcheck.Run(t, "Lines", func() { got, err = sink.Slice(context.Background(), s) })
	return got, err
}

// "MaxLineLength sets the longest line, in bytes without its line ending",
// with lines "split as bufio.ScanLines splits them" (which drops a final
// '\r' of the last line too, and only one '\r' before "\n"): at the
// maximum, a line's line ending, or the '\r' that ends the input, does not
// count; an extra '\r' inside does. Whatever the reader's chunking, buffer
// sizes around the 4 KiB read buffer, and a *bufio.Reader given as r.
func TestReview62LinesCRAtTheMaximumOverEveryReader(t *testing.T) {
	type tc struct {
		in      string
		want    []string
		tooLong int // the line number of the too-long line, 0: none
	}
	cases := func(n int) []tc {
		x := strings.Repeat("x", n)
		return []tc{
			{x + "\r\nz", []string{x, "z"}, 0},
			{x + "\r", []string{x}, 0},
			{x + "\n\r", []string{x, ""}, 0},
			{"a\n" + x + "\r\n" + x + "\r", []string{"a", x, x}, 0},
			{x + "\r\r\n", []string{}, 1},
			{"\r\n\n" + x + "\rq\n", []string{"", ""}, 3},
			{x + "y", []string{}, 1},
			{"\r\n" + x + "y\r\n", []string{""}, 2},
		}
	}
	readers := map[string]func(s string) io.Reader{
		"strings": func(s string) io.Reader { return strings.NewReader(s) },
		"onebyte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"dataerr": func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
		"chunks7-empties": func(s string) io.Reader {
			return &review62Chunks{data: []byte(s), step: 7, empties: 2, end: io.EOF, withErr: true}
		},
		"bufio16":   func(s string) io.Reader { return bufio.NewReaderSize(strings.NewReader(s), 16) },
		"bufio4096": func(s string) io.Reader { return bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(s)), 4096) },
		"bufio5000": func(s string) io.Reader { return bufio.NewReaderSize(strings.NewReader(s), 5000) },
	}
	for _, n := range []int{1, 2, 4095, 4096, 4097, 8192} {
		for rname, mk := range readers {
			for _, c := range cases(n) {
				got, err := review62Collect(t, source.Lines(mk(c.in), source.MaxLineLength(n)))
				show := strings.ReplaceAll(c.in, strings.Repeat("x", n), fmt.Sprintf("x*%d", n))
				if c.tooLong == 0 {
					if err != nil || !slices.Equal(got, c.want) {
						t.Errorf("max %d, %s, %q: %d lines, %v; want %d lines, nil", n, rname, show, len(got), err, len(c.want))
					}
					continue
				}
				var se *stage.SourceError
				var lt *source.LineTooLongError
				if !errors.As(err, &se) || !errors.As(err, &lt) {
					t.Errorf("max %d, %s, %q: err = %v; want a *SourceError wrapping a *LineTooLongError", n, rname, show, err)
					continue
				}
				if lt.Line != c.tooLong || lt.Max != n {
					t.Errorf("max %d, %s, %q: LineTooLongError{Line: %d, Max: %d}; want {%d, %d}", n, rname, show, lt.Line, lt.Max, c.tooLong, n)
				}
				if !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
					t.Errorf("max %d, %s, %q: delivered %q before the error; want %q", n, rname, show, got, c.want)
				}
			}
		}
	}
}

// "A read error ends the run with a *stage.SourceError after the complete
// lines before it went through (a partial line before the error is
// dropped)", with the data a Read returns together with its error (n > 0,
// err != nil: io.Reader's callers "should always process the n > 0 bytes
// returned before considering the error"), and empty reads between the
// chunks; an io.EOF that comes with data delivers that data.
func TestReview62LinesDataReturnedWithTheError(t *testing.T) {
	errRead := errors.New("review62: read failed")
	type tc struct {
		in   string
		end  error
		want []string
	}
	cases := []tc{
		{"a\nb\n", errRead, []string{"a", "b"}},
		{"a\nb", errRead, []string{"a"}},
		{"a\nb\r", errRead, []string{"a"}},
		{"a\nb\r\n", errRead, []string{"a", "b"}},
		{"a\n\n", errRead, []string{"a", ""}},
		{"a\nb", io.EOF, []string{"a", "b"}},
		{"a\nb\r", io.EOF, []string{"a", "b"}},
		{"a\nb", io.ErrUnexpectedEOF, []string{"a"}},
		{"a\nb\n", fmt.Errorf("wrapped: %w", io.EOF), []string{"a", "b"}},
	}
	for _, c := range cases {
		for _, step := range []int{1, 2, 3, 100} {
			for _, empties := range []int{0, 3} {
				for _, workers := range []int{0, 3} {
					r := &review62Chunks{data: []byte(c.in), step: step, empties: empties, end: c.end, withErr: true}
					s := source.Lines(r)
					if workers > 0 {
						s = stage.Map(s, func(_ context.Context, v string) (string, error) { return v, nil }, stage.Workers(workers), stage.Ordered())
					}
					got, err := review62Collect(t, s)
					if !slices.Equal(got, c.want) {
						t.Errorf("%q then %v, step %d, empties %d, workers %d: lines %q; want %q", c.in, c.end, step, empties, workers, got, c.want)
					}
					if c.end == io.EOF {
						if err != nil {
							t.Errorf("%q then io.EOF: err = %v; want nil", c.in, err)
						}
						continue
					}
					var se *stage.SourceError
					if !errors.As(err, &se) || !errors.Is(err, c.end) {
						t.Errorf("%q then %v, step %d, empties %d, workers %d: err = %v; want a *SourceError wrapping it", c.in, c.end, step, empties, workers, err)
					}
				}
			}
		}
	}
}

// "each run starts the source anew (... for a reader ..., from wherever
// the previous run left it)" and "once r said io.EOF, a run does not read it
// again": a later run does read it again, so a *bytes.Buffer written to
// between runs gives each run the lines written since, the last one
// without a newline included.
func TestReview62LinesBytesBufferRefilledBetweenRuns(t *testing.T) {
	var buf bytes.Buffer
	s := source.Lines(&buf)
	steps := []struct {
		write string
		want  []string
	}{
		{"a\nb\n", []string{"a", "b"}},
		{"", nil},
		{"c", []string{"c"}},
		{"\r\nd\r\n\n", []string{"", "d", ""}},
		{"e\r", []string{"e"}},
	}
	for i, st := range steps {
		buf.WriteString(st.write)
		got, err := review62Collect(t, s)
		if err != nil || !slices.Equal(got, st.want) {
			t.Errorf("run %d after writing %q: %q, %v; want %q, nil", i, st.write, got, err, st.want)
		}
	}
}

// "r is not rewound" by Lines: a caller that rewinds r between runs (a
// *strings.Reader seeked back) gets every line again, even after a run that
// stopped early at its first line.
func TestReview62LinesCallerRewindsBetweenRuns(t *testing.T) {
	in := "l0\nl1\r\nl2\n\nl4"
	want := []string{"l0", "l1", "l2", "", "l4"}
	r := strings.NewReader(in)
	s := source.Lines(r)
	for i := range 3 {
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		v, ok, err := sink.First(context.Background(), s)
		if v != "l0" || !ok || err != nil {
			t.Fatalf("round %d: First = %q %v %v", i, v, ok, err)
		}
		if _, err := r.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, err := review62Collect(t, s)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("round %d: after a rewind: %q, %v; want %q", i, got, err, want)
		}
	}
}

// review62PanicReader serves "0\n", "1\n", ... one line per Read and
// panics with value at its at-th Read (after data of an unfinished line
// when partial).
type review62PanicReader struct {
	at, i   int
	value   any
	partial bool
}

func (r *review62PanicReader) Read(p []byte) (int, error) {
	if r.i == r.at {
		panic(r.value)
	}
	r.i++
	if r.partial && r.i == r.at {
		return copy(p, "half"), nil
	}
	return copy(p, fmt.Sprintf("%d\n", r.i-1)), nil
}

// "A source's failure (... a read error in Lines, or a panic in any of them)
// ends the run with a *stage.SourceError: the items produced before it still
// go through": a Read that panics (whatever the value, an error included,
// which errors.Is sees through the *PanicError) after complete lines and
// after a partial one.
func TestReview62LinesReadPanics(t *testing.T) {
	values := map[string]any{"error": errReview62, "string": "boom", "EOF": io.EOF, "nil": nil}
	for vname, val := range values {
		for _, partial := range []bool{false, true} {
			for _, workers := range []int{0, 1, 4} {
				s := source.Lines(&review62PanicReader{at: 4, value: val, partial: partial})
				if workers > 0 {
					s = stage.Map(s, func(_ context.Context, v string) (string, error) { return v, nil }, stage.Workers(workers), stage.Ordered())
				}
				got, err := review62Collect(t, s)
				want := []string{"0", "1", "2", "3"}
				if partial {
					want = want[:3]
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s partial %v workers %d: lines %q; want %q", vname, partial, workers, got, want)
				}
				var se *stage.SourceError
				var pe *stage.PanicError
				if !errors.As(err, &se) || !errors.As(err, &pe) {
					t.Errorf("%s partial %v workers %d: err = %v; want a *PanicError in a *SourceError", vname, partial, workers, err)
					continue
				}
				if vname == "error" && !errors.Is(err, errReview62) {
					t.Errorf("a panic with an error: errors.Is does not see it")
				}
			}
		}
	}
}

// The *LineTooLongError "names the line": its 1-based number counts every
// line of the run before it (empty ones, "\r\n" ones), through stages of
// several workers; the lines before it all go through, in order under
// Ordered, and none after it.
func TestReview62LinesTooLongLineNumberThroughWorkers(t *testing.T) {
	var b strings.Builder
	var want []string
	for i := range 300 {
		switch i % 3 {
		case 0:
			b.WriteString("\n")
			want = append(want, "")
		case 1:
			fmt.Fprintf(&b, "l%d\r\n", i)
			want = append(want, fmt.Sprintf("l%d", i))
		default:
			fmt.Fprintf(&b, "m\r%d\n", i)
			want = append(want, fmt.Sprintf("m\r%d", i))
		}
	}
	b.WriteString(strings.Repeat("y", 65) + "\nafter\n")
	for _, workers := range []int{1, 4, -1} {
		for _, rd := range []func() io.Reader{
			func() io.Reader { return strings.NewReader(b.String()) },
			func() io.Reader { return iotest.HalfReader(strings.NewReader(b.String())) },
		} {
			s := stage.Map(source.Lines(rd(), source.MaxLineLength(64)), func(_ context.Context, v string) (string, error) { return v, nil }, stage.Workers(workers), stage.Ordered())
			got, err := review62Collect(t, s)
			var lt *source.LineTooLongError
			if !errors.As(err, &lt) || lt.Line != 301 || lt.Max != 64 {
				t.Errorf("workers %d: err = %v (%+v); want a LineTooLongError of line 301, max 64", workers, err, lt)
			}
			if !slices.Equal(got, want) {
				t.Errorf("workers %d: %d lines delivered; want the 300 before the long one, in order", workers, len(got))
			}
		}
	}
}

// review62Terminal serves its segments one per Read; a nil-data segment
// is an (0, io.EOF), as a terminal says at each end of input; reads past
// the last segment are counted.
type review62Terminal struct {
	segs    []string // "" with eof true: an io.EOF
	eofs    []bool
	i       int
	past    int
	withEOF bool // the data before an EOF comes with it (n > 0, io.EOF)
}

func (r *review62Terminal) Read(p []byte) (int, error) {
	if r.i >= len(r.segs) {
		r.past++
		return 0, io.EOF
	}
	s, eof := r.segs[r.i], r.eofs[r.i]
	r.i++
	if eof {
		return 0, io.EOF
	}
	n := copy(p, s)
	if n < len(s) {
		panic("review62: segment larger than the buffer")
	}
	if r.withEOF && r.i < len(r.segs) && r.eofs[r.i] {
		r.i++
		return n, io.EOF
	}
	return n, nil
}

// "once r said io.EOF, a run does not read it again (a terminal would wait
// for more)", and "each run starts the source anew (... for a reader ...,
// from wherever the previous run left it)": over a terminal-like reader that
// says io.EOF at the end of each input (with the last data or after it),
// each run delivers one input's lines, its last line without a newline
// included, and reads nothing past its io.EOF; so also through a
// *bufio.Reader given as r (4 KiB and more: the buffer itself; or smaller).
func TestReview62LinesTerminalEOFPerRun(t *testing.T) {
	inputs := []string{"a\nb", "c\r\n", "\n", "d\re\n\r"}
	want := [][]string{{"a", "b"}, {"c"}, {""}, {"d\re", ""}}
	for _, withEOF := range []bool{false, true} {
		for _, wrap := range []string{"plain", "bufio16", "bufio4096", "bufio8192"} {
			term := &review62Terminal{withEOF: withEOF}
			for _, in := range inputs {
				// each input in two reads, then its io.EOF
				term.segs = append(term.segs, in[:len(in)/2], in[len(in)/2:], "")
				term.eofs = append(term.eofs, false, false, true)
			}
			var r io.Reader = term
			switch wrap {
			case "bufio16":
				r = bufio.NewReaderSize(term, 16)
			case "bufio4096":
				r = bufio.NewReaderSize(term, 4096)
			case "bufio8192":
				r = bufio.NewReaderSize(term, 8192)
			}
			s := source.Lines(r)
			for i := range inputs {
				got, err := review62Collect(t, s)
				if err != nil || !slices.Equal(got, want[i]) {
					t.Errorf("withEOF %v, %s, run %d: %q, %v; want %q, nil", withEOF, wrap, i, got, err, want[i])
				}
			}
			if term.past != 0 || term.i != len(term.segs) {
				t.Errorf("withEOF %v, %s: %d reads past the last io.EOF, %d of %d segments read; want 0 and all", withEOF, wrap, term.past, term.i, len(term.segs))
			}
		}
	}
}
