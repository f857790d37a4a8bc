package source_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// scanLines is what bufio.ScanLines makes of s: the reference.
func scanLines(s string) []string {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 64<<20)
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func TestLinesSplitsLikeScanLines(t *testing.T) {
	for _, in := range []string{
		"",
		"a",
		"a\n",
		"a\nb",
		"a\r\nb\r\n",
		"\n\n\n",
		"a\rb\r\n\r",
		"last without newline\r",
		"x\n\ny\n",
	} {
		got, err := sink.Slice(context.Background(), source.Lines(strings.NewReader(in)))
		if err != nil {
			t.Fatalf("%q: err = %v", in, err)
		}
		if want := scanLines(in); !slices.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func TestLinesOfAnyLength(t *testing.T) {
	long := strings.Repeat("x", 5<<20) // 5 MiB, past bufio.Scanner's default limit
	in := "short\n" + long + "\nend"
	// One byte at a time at first would be slow; a half reader splits reads.
	got, err := sink.Slice(context.Background(), source.Lines(iotest.HalfReader(strings.NewReader(in))))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "short" || got[1] != long || got[2] != "end" {
		t.Fatalf("got %d lines (lengths %v), want short, 5 MiB, end", len(got), lengths(got))
	}
}

func lengths(ss []string) []int {
	var n []int
	for _, s := range ss {
		n = append(n, len(s))
	}
	return n
}

func TestLinesReadErrorAfterCompleteLines(t *testing.T) {
	errDisk := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader("one\ntwo\nparti"), iotest.ErrReader(errDisk))
	var got []string
	var errs []error
	for v, err := range sink.All(context.Background(), source.Lines(r)) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, v)
	}
	var se *stage.SourceError
	if !slices.Equal(got, []string{"one", "two"}) || len(errs) != 1 || !errors.As(errs[0], &se) || !errors.Is(errs[0], errDisk) {
		t.Fatalf("got %q and errors %v; want one, two, then a *stage.SourceError wrapping the read error", got, errs)
	}
}
