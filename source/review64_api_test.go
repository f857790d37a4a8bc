package source_test

// Review 64: the API surface of package source, from its documentation
// only: the exported error type at its zero value, the line-length limit
// at and one past it, and the zero LinesOption.

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// LineTooLongError is exported with exported fields: its zero value must
// print.
func TestReview64APIZeroLineTooLongErrorPrints(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		if (&source.LineTooLongError{}).Error() == "" {
			t.Error("(&source.LineTooLongError{}).Error() is empty")
		}
	})
}

// "MaxLineLength sets the longest line, in bytes without its line ending,
// that Lines accepts." and "a line longer than the maximum ... ends the
// run with a *stage.SourceError wrapping a *LineTooLongError that names
// the line". At the limit (with "\n", with "\r\n", and as a last line
// without one) the line is accepted; one past it is refused.
func TestReview64APIMaxLineLengthBoundary(t *testing.T) {
	const max = 5000 // more than the 4 KiB read buffer
	at := strings.Repeat("a", max)
	for _, tc := range []struct {
		name, input string
	}{
		{"LF", "x\n" + at + "\ny\n"},
		{"CRLF", "x\r\n" + at + "\r\ny\r\n"},
		{"last line", "x\ny\n" + at},
	} {
		t.Run("at/"+tc.name, func(t *testing.T) {
			got, err := sink.Slice(context.Background(), source.Lines(strings.NewReader(tc.input), source.MaxLineLength(max)))
			if err != nil || len(got) != 3 {
				t.Fatalf("a line of exactly MaxLineLength bytes: %d lines, %v", len(got), err)
			}
		})
	}
	for _, tc := range []struct {
		name, input string
	}{
		{"LF", "x\n" + at + "b\ny\n"},
		{"CRLF", "x\r\n" + at + "b\r\ny\r\n"},
		{"last line", "x\ny\n" + at + "b"},
	} {
		t.Run("past/"+tc.name, func(t *testing.T) {
			_, err := sink.Slice(context.Background(), source.Lines(strings.NewReader(tc.input), source.MaxLineLength(max)))
			var se *stage.SourceError
			var le *source.LineTooLongError
			if !errors.As(err, &se) || !errors.As(err, &le) {
				t.Fatalf("a line one byte past MaxLineLength: %v: want a *SourceError wrapping a *LineTooLongError", err)
			}
			wantLine := 2
			if tc.name == "last line" {
				wantLine = 3
			}
			if le.Line != wantLine || le.Max != max {
				t.Fatalf("LineTooLongError = %+v, want Line %d, Max %d", le, wantLine, max)
			}
		})
	}
}

// LinesOption: "The zero LinesOption is not an option: Lines panics if
// given one", with the "sluice:" prefix of a programmer error.
func TestReview64APIZeroLinesOption(t *testing.T) {
	msg := func() (msg string) {
		defer func() { msg, _ = recover().(string) }()
		source.Lines(strings.NewReader("a\nbb\n"), source.LinesOption{})
		return ""
	}()
	if !strings.HasPrefix(msg, "sluice: source.Lines") {
		t.Fatalf("Lines with the zero LinesOption: panic %q, want one that starts with %q", msg, "sluice: source.Lines")
	}
}

// Func: "The run calls next only when a stage is ready for an item, never
// concurrently, and with the run's context." (and stage.Source: "never
// concurrently"). next keeps plain state, no lock, while 8 workers (and,
// under NeverWaits or Interruptible, their consumer's goroutines) ask it
// for items: the race detector is the verdict.
func TestReview64APIFuncNextNeverConcurrent(t *testing.T) {
	const n = 3000
	for _, tc := range []struct {
		name string
		wrap func(stage.Stream[int]) stage.Stream[int]
	}{
		{"waiting", func(s stage.Stream[int]) stage.Stream[int] { return s }},
		{"NeverWaits", stage.NeverWaits[int]},
		{"Interruptible", stage.Interruptible[int]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, inNext := 0, 0
			next := func(ctx context.Context) (int, error) {
				inNext++
				defer func() { inNext-- }()
				if inNext != 1 {
					t.Errorf("%d calls of next at once", inNext)
				}
				if ctx.Err() != nil && tc.name != "Interruptible" {
					t.Errorf("next called with a done context")
				}
				if i == n {
					return 0, io.EOF
				}
				i++
				return i, nil
			}
			s := tc.wrap(source.Func(next))
			sum := 0
			err := sink.ForEach(context.Background(), stage.Map(s,
				func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(8)),
				func(_ context.Context, v int) error { sum += v; return nil })
			if err != nil || sum != n*(n+1)/2 {
				t.Fatalf("sum %d, %v: want %d", sum, err, n*(n+1)/2)
			}
		})
	}
}
