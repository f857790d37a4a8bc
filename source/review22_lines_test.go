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

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r22Step struct {
	data string
	err  error
}

type r22Reader struct{ steps []r22Step }

func (r *r22Reader) Read(p []byte) (int, error) {
	if len(r.steps) == 0 {
		return 0, io.EOF
	}
	s := r.steps[0]
	if len(s.data) > len(p) {
		n := copy(p, s.data)
		r.steps[0].data = s.data[n:]
		return n, nil
	}
	r.steps = r.steps[1:]
	return copy(p, s.data), s.err
}

func r22Collect(t *testing.T, r io.Reader, opts ...source.LinesOption) ([]string, error) {
	t.Helper()
	var got []string
	err := sink.ForEach(context.Background(), source.Lines(r, opts...), func(_ context.Context, v string) error {
		got = append(got, v)
		return nil
	})
	return got, err
}

// A *bufio.Reader of 4 KiB or more whose underlying reader fails with
// bufio.ErrBufferFull itself: that is a read error, not a full buffer / long line.
func TestReview22LinesBufioReaderErrBufferFull(t *testing.T) {
	for _, size := range []int{16, 4096, 8192} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			under := &r22Reader{steps: []r22Step{{data: "a\nb\npart", err: bufio.ErrBufferFull}, {data: "more\nc\n"}}}
			got, err := r22Collect(t, bufio.NewReaderSize(under, size))
			var se *stage.SourceError
			if !errors.As(err, &se) || !errors.Is(err, bufio.ErrBufferFull) {
				t.Fatalf("err = %v, want *SourceError wrapping bufio.ErrBufferFull", err)
			}
			var ll *source.LineTooLongError
			if errors.As(err, &ll) {
				t.Fatalf("read error taken for a long line: %v", err)
			}
			if !slices.Equal(got, []string{"a", "b"}) {
				t.Fatalf("lines = %q, want [a b]", got)
			}
		})
	}
}

// An error wrapping io.EOF through a *bufio.Reader is still a read error.
func TestReview22LinesBufioWrappedEOF(t *testing.T) {
	for _, size := range []int{16, 4096} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			wrapped := fmt.Errorf("truncated: %w", io.EOF)
			under := &r22Reader{steps: []r22Step{{data: "a\nb\nc", err: wrapped}}}
			got, err := r22Collect(t, bufio.NewReaderSize(under, size))
			var se *stage.SourceError
			if !errors.As(err, &se) || !errors.Is(err, io.EOF) {
				t.Fatalf("err = %v, want *SourceError wrapping the wrapped EOF", err)
			}
			if !slices.Equal(got, []string{"a", "b"}) {
				t.Fatalf("lines = %q, want [a b]", got)
			}
		})
	}
}

// A *bufio.Reader of 4 KiB or more: a second run reads on from the line
// after the first run's last.
func TestReview22LinesBufioSecondRun(t *testing.T) {
	for _, size := range []int{4096, 65536} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var b strings.Builder
			for i := range 2000 {
				fmt.Fprintf(&b, "line%d\r\n", i)
			}
			br := bufio.NewReaderSize(struct{ io.Reader }{strings.NewReader(b.String())}, size)
			for want := range 5 {
				v, ok, err := sink.First(context.Background(), source.Lines(br))
				if err != nil || !ok || v != fmt.Sprintf("line%d", want) {
					t.Fatalf("run %d: First = %q, %v, %v", want, v, ok, err)
				}
			}
			// Three lines via ForEach+ErrStop.
			var got []string
			err := sink.ForEach(context.Background(), source.Lines(br), func(_ context.Context, v string) error {
				got = append(got, v)
				if len(got) == 3 {
					return stage.ErrStop
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			v, _, _ := sink.First(context.Background(), source.Lines(br))
			if v != "line8" {
				t.Fatalf("after ErrStop at line7: next run starts at %q (got %q)", v, got)
			}
		})
	}
}

// A line longer than a 4 KiB bufio.Reader's buffer is delivered whole;
// MaxLineLength applies exactly over a *bufio.Reader too.
func TestReview22LinesBufioLongLine(t *testing.T) {
	long := strings.Repeat("x", 10000)
	in := "a\n" + long + "\r\nb"
	got, err := r22Collect(t, bufio.NewReaderSize(struct{ io.Reader }{strings.NewReader(in)}, 4096))
	if err != nil || len(got) != 3 || got[1] != long || got[2] != "b" {
		t.Fatalf("err=%v n=%d", err, len(got))
	}
	for _, max := range []int{100, 4095, 4096, 4097, 9999, 10000} {
		got, err := r22Collect(t, bufio.NewReaderSize(struct{ io.Reader }{strings.NewReader(in)}, 4096), source.MaxLineLength(max))
		var ll *source.LineTooLongError
		if max >= 10000 {
			if err != nil || len(got) != 3 {
				t.Fatalf("max %d: err=%v n=%d, want the 10000-byte line", max, err, len(got))
			}
			continue
		}
		if !errors.As(err, &ll) || ll.Line != 2 || ll.Max != max || len(got) != 1 {
			t.Fatalf("max %d: err=%v lines=%d, want LineTooLong line 2", max, err, len(got))
		}
	}
	// A \r\n straddling the limit: line of exactly max bytes followed by \r\n.
	for _, size := range []int{16, 4096} {
		in := strings.Repeat("y", 4096) + "\r\nz\n"
		got, err := r22Collect(t, bufio.NewReaderSize(struct{ io.Reader }{strings.NewReader(in)}, size), source.MaxLineLength(4096))
		if err != nil || len(got) != 2 || len(got[0]) != 4096 {
			t.Fatalf("size %d: exactly-max line with CRLF: err=%v n=%d", size, err, len(got))
		}
	}
}
