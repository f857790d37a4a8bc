//go:build linux

package source_test

// Review of b0b0953: source.Lines is a never-waiting source over in-memory
// readers and regular files, a waiting one over anything else. These tests
// try the classification on readers where it could go wrong: typed nil
// readers, closed files, named pipes, sockets, terminals, stdin redirected
// from a file or a pipe, and a regular file that grows while it is read.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const rlWatchdog = 20 * time.Second // hang watchdog only

func rlParse(_ context.Context, line string) (int, error) { return strconv.Atoi(line) }

// TestReviewLinesTypedNilReaders: a typed nil reader is not a nil r (the
// interface is not nil), so Lines does not panic; a run over it must end
// with a *stage.SourceError, not hang, whether it is classified as waiting
// (*os.File: Stat fails) or never-waiting (the in-memory readers, whose Read
// panics on nil).
func TestReviewLinesTypedNilReaders(t *testing.T) {
	for _, r := range []io.Reader{(*os.File)(nil), (*bytes.Buffer)(nil), (*bytes.Reader)(nil), (*strings.Reader)(nil)} {
		t.Run(fmt.Sprintf("%T", r), func(t *testing.T) {
			var s stage.Stream[string]
			panicked := func() (p any) {
				defer func() { p = recover() }()
				s = source.Lines(r)
				return nil
			}()
			if panicked != nil {
				t.Logf("Lines panics: %v", panicked)
				return
			}
			done := make(chan error, 1)
			go func() {
				_, err := sink.Slice(context.Background(), stage.Map(s, rlParse, stage.Workers(4)))
				done <- err
			}()
			select {
			case err := <-done:
				var se *stage.SourceError
				if !errors.As(err, &se) {
					t.Fatalf("Run = %v, want a *stage.SourceError", err)
				}
				t.Logf("Run = %v", err)
			case <-time.After(rlWatchdog):
				t.Fatal("the run hung")
			}
		})
	}
}

func rlFile(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lines.txt")
	var b strings.Builder
	for i := range n {
		fmt.Fprintln(&b, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReviewLinesClosedFile: a file closed before Lines (Stat fails: a
// waiting source) and one closed after Lines but before the run (a regular
// file: never-waiting) both end the run with a *stage.SourceError that
// wraps os.ErrClosed.
func TestReviewLinesClosedFile(t *testing.T) {
	for _, before := range []bool{true, false} {
		f, err := os.Open(rlFile(t, 100))
		if err != nil {
			t.Fatal(err)
		}
		var s stage.Stream[string]
		if before {
			f.Close()
			s = source.Lines(f)
		} else {
			s = source.Lines(f)
			f.Close()
		}
		done := make(chan error, 1)
		go func() {
			_, err := sink.Slice(context.Background(), stage.Map(s, rlParse, stage.Workers(4)))
			done <- err
		}()
		select {
		case err := <-done:
			var se *stage.SourceError
			if !errors.As(err, &se) || !errors.Is(err, os.ErrClosed) {
				t.Fatalf("closed before Lines=%v: Run = %v, want a *stage.SourceError wrapping os.ErrClosed", before, err)
			}
		case <-time.After(rlWatchdog):
			t.Fatal("the run hung")
		}
	}
}

// TestReviewLinesFIFOFeedback: a named pipe (a *os.File whose Stat says
// ModeNamedPipe) is a waiting source: the feedback loop completes.
func TestReviewLinesFIFOFeedback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// Opening either end of a FIFO waits for the other: open both at once.
	wc := make(chan *os.File, 1)
	go func() {
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
		}
		wc <- w
	}()
	r, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w := <-wc
	if w == nil {
		t.FailNow()
	}
	feedAll(t, "FIFO", r, w)
}

// TestReviewLinesSocketFeedback: one end of a Unix socket pair, as a
// *os.File (ModeSocket), is a waiting source.
func TestReviewLinesSocketFeedback(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skipf("socketpair: %v", err)
	}
	r := os.NewFile(uintptr(fds[0]), "sock-r")
	w := os.NewFile(uintptr(fds[1]), "sock-w")
	defer r.Close()
	feedAll(t, "socket", r, w)
}

// TestReviewLinesTerminalFeedback: the terminal side of a pseudo-terminal
// (ModeDevice|ModeCharDevice) is a waiting source. Echo is turned off so
// that the master's buffer does not fill up; closing the master ends the
// terminal's input.
func TestReviewLinesTerminalFeedback(t *testing.T) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	var once sync.Once
	closeMaster := func() { once.Do(func() { master.Close() }) }
	defer closeMaster()
	var unlock int32
	var ptn uint32
	if err := rlIoctl(master, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	if err := rlIoctl(master, syscall.TIOCGPTN, unsafe.Pointer(&ptn)); err != nil {
		t.Skipf("ptsname: %v", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", ptn), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open the terminal: %v", err)
	}
	defer slave.Close()
	var tio syscall.Termios
	if err := rlIoctl(slave, syscall.TCGETS, unsafe.Pointer(&tio)); err != nil {
		t.Skipf("tcgets: %v", err)
	}
	tio.Lflag &^= syscall.ECHO | syscall.ECHONL
	if err := rlIoctl(slave, syscall.TCSETS, unsafe.Pointer(&tio)); err != nil {
		t.Skipf("tcsets: %v", err)
	}
	if fi, err := slave.Stat(); err != nil || fi.Mode().IsRegular() {
		t.Fatalf("the terminal's Stat: %v, %v", fi, err)
	}
	const n = 200
	got, err, hung := feedback(t, slave, master, closeMaster, n)
	if hung {
		t.Fatalf("the run hung after %d of %d lines: a consumer goroutine waited in the terminal's Read", got, n)
	}
	// Closing the master makes the terminal's Read fail (EIO) instead of
	// returning io.EOF: a source error after the n lines is fine.
	var se *stage.SourceError
	if got != n || (err != nil && !errors.As(err, &se)) {
		t.Fatalf("%d of %d lines, err %v", got, n, err)
	}
}

func rlIoctl(f *os.File, req uint, arg unsafe.Pointer) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := sc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// TestReviewLinesGrowingRegularFile: a regular file that the sink appends
// to after each output (another party writing while the run reads). A
// regular file's Read never waits: at its current end it returns io.EOF, so
// the run ends, after a prefix of the lines (at least the first), each
// complete, and never hangs. (This is what Lines did before it was marked
// never-waiting too: it is not a tail -f.)
func TestReviewLinesGrowingRegularFile(t *testing.T) {
	for _, workers := range []int{1, 2, 4} {
		path := filepath.Join(t.TempDir(), "grow.txt")
		if err := os.WriteFile(path, []byte("0\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		done := make(chan struct{})
		go func() {
			defer close(done)
			err = stage.Run(context.Background(), stage.Map(source.Lines(r), rlParse, stage.Workers(workers)), func(_ context.Context, v int, err error) error {
				if err != nil {
					return err
				}
				got = append(got, v)
				if len(got) == 1000 {
					return stage.ErrStop
				}
				_, err = w.WriteString(strconv.Itoa(len(got)) + "\n") // one write per line
				return err
			})
		}()
		select {
		case <-done:
		case <-time.After(rlWatchdog):
			t.Fatalf("workers %d: the run hung", workers)
		}
		r.Close()
		w.Close()
		if err != nil {
			t.Fatalf("workers %d: %v", workers, err)
		}
		slices.Sort(got)
		for i, v := range got {
			if v != i {
				t.Fatalf("workers %d: lines %v are not a prefix", workers, got)
			}
		}
		if len(got) == 0 {
			t.Fatalf("workers %d: no line", workers)
		}
		t.Logf("workers %d: %d lines before the reader met the end", workers, len(got))
	}
}

// Stdin: the test binary runs itself with its stdin redirected from a file
// or a pipe, and reads it with Lines(os.Stdin), printing each value.
const rlChildEnv = "SLUICE_REVIEW_LINES_STDIN_CHILD"

// TestReviewLinesStdinChild is the child's side; it does nothing unless run
// by TestReviewLinesStdin.
func TestReviewLinesStdinChild(t *testing.T) {
	if os.Getenv(rlChildEnv) == "" {
		t.Skip("run by TestReviewLinesStdin")
	}
	out := bufio.NewWriter(os.Stdout)
	err := stage.Run(context.Background(), stage.Map(source.Lines(os.Stdin), rlParse, stage.Workers(4)), func(_ context.Context, v int, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "v", v)
		return out.Flush()
	})
	fmt.Fprintln(out, "end", err)
	out.Flush()
}

// TestReviewLinesStdin: stdin redirected from a regular file is read to its
// end; stdin from a pipe, written line by line as the child's outputs come
// back (a feedback loop), is a waiting source and completes.
func TestReviewLinesStdin(t *testing.T) {
	if os.Getenv(rlChildEnv) != "" {
		t.Skip("in the child")
	}
	child := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReviewLinesStdinChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), rlChildEnv+"=1")
		cmd.Stderr = os.Stderr
		return cmd
	}
	t.Run("file", func(t *testing.T) {
		const n = 3000
		f, err := os.Open(rlFile(t, n))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := child()
		cmd.Stdin = f
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(rlWatchdog, func() { cmd.Process.Kill() })
		defer timer.Stop()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v\n%s", err, out.String())
		}
		var vs []int
		for _, l := range strings.Split(out.String(), "\n") {
			if v, ok := strings.CutPrefix(l, "v "); ok {
				x, _ := strconv.Atoi(v)
				vs = append(vs, x)
			}
		}
		slices.Sort(vs)
		if len(vs) != n || !strings.Contains(out.String(), "end <nil>") {
			t.Fatalf("%d of %d values; output ends %q", len(vs), n, out.String()[max(0, out.Len()-200):])
		}
	})
	t.Run("pipe-feedback", func(t *testing.T) {
		const n = 300
		cmd := child()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		hung := make(chan struct{})
		timer := time.AfterFunc(rlWatchdog, func() { close(hung); cmd.Process.Kill() })
		defer timer.Stop()
		fmt.Fprintln(stdin, 0)
		sc := bufio.NewScanner(stdout)
		got := 0
		var last string
		for sc.Scan() {
			last = sc.Text()
			v, ok := strings.CutPrefix(last, "v ")
			if !ok {
				break
			}
			if v != strconv.Itoa(got) {
				t.Errorf("got %s, want %d", v, got)
			}
			if got++; got == n {
				stdin.Close()
				continue
			}
			fmt.Fprintln(stdin, got)
		}
		cmd.Wait()
		select {
		case <-hung:
			t.Fatalf("the child hung after %d of %d lines", got, n)
		default:
		}
		if got != n || last != "end <nil>" {
			t.Fatalf("%d of %d lines, last %q", got, n, last)
		}
	})
}
