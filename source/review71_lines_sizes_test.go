package source_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "Lines returns a stream of the lines of r, split as bufio.ScanLines splits
// them: the line ending ("\n" or "\r\n") is dropped, and a last line without
// a newline is delivered."
//
// Every input is checked against bufio.Scanner itself, over an in-memory
// reader and over a reader of its own type, through a Map stage.
func TestReview71LinesSplitLikeScanLines(t *testing.T) {
	inputs := []string{
		"", "\n", "\n\n", "a", "a\n", "a\nb", "a\r\nb\r\n", "a\r\n\r\nb", "\r\n", "\r",
		"a\rb\n", "a\r\r\n", "x\n\ny\n\n", strings.Repeat("line\n", 3000),
		strings.Repeat("z", 5000) + "\n" + strings.Repeat("y", 4095) + "\r\n" + "end",
	}
	for i, in := range inputs {
		var want []string
		sc := bufio.NewScanner(strings.NewReader(in))
		for sc.Scan() {
			want = append(want, sc.Text())
		}
		readers := map[string]func() io.Reader{
			"strings": func() io.Reader { return strings.NewReader(in) },
			"own":     func() io.Reader { return struct{ io.Reader }{strings.NewReader(in)} },
			"onebyte": func() io.Reader { return &review71OneByte{s: in} },
		}
		for name, r := range readers {
			s := stage.Map(source.Lines(r()), func(_ context.Context, l string) (string, error) { return l, nil },
				stage.Workers(3), stage.Ordered())
			got, err := review71Collect(t, context.Background(), s)
			if err != nil || review71Join(got) != review71Join(want) || len(got) != len(want) {
				t.Fatalf("input %d over %s: Lines = %.100s, %v; want %.100s", i, name, review71Join(got), err, review71Join(want))
			}
		}
	}
}

// review71OneByte returns one byte per Read.
type review71OneByte struct{ s string }

func (r *review71OneByte) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

// "MaxLineLength sets the longest line, in bytes without its line ending,
// that Lines accepts." and "a line longer than the maximum ... ends the run
// with a *stage.SourceError wrapping a *LineTooLongError that names the line"
// ("Line int // 1-based number of the line", "Max int // the maximum
// length"), "after the complete lines before it went through".
func TestReview71LinesMaxBoundaries(t *testing.T) {
	type tc struct {
		max      int
		in       string
		want     []string
		tooLong  int // line number, 0: no error
		bufioBuf int // 0: a plain reader; else a *bufio.Reader of this size
	}
	cases := []tc{
		{max: 1, in: "a\nb\n", want: []string{"a", "b"}},
		{max: 1, in: "a\r\nb", want: []string{"a", "b"}},
		{max: 1, in: "a\nbc\nd\n", want: []string{"a"}, tooLong: 2},
		{max: 1, in: "ab", tooLong: 1},
		{max: 5, in: "12345\r\n12345\n12345", want: []string{"12345", "12345", "12345"}},
		{max: 5, in: "\n\n123456\n", want: []string{"", ""}, tooLong: 3},
		{max: 5, in: "ok\n1234\r5\n", want: []string{"ok"}, tooLong: 2},
		{max: 5, in: "ok\n123456", want: []string{"ok"}, tooLong: 2},
		{max: 4096, in: strings.Repeat("q", 4096) + "\n" + strings.Repeat("q", 4096), want: []string{strings.Repeat("q", 4096), strings.Repeat("q", 4096)}},
		{max: 4096, in: "a\n" + strings.Repeat("q", 4097) + "\n", want: []string{"a"}, tooLong: 2},
		{max: 4095, in: strings.Repeat("q", 4095) + "\r\n" + "x", want: []string{strings.Repeat("q", 4095), "x"}},
		{max: 10000, in: strings.Repeat("w", 10000) + "\r\n" + strings.Repeat("v", 9999) + "\n", want: []string{strings.Repeat("w", 10000), strings.Repeat("v", 9999)}},
		{max: 10000, in: strings.Repeat("w", 10001), tooLong: 1},
		// a *bufio.Reader is the buffer: lines longer than it but within
		// the maximum are accepted.
		{max: 100, in: strings.Repeat("b", 50) + "\n" + strings.Repeat("c", 100) + "\r\n", want: []string{strings.Repeat("b", 50), strings.Repeat("c", 100)}, bufioBuf: 16},
		{max: 100, in: "x\n" + strings.Repeat("c", 101) + "\n", want: []string{"x"}, tooLong: 2, bufioBuf: 16},
		{max: source.DefaultMaxLineLength + 10, in: strings.Repeat("d", source.DefaultMaxLineLength+10), want: []string{strings.Repeat("d", source.DefaultMaxLineLength+10)}},
	}
	for i, c := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var r io.Reader = struct{ io.Reader }{strings.NewReader(c.in)}
			if c.bufioBuf > 0 {
				r = bufio.NewReaderSize(r, c.bufioBuf)
			}
			got, err := review71Collect(t, context.Background(), source.Lines(r, source.MaxLineLength(c.max)))
			if review71Join(got) != review71Join(c.want) || len(got) != len(c.want) {
				t.Fatalf("lines = %.80s, want %.80s (err %v)", review71Join(got), review71Join(c.want), err)
			}
			if c.tooLong == 0 {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			var se *stage.SourceError
			var lt *source.LineTooLongError
			if !errors.As(err, &se) || !errors.As(se, &lt) || lt.Line != c.tooLong || lt.Max != c.max {
				t.Fatalf("err = %v, want a *stage.SourceError wrapping *LineTooLongError{Line: %d, Max: %d}", err, c.tooLong, c.max)
			}
		})
	}
}

// "DefaultMaxLineLength is the longest line Lines accepts unless told
// otherwise with MaxLineLength: 1 MiB."
func TestReview71LinesDefaultMax(t *testing.T) {
	exact := strings.Repeat("m", source.DefaultMaxLineLength)
	got, err := review71Collect(t, context.Background(), source.Lines(strings.NewReader("a\n"+exact+"\r\nz")))
	if err != nil || len(got) != 3 || got[1] != exact || got[2] != "z" {
		t.Fatalf("a line of exactly 1 MiB: %d lines, %v", len(got), err)
	}
	got, err = review71Collect(t, context.Background(), source.Lines(strings.NewReader("a\n"+exact+"m\nz\n")))
	var lt *source.LineTooLongError
	if len(got) != 1 || !errors.As(err, &lt) || lt.Line != 2 || lt.Max != source.DefaultMaxLineLength {
		t.Fatalf("a line of 1 MiB + 1: %d lines, %v; want 1 line and LineTooLongError{2, 1 MiB}", len(got), err)
	}
}

// "Hostile input cannot exhaust memory: ... at most the maximum plus one
// buffer (4 KiB, ...) is read into memory for it."
//
// An endless line (a reader that never ends) ends the run with a
// LineTooLongError, having read at most max + 4 KiB of it.
func TestReview71LinesEndlessLine(t *testing.T) {
	for _, max := range []int{1, 100, 5000, 70000} {
		r := &review71Endless{}
		got, err := review71Collect(t, context.Background(),
			stage.Map(source.Lines(r, source.MaxLineLength(max)), func(_ context.Context, l string) (string, error) { return l, nil }, stage.Workers(2)))
		var lt *source.LineTooLongError
		if len(got) != 0 || !errors.As(err, &lt) || lt.Line != 1 || lt.Max != max {
			t.Fatalf("max %d: %d lines, %v", max, len(got), err)
		}
		if r.n > max+4096 {
			t.Fatalf("max %d: read %d bytes of one line, more than max + 4 KiB", max, r.n)
		}
	}
}

// review71Endless is an endless reader of 'e'.
type review71Endless struct{ n int }

func (r *review71Endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'e'
	}
	r.n += len(p)
	return len(p), nil
}

// "MaxLineLength ... It panics if n < 1." and "The zero LinesOption is not an
// option: Lines panics if given one." and "A nil r panics."
func TestReview71LinesBadArguments(t *testing.T) {
	for name, f := range map[string]func(){
		"max-0":    func() { source.MaxLineLength(0) },
		"max-neg":  func() { source.MaxLineLength(-1) },
		"zero-opt": func() { source.Lines(strings.NewReader("a"), source.LinesOption{}) },
		"nil-r":    func() { source.Lines(nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}
