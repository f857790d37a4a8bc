package source_test

// Audit of documented promises of package source that no other test pins,
// written from the documentation only. No verdict depends on a duration.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Package doc: "each run starts the source anew (for a slice, from its first
// item; for a channel, a reader or a one-shot iterator, from wherever the
// previous run left it)"; Lines: "r is not rewound: a second run reads on";
// Func: "Each run calls the same next ... a generator that should restart per
// run belongs in stage.Source".
func TestAuditRunsGoOnWhereThePreviousLeft(t *testing.T) {
	bg := context.Background()

	// Lines over a reader read to its end: the second run finds nothing.
	r := strings.NewReader("a\nb\nc\n")
	lines := source.Lines(r)
	var got []string
	var err error
	runcheck.Run(t, "lines-1", func() { got, err = sink.Slice(bg, lines) })
	if !slices.Equal(got, []string{"a", "b", "c"}) || err != nil {
		t.Fatalf("first run of Lines: %q, %v", got, err)
	}
	runcheck.Run(t, "lines-2", func() { got, err = sink.Slice(bg, lines) })
	if got != nil || err != nil {
		t.Fatalf("second run of Lines over a reader at its end: %q, %v; want nothing (r is not rewound)", got, err)
	}

	// Func: the same next, which goes on counting.
	i := 0
	fn := source.Func(func(context.Context) (int, error) {
		if i == 5 {
			return 0, io.EOF
		}
		i++
		return i - 1, nil
	})
	var v int
	var ok bool
	runcheck.Run(t, "func-1", func() { v, ok, err = sink.First(bg, fn) })
	if v != 0 || !ok || err != nil {
		t.Fatalf("First over Func: %d, %v, %v", v, ok, err)
	}
	var rest []int
	runcheck.Run(t, "func-2", func() { rest, err = sink.Slice(bg, fn) })
	if !slices.Equal(rest, []int{1, 2, 3, 4}) || err != nil {
		t.Fatalf("second run of Func: %v, %v; want 1..4 (the same next goes on)", rest, err)
	}

	// Chan: from wherever the previous run left it.
	ch := make(chan int, 5)
	for i := range 5 {
		ch <- i
	}
	close(ch)
	cs := source.Chan(ch)
	runcheck.Run(t, "chan-1", func() { v, ok, err = sink.First(bg, cs) })
	runcheck.Run(t, "chan-2", func() { rest, err = sink.Slice(bg, cs) })
	if v != 0 || !ok || !slices.Equal(rest, []int{1, 2, 3, 4}) || err != nil {
		t.Fatalf("Chan: First %d, then %v, %v; want 0, then 1..4", v, rest, err)
	}

	// Seq over a one-shot iterator (it drains a shared channel): the second
	// run gets what the first did not take; First takes exactly one step.
	ch2 := make(chan int, 5)
	for i := range 5 {
		ch2 <- i
	}
	close(ch2)
	seq := source.Seq(func(yield func(int) bool) {
		for v := range ch2 {
			if !yield(v) {
				return
			}
		}
	})
	runcheck.Run(t, "seq-1", func() { v, ok, err = sink.First(bg, seq) })
	runcheck.Run(t, "seq-2", func() { rest, err = sink.Slice(bg, seq) })
	if v != 0 || !ok || !slices.Equal(rest, []int{1, 2, 3, 4}) || err != nil {
		t.Fatalf("Seq over a one-shot iterator: First %d, then %v, %v; want 0, then 1..4", v, rest, err)
	}
}

// countingReader fills every buffer it is given with 'x' (a line that never
// ends) and counts the bytes it handed out.
type countingReader struct{ read int }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.read += len(p)
	return len(p), nil
}

// Lines: "a line longer than the maximum ... ends the run with a
// *stage.SourceError wrapping a *LineTooLongError that names the line; at most
// the maximum plus 4 KiB is read into memory for it". LineTooLongError: "Line
// int // 1-based number of the line; Max int // the maximum length, in bytes".
func TestAuditLineTooLongBoundAndFields(t *testing.T) {
	for _, max := range []int{1, 100, 4096, 100_000} {
		r := &countingReader{}
		var err error
		runcheck.Run(t, fmt.Sprint(max), func() {
			_, err = sink.Count(context.Background(), source.Lines(r, source.MaxLineLength(max)))
		})
		var se *stage.SourceError
		var le *source.LineTooLongError
		if !errors.As(err, &se) || !errors.As(err, &le) || le.Line != 1 || le.Max != max {
			t.Errorf("max %d: err %v (%+v); want a *SourceError wrapping LineTooLongError{Line: 1, Max: %d}", max, err, le, max)
			continue
		}
		if r.read > max+4096 {
			t.Errorf("max %d: %d bytes read for the long line, want at most %d (the maximum plus 4 KiB)", max, r.read, max+4096)
		}
	}
	// The default maximum is named in the error.
	in := "ok\n" + strings.Repeat("y", source.DefaultMaxLineLength+1) + "\n"
	var got []string
	var err error
	runcheck.Run(t, "default", func() { got, err = sink.Slice(context.Background(), source.Lines(strings.NewReader(in))) })
	var le *source.LineTooLongError
	if !slices.Equal(got, []string{"ok"}) || !errors.As(err, &le) || le.Line != 2 || le.Max != source.DefaultMaxLineLength {
		t.Fatalf("default maximum: %d lines, %v (%+v); want [ok] then line 2 too long, Max %d", len(got), err, le, source.DefaultMaxLineLength)
	}
}

// Func: "next returns io.EOF to end the stream ...; any other error ends the
// run with a *stage.SourceError after the items produced before it went
// through". stage.ErrStop is the Run callback's word, not a source's: from
// next (or from Seq2) it is a failure like any other, never a quiet end.
func TestAuditErrStopFromASourceIsAFailure(t *testing.T) {
	streams := map[string]func() stage.Stream[int]{
		"Func": func() stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				if i == 3 {
					return 0, stage.ErrStop
				}
				i++
				return i - 1, nil
			})
		},
		"Seq2": func() stage.Stream[int] {
			return source.Seq2(func(yield func(int, error) bool) {
				for i := range 3 {
					if !yield(i, nil) {
						return
					}
				}
				yield(0, stage.ErrStop)
			})
		},
	}
	for name, mk := range streams {
		for _, workers := range []int{0, 1, 4} {
			var got []int
			var err error
			runcheck.Run(t, name, func() {
				s := mk()
				if workers > 0 {
					s = stage.Map(s, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(workers), stage.Ordered())
				}
				got, err = sink.Slice(context.Background(), s)
			})
			var se *stage.SourceError
			if !slices.Equal(got, []int{0, 1, 2}) || !errors.As(err, &se) || !errors.Is(err, stage.ErrStop) {
				t.Errorf("%s (workers %d): %v, %v; want [0 1 2] and a *stage.SourceError wrapping ErrStop", name, workers, got, err)
			}
		}
	}
}

// LinesOption: "Options are checked when they are made: an invalid one panics
// there"; MaxLineLength "panics if n < 1". Like every build-time panic of the
// library, the message starts "sluice: source.MaxLineLength:".
func TestAuditMaxLineLengthPanicsWhenMade(t *testing.T) {
	for _, n := range []int{0, -1} {
		msg := func() (msg string) {
			defer func() {
				if p := recover(); p != nil {
					msg = fmt.Sprint(p)
				}
			}()
			source.MaxLineLength(n)
			return "<no panic>"
		}()
		if !strings.HasPrefix(msg, "sluice: source.MaxLineLength:") {
			t.Errorf("MaxLineLength(%d): panic %q, want one starting %q", n, msg, "sluice: source.MaxLineLength:")
		}
	}
}

// blockingReader gives its first chunk, then blocks in Read (saying so on
// entered) until release is closed, then reports io.EOF.
type blockingReader struct {
	first    string
	reads    atomic.Int32
	entered  chan struct{}
	release  chan struct{}
	returned atomic.Bool
}

func (r *blockingReader) Read(p []byte) (int, error) {
	if r.reads.Add(1) == 1 {
		return copy(p, r.first), nil
	}
	close(r.entered)
	<-r.release
	r.returned.Store(true)
	return 0, io.EOF
}

// Lines: "A blocked Read cannot be abandoned: when the run is cancelled, the
// sink waits for it to return." The sink returns the cancellation only after
// the blocked Read returned, and leaves no goroutine behind.
func TestAuditLinesSinkWaitsForABlockedRead(t *testing.T) {
	for _, workers := range []int{0, 2} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			r := &blockingReader{first: "a\n", entered: make(chan struct{}), release: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := source.Lines(r)
			if workers > 0 {
				s = stage.Map(s, func(_ context.Context, l string) (string, error) { return l, nil }, stage.Workers(workers), stage.Buffer(1))
			}
			sinkDone := make(chan struct{})
			var early atomic.Bool
			go func() {
				select {
				case <-r.entered:
				case <-time.After(30 * time.Second): // hang watchdog only
				}
				cancel()
				for range 20000 {
					runtime.Gosched()
				}
				select {
				case <-sinkDone:
					early.Store(true)
				default:
				}
				close(r.release)
			}()
			var err error
			var got []string
			runcheck.Run(t, "lines", func() {
				defer close(sinkDone)
				err = sink.ForEach(ctx, s, func(_ context.Context, l string) error {
					got = append(got, l)
					return nil
				})
			})
			if early.Load() {
				t.Fatal("the sink returned while a Read of its run was blocked")
			}
			if !r.returned.Load() {
				t.Fatal("the sink returned before the blocked Read did")
			}
			// A worker may block in the second Read before the sink got "a";
			// the cancellation may then drop "a" ("nothing more is delivered").
			if !errors.Is(err, context.Canceled) || len(got) > 1 || (len(got) == 1 && got[0] != "a") || (workers == 0 && len(got) != 1) {
				t.Fatalf("ForEach = %v after %q; want context.Canceled after [a] (or nothing, with workers)", err, got)
			}
		})
	}
}
