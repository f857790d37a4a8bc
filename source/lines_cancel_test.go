package source_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Lines over a *bufio.Reader of 4 KiB: a run cancelled within a line (its
// first part read, the Read for the rest blocked) reads no more once that
// Read returned, and leaves the line in the buffer: a second run reads on
// from the line after the first run's last, the whole interrupted line
// first.
func TestLinesCancelledWithinALineLeavesItToTheNextRun(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	gate := &secondRead{r: pr, entered: make(chan struct{})}
	br := bufio.NewReaderSize(gate, 4096)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sawX := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- sink.ForEach(ctx, source.Lines(br), func(_ context.Context, l string) error {
			if l == "x" {
				close(sawX)
			}
			return nil
		})
	}()
	write := func(s string) {
		t.Helper()
		if _, err := pw.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write("x\nab") // one Read: x, and the start of the next line
	waitClosed(t, sawX)
	waitClosed(t, gate.entered) // the Read for the rest of the line waits
	cancel()
	write("cd") // the Read that was blocked takes it; no Read follows
	if err := waitErr(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want context.Canceled", err)
	}
	go func() { pw.Write([]byte("ef\ny\n")); pw.Close() }()
	got, err := sink.Slice(context.Background(), source.Lines(br))
	if err != nil || len(got) != 2 || got[0] != "abcdef" || got[1] != "y" {
		t.Fatalf("second run: %q, %v; want [abcdef y]", got, err)
	}
}

// A panic in next after Until's stop is done still fails the run: only an
// error next returns then ends the stream quietly.
func TestPanicInNextAfterADrainFails(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	first := true
	src := source.Func(func(context.Context) (int, error) {
		if first {
			first = false
			return 1, nil
		}
		drain() // stop is done: then next panics
		panic("boom")
	})
	got, err := sink.Slice(context.Background(), stage.Until(src, stop))
	var se *stage.SourceError
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("run: %v, %v; want a *stage.SourceError wrapping the panic", got, err)
	}
}

// An error next returns once Until's stop is done ends the stream quietly,
// although the source's context may not have ended yet.
func TestErrorInNextAfterADrainIsQuiet(t *testing.T) {
	for range 50 {
		stop, drain := context.WithCancel(context.Background())
		first := true
		src := source.Func(func(context.Context) (int, error) {
			if first {
				first = false
				return 1, nil
			}
			drain()
			return 0, errors.New("closed by the shutdown")
		})
		got, err := sink.Slice(context.Background(), stage.Until(src, stop))
		drain()
		if err != nil || len(got) != 1 {
			t.Fatalf("run: %v, %v; want [1], nil", got, err)
		}
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute): // a hang bound
		t.Fatal("hang")
	}
}

func waitErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(time.Minute): // a hang bound
		t.Fatal("hang")
		return nil
	}
}

// secondRead is r that closes entered as its second Read begins.
type secondRead struct {
	r       io.Reader
	reads   int
	entered chan struct{}
}

func (s *secondRead) Read(p []byte) (int, error) {
	if s.reads++; s.reads == 2 {
		close(s.entered)
	}
	return s.r.Read(p)
}

// eofOnce gives data, then io.EOF, and counts the Reads after that.
type eofOnce struct {
	data     string
	afterEOF int
	said     bool
}

func (e *eofOnce) Read(p []byte) (int, error) {
	if e.said {
		e.afterEOF++
		return 0, io.EOF
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	if len(e.data) == 0 {
		e.said = true
		return n, io.EOF
	}
	return n, nil
}

// Lines does not read r again in a run once r said io.EOF (a terminal
// would wait for more), whether the last line has a newline or not.
func TestLinesReadsNothingAfterEOF(t *testing.T) {
	for _, data := range []string{"a\nb", "a\nb\n", "", "a"} {
		r := &eofOnce{data: data}
		if _, err := sink.Slice(context.Background(), source.Lines(r)); err != nil {
			t.Fatal(err)
		}
		if r.afterEOF != 0 {
			t.Errorf("%q: %d Reads after io.EOF", data, r.afterEOF)
		}
	}
}

// drainingReader gives "x\n", then, in its second Read, calls drain and
// gives a line longer than the maximum (no newline yet), then io.EOF.
type drainingReader struct {
	reads int
	drain func()
}

func (d *drainingReader) Read(p []byte) (int, error) {
	d.reads++
	switch d.reads {
	case 1:
		return copy(p, "x\n"), nil
	case 2:
		d.drain()
		for i := range p {
			p[i] = 'a'
		}
		return len(p), nil
	}
	return 0, io.EOF
}

// A line too long found once Until's stop is done ends the stream quietly,
// as any error of Lines then does.
func TestLinesTooLongAfterADrainIsQuiet(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	r := &drainingReader{drain: drain}
	got, err := sink.Slice(context.Background(), stage.Until(source.Lines(r, source.MaxLineLength(10)), stop))
	if err != nil || len(got) != 1 || got[0] != "x" {
		t.Fatalf("got %q, %v; want [x], nil", got, err)
	}
}
