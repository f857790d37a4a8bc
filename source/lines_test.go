package source_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

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

func TestLinesLongerThanTheBufferUpToTheMaximum(t *testing.T) {
	long := strings.Repeat("x", 5<<20) // 5 MiB, past bufio.Scanner's default limit
	in := "short\n" + long + "\nend"
	// One byte at a time at first would be slow; a half reader splits reads.
	got, err := sink.Slice(context.Background(), source.Lines(iotest.HalfReader(strings.NewReader(in)), source.MaxLineLength(8<<20)))
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

func TestLineTooLongIsASourceError(t *testing.T) {
	for _, tc := range []struct {
		in      string
		max     int
		want    []string // lines delivered before the error
		badLine int      // 0: no error
	}{
		{"abc\nabcd\nab\n", 3, []string{"abc"}, 2},
		{"abc\r\nab", 3, []string{"abc", "ab"}, 0},
		{"ab\nabcd", 3, []string{"ab"}, 2},
		{strings.Repeat("x", 10000) + "\n", 9999, nil, 1},
		{strings.Repeat("x", 10000) + "\r\ny", 10000, []string{strings.Repeat("x", 10000), "y"}, 0},
		{"ok\n" + strings.Repeat("x", 3*DefaultMax), 0, []string{"ok"}, 2},
	} {
		var opts []source.LinesOption
		if tc.max > 0 {
			opts = append(opts, source.MaxLineLength(tc.max))
		}
		got, err := sink.Slice(context.Background(), source.Lines(strings.NewReader(tc.in), opts...))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%.20q max %d: got lines %v, want %v", tc.in, tc.max, lengths(got), lengths(tc.want))
		}
		if tc.badLine == 0 {
			if err != nil {
				t.Errorf("%.20q max %d: err = %v, want nil", tc.in, tc.max, err)
			}
			continue
		}
		var se *stage.SourceError
		var le *source.LineTooLongError
		if !errors.As(err, &se) || !errors.As(err, &le) || le.Line != tc.badLine {
			t.Errorf("%.20q max %d: err = %v, want a *stage.SourceError naming line %d", tc.in, tc.max, err, tc.badLine)
		}
	}
}

const DefaultMax = source.DefaultMaxLineLength

// FuzzLines checks Lines against bufio.ScanLines on any input and maximum:
// the lines up to the first one longer than the maximum, then an error
// naming that line. The seed corpus is in testdata/fuzz/FuzzLines.
func FuzzLines(f *testing.F) {
	f.Add([]byte("a\nbb\r\nccc"), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		maxLen := int(max%64) + 1
		want := scanLines(string(data))
		bad := 0
		for i, l := range want {
			if len(l) > maxLen {
				want, bad = want[:i], i+1
				break
			}
		}
		// A small buffer in front splits reads at odd places.
		r := iotest.OneByteReader(strings.NewReader(string(data)))
		got, err := sink.Slice(context.Background(), source.Lines(r, source.MaxLineLength(maxLen)))
		if !slices.Equal(got, want) {
			t.Fatalf("max %d: got %q, want %q", maxLen, got, want)
		}
		var le *source.LineTooLongError
		switch {
		case bad == 0 && err != nil:
			t.Fatalf("max %d: err = %v, want nil", maxLen, err)
		case bad > 0 && (!errors.As(err, &le) || le.Line != bad):
			t.Fatalf("max %d: err = %v, want line %d too long", maxLen, err, bad)
		}
	})
}

// endless is a reader of one line that never ends; it counts what was read.
type endless struct{ read int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.read += len(p)
	return len(p), nil
}

func TestLineTooLongReadsABoundedAmount(t *testing.T) {
	r := &endless{}
	_, err := sink.Slice(context.Background(), source.Lines(r, source.MaxLineLength(100_000)))
	var le *source.LineTooLongError
	if !errors.As(err, &le) || le.Line != 1 {
		t.Fatalf("err = %v, want line 1 too long", err)
	}
	if r.read > 100_000+8<<10 {
		t.Fatalf("read %d bytes of an endless line, want at most the maximum plus the buffer", r.read)
	}
}

// TestLinesOverAPipeWaits: over a pipe, Lines is a waiting source, so no
// consumer goroutine sits in its Read while outputs wait for it (see
// feedback).
func TestLinesOverAPipeWaits(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	feedAll(t, "pipe", pr, pw)
}

// feedAll runs feedback over 300 lines, writing to w and closing it at
// the end, and fails the test unless every line arrived without a hang.
func feedAll(t *testing.T, what string, r io.Reader, w io.WriteCloser) {
	t.Helper()
	var once sync.Once
	closeW := func() { once.Do(func() { w.Close() }) }
	defer closeW()
	const n = 300
	got, err, hung := feedback(t, r, w, closeW, n)
	if hung {
		t.Fatalf("the run hung after %d of %d lines: a consumer goroutine waited in the %s's Read", got, n, what)
	}
	if err != nil || got != n {
		t.Fatalf("%s: %d of %d lines, err %v", what, got, n, err)
	}
}

// feedback runs Map(Lines(r), parse, Workers(2)) with a sink that writes
// the next line to w only once it has received the previous line's output
// (a feedback loop): over a waiting source this completes; were a consumer
// goroutine to wait in r's Read, it would wait for a line the sink has not
// written yet while the output that makes it write that line waited in the
// stage's queue, and hang. closeW ends the input (and the hang watchdog uses
// it to end a blocked Read). It returns how many lines arrived, the run's
// error, and whether the watchdog fired.
func feedback(t *testing.T, r io.Reader, w io.Writer, closeW func(), n int) (int, error, bool) {
	t.Helper()
	if _, err := fmt.Fprintln(w, 0); err != nil {
		t.Fatal(err)
	}
	hung := make(chan struct{})
	watchdog := time.AfterFunc(20*time.Second, func() { close(hung); closeW() }) // hang watchdog only
	defer watchdog.Stop()
	parse := func(_ context.Context, line string) (int, error) { return strconv.Atoi(line) }
	got := 0
	err := stage.Run(context.Background(), stage.Map(source.Lines(r), parse, stage.Workers(2)), func(_ context.Context, v int, err error) error {
		if err != nil {
			return err
		}
		if v != got {
			return fmt.Errorf("got %d, want %d", v, got)
		}
		if got++; got == n {
			closeW()
			return nil
		}
		_, err = fmt.Fprintln(w, got)
		return err
	})
	select {
	case <-hung:
		return got, err, true
	default:
		return got, err, false
	}
}

// TestLinesOverARegularFile: Lines over a regular file (a source that never
// waits) reads every line, with a stage of several workers over it.
func TestLinesOverARegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lines.txt")
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintln(&b, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parse := func(_ context.Context, line string) (int, error) { return strconv.Atoi(line) }
	got, err := sink.Slice(context.Background(), stage.Map(source.Lines(f), parse, stage.Workers(4)))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	for i, v := range got {
		if v != i {
			t.Fatalf("line %d: got %d", i, v)
		}
	}
	if len(got) != 5000 {
		t.Fatalf("%d lines, want 5000", len(got))
	}
}

// goid is the current goroutine's id, from its stack header.
func goid() string {
	var buf [64]byte
	s := string(buf[:runtime.Stack(buf[:], false)])
	s = strings.TrimPrefix(s, "goroutine ")
	return s[:strings.IndexByte(s, ' ')]
}

// callsInSink runs Map (4 workers, a cheap function) over lines into
// stage.Run and counts the calls made in the sink's own goroutine, among
// one in 64 of them.
func callsInSink(t *testing.T, lines stage.Stream[string]) (inSink, all int) {
	t.Helper()
	var sinkID atomic.Value
	sinkID.Store("")
	var in, n atomic.Int64
	parse := func(_ context.Context, line string) (int, error) {
		// Only one call in 64 looks at its goroutine (runtime.Stack is
		// slow): the others stay cheap, as a stage's calls must be for
		// its consumer to take places.
		if n.Add(1)%64 == 0 && goid() == sinkID.Load().(string) {
			in.Add(1)
		}
		return strconv.Atoi(line)
	}
	err := stage.Run(context.Background(), stage.Map(lines, parse, stage.Workers(4)), func(context.Context, int, error) error {
		sinkID.Store(goid()) // the first output comes from a goroutine of the stage
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return int(in.Load()), int(n.Load())
}

// TestLinesNeverWaitsOverMemoryAndFiles: over an in-memory reader or a
// regular file, Lines never waits, so a cheap stage over it runs calls in
// its consumer's goroutine too; over a pipe, or a file whose type is
// hidden, it waits, so it never does.
func TestLinesNeverWaitsOverMemoryAndFiles(t *testing.T) {
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintln(&b, i)
	}
	text := b.String()
	path := filepath.Join(t.TempDir(), "lines.txt")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	file := func() io.Reader {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	// Whether the consumer takes places depends on calls timing as cheap,
	// which a loaded machine can spoil for a whole run: a reader passes if
	// any of 5 runs shows a call in the sink's goroutine. (Over a waiting
	// reader, below, no run may show one.)
	for name, open := range map[string]func() io.Reader{
		"strings.Reader": func() io.Reader { return strings.NewReader(text) },
		"bytes.Reader":   func() io.Reader { return bytes.NewReader([]byte(text)) },
		"bytes.Buffer":   func() io.Reader { return bytes.NewBufferString(text) },
		"regular file":   file,
	} {
		in, all := 0, 0
		for range 5 {
			if in, all = callsInSink(t, source.Lines(open())); in > 0 || all != 20000 {
				break
			}
		}
		if in == 0 || all != 20000 {
			t.Errorf("%s: %d of %d calls in the sink's goroutine in the last of 5 runs, want some of 20000", name, in, all)
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	go func() {
		defer pw.Close()
		io.WriteString(pw, text)
	}()
	if in, all := callsInSink(t, source.Lines(pr)); in != 0 || all != 20000 {
		t.Errorf("pipe: %d of %d calls in the sink's goroutine, want none of 20000", in, all)
	}
	// A regular file whose type is hidden is read as a waiting source.
	g, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if in, all := callsInSink(t, source.Lines(struct{ io.Reader }{g})); in != 0 || all != 20000 {
		t.Errorf("hidden regular file: %d of %d calls in the sink's goroutine, want none of 20000", in, all)
	}
}
