package source_test

// Review 13: the sources' promises, from the package documentation.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func r13ID(_ context.Context, v int) (int, error) { return v, nil }

// Doc (Seq): "when the run ends, early or not, the iterator is stopped (its
// deferred calls run) before the sink returns." Seq2: "the iterator is not
// advanced after" its first error.
func TestReview13SeqStoppedBeforeSinkReturns(t *testing.T) {
	type ending struct {
		name string
		run  func(s stage.Stream[int]) error
	}
	endings := []ending{
		{"first", func(s stage.Stream[int]) error { _, _, err := sink.First(context.Background(), s); return err }},
		{"errstop", func(s stage.Stream[int]) error {
			return sink.ForEach(context.Background(), s, func(context.Context, int) error { return stage.ErrStop })
		}},
		{"callback-error", func(s stage.Stream[int]) error {
			return sink.ForEach(context.Background(), s, func(context.Context, int) error { return errors.New("x") })
		}},
		{"stage-failfast", func(s stage.Stream[int]) error {
			_, err := sink.Slice(context.Background(), stage.Map(s, func(_ context.Context, v int) (int, error) {
				if v == 3 {
					return 0, errors.New("x")
				}
				return v, nil
			}, stage.Workers(3)))
			return err
		}},
		{"cancel", func(s stage.Stream[int]) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			return sink.ForEach(ctx, s, func(context.Context, int) error { cancel(); return nil })
		}},
		{"all-break", func(s stage.Stream[int]) error {
			for range sink.All(context.Background(), s) {
				break
			}
			return nil
		}},
		{"to-end", func(s stage.Stream[int]) error { _, err := sink.Count(context.Background(), s); return err }},
	}
	for _, e := range endings {
		for _, w := range []int{1, 4, -1} {
			t.Run(fmt.Sprintf("%s/w=%d", e.name, w), func(t *testing.T) {
				var stopped atomic.Bool
				var returned atomic.Bool
				seq := func(yield func(int) bool) {
					defer func() {
						if returned.Load() {
							t.Error("the iterator's deferred calls ran after the sink returned")
						}
						stopped.Store(true)
					}()
					for i := range 50 {
						if !yield(i) {
							return
						}
					}
				}
				runcheck.Run(t, e.name, func() {
					_ = e.run(stage.Map(source.Seq(seq), r13ID, stage.Workers(w)))
					returned.Store(true)
				})
				if !stopped.Load() {
					t.Fatal("the sink returned before the iterator was stopped")
				}
			})
		}
	}
}

func TestReview13Seq2NotAdvancedAfterError(t *testing.T) {
	var after atomic.Int32
	var errored atomic.Bool
	boom := errors.New("seq2 broke")
	seq := func(yield func(int, error) bool) {
		for i := range 100 {
			if errored.Load() {
				after.Add(1)
			}
			var err error
			if i == 5 {
				err = boom
				errored.Store(true)
			}
			if !yield(i, err) {
				return
			}
		}
	}
	var got []int
	var err error
	runcheck.Run(t, "seq2", func() {
		got, err = sink.Slice(context.Background(), stage.Map(source.Seq2(seq), r13ID, stage.Workers(4), stage.Ordered()))
	})
	var se *stage.SourceError
	if !errors.As(err, &se) || !errors.Is(err, boom) || fmt.Sprint(got) != "[0 1 2 3 4]" || after.Load() != 0 {
		t.Fatalf("got %v err %v, advanced %d times after the error", got, err, after.Load())
	}
}

// Doc (Lines): "split as bufio.ScanLines splits them: the line ending ("\n"
// or "\r\n") is dropped"; MaxLineLength "sets the longest line, in bytes
// without its line ending"; "a line longer than the maximum ... ends the run
// with a *stage.SourceError wrapping a *LineTooLongError that names the line".
func TestReview13LinesMaxLengthExcludesLineEnding(t *testing.T) {
	cases := []struct {
		in      string
		max     int
		want    []string
		tooLong int // 1-based line, 0: none
	}{
		{"12345\n", 5, []string{"12345"}, 0},
		{"12345\r\n", 5, []string{"12345"}, 0},
		{"12345", 5, []string{"12345"}, 0},
		{"a\r\n12345\r\nb", 5, []string{"a", "12345", "b"}, 0},
		{"1\n\n123456\nx\n", 5, []string{"1", ""}, 3},
		{"123456", 5, nil, 1},
		{"1\r\n", 1, []string{"1"}, 0},
		{"\r\n\r\n", 1, []string{"", ""}, 0},
		{"", 1, nil, 0},
		{"\n", 1, []string{""}, 0},
		{"ab\rc\n", 4, []string{"ab\rc"}, 0},
	}
	for _, c := range cases {
		for _, wrap := range []bool{false, true} {
			t.Run(fmt.Sprintf("%q/max=%d/wrapped=%v", c.in, c.max, wrap), func(t *testing.T) {
				var r io.Reader = strings.NewReader(c.in)
				if wrap {
					r = &r13OneByteReader{r: r} // a waiting source, one byte per Read
				}
				var got []string
				var err error
				runcheck.Run(t, "lines", func() { got, err = sink.Slice(context.Background(), source.Lines(r, source.MaxLineLength(c.max))) })
				if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", c.want) {
					t.Errorf("lines %q, want %q", got, c.want)
				}
				var le *source.LineTooLongError
				var se *stage.SourceError
				switch {
				case c.tooLong == 0 && err != nil:
					t.Errorf("err = %v, want nil", err)
				case c.tooLong > 0 && (!errors.As(err, &se) || !errors.As(err, &le) || le.Line != c.tooLong || le.Max != c.max):
					t.Errorf("err = %v, want a *SourceError > *LineTooLongError{Line %d, Max %d}", err, c.tooLong, c.max)
				}
			})
		}
	}
}

type r13OneByteReader struct{ r io.Reader }

func (o *r13OneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

// r13Endless is a reader of 'a' bytes that counts what it gave.
type r13Endless struct{ n atomic.Int64 }

func (e *r13Endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	e.n.Add(int64(len(p)))
	return len(p), nil
}

// Doc (Lines): "Hostile input cannot exhaust memory: a line longer than the
// maximum ... ends the run ...; at most the maximum plus 4 KiB is read into
// memory for it."
func TestReview13LinesHostileLineReadsBounded(t *testing.T) {
	for _, max := range []int{1, 100, 5000, 1 << 16} {
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			r := &r13Endless{}
			var err error
			runcheck.Run(t, "hostile", func() {
				_, err = sink.Count(context.Background(), source.Lines(struct{ io.Reader }{r}, source.MaxLineLength(max)))
			})
			var le *source.LineTooLongError
			if !errors.As(err, &le) || le.Line != 1 {
				t.Fatalf("err = %v", err)
			}
			if got := r.n.Load(); got > int64(max)+4096 {
				t.Fatalf("read %d bytes of one line, more than the maximum %d plus 4 KiB", got, max)
			}
		})
	}
}

// Doc (Chan): "A value is received only when a stage is ready to work on it,
// so a run that stops early (an error, sink.First, a break) leaves the rest
// in ch"; README: "sink.First(ctx, source.Chan(ch)) receives exactly one value
// and leaves the rest in ch". Also Func: "an error that wraps it is a
// failure".
func TestReview13ChanFirstTakesOne(t *testing.T) {
	for range 20 {
		ch := make(chan int, 10)
		for i := range 10 {
			ch <- i
		}
		var v int
		var ok bool
		var err error
		runcheck.Run(t, "first", func() { v, ok, err = sink.First(context.Background(), source.Chan(ch)) })
		if v != 0 || !ok || err != nil || len(ch) != 9 {
			t.Fatalf("First = %v %v %v, %d left in ch; want 0 true nil, 9 left", v, ok, err, len(ch))
		}
	}
	var err error
	runcheck.Run(t, "wrapped-eof", func() {
		_, err = sink.Count(context.Background(), source.Func(func(context.Context) (int, error) { return 0, fmt.Errorf("truncated: %w", io.EOF) }))
	})
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a *SourceError for a wrapped io.EOF", err)
	}
}
