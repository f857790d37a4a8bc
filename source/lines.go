package source

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sluicedev/sluice/stage"
)

// DefaultMaxLineLength is the longest line [Lines] accepts unless told
// otherwise with [MaxLineLength]: 1 MiB.
const DefaultMaxLineLength = 1 << 20

// LinesOption configures [Lines]; make one with [MaxLineLength]. Options
// are checked when they are made: an invalid one panics there. The zero
// LinesOption is not an option: Lines panics if given one.
type LinesOption struct{ apply func(*linesConfig) }

type linesConfig struct {
	max int
}

// MaxLineLength sets the longest line, in bytes without its line ending,
// that [Lines] accepts. It panics if n < 1.
func MaxLineLength(n int) LinesOption {
	if n < 1 {
		panic(fmt.Sprintf("sluice: source.MaxLineLength: n = %d, want 1 or more", n))
	}
	return LinesOption{func(c *linesConfig) { c.max = n }}
}

// LineTooLongError is the cause of the *stage.SourceError with which
// [Lines] ends a run when a line is longer than its maximum.
type LineTooLongError struct {
	Line int // 1-based number of the line
	Max  int // the maximum length, in bytes
}

func (e *LineTooLongError) Error() string {
	return fmt.Sprintf("source.Lines: line %d is longer than %d bytes", e.Line, e.Max)
}

// Lines returns a stream of the lines of r, split as bufio.ScanLines splits
// them: the line ending ("\n" or "\r\n") is dropped, and a last line without
// a newline is delivered. A read error ends the run with a
// *stage.SourceError after the complete lines before it went through (a
// partial line before the error is dropped). The end of r is io.EOF itself,
// as io.Reader's contract has it: an error that wraps io.EOF is a read
// error, so that a truncated input is never taken for a complete one; once
// r said io.EOF, a run does not read it again (a terminal would wait for
// more). A reader that returns no bytes and no error 100 times in a row is
// a read error too, io.ErrNoProgress (as bufio's). An error of Lines once stage.Until's stop was done (a read error,
// a line too long) ends the stream quietly instead, as any source's error
// then does (see stage.Source).
//
// Hostile input cannot exhaust memory: a line longer than the maximum
// ([DefaultMaxLineLength], or the one set by [MaxLineLength]; the line
// without its ending, and without a '\r' that ends r, which is dropped as
// bufio.ScanLines drops it) ends the run
// with a *stage.SourceError wrapping a *[LineTooLongError] that names the
// line; at most the maximum plus one buffer (4 KiB, or the size of a
// *bufio.Reader of 4 KiB or more given as r, which is then the buffer) is
// read into memory for it. A run holds one line and one read buffer at a time.
//
// r is read through a buffer that each run makes anew, so r is not rewound:
// a second run reads on from where the first run's buffer had read (its first
// line may be the rest of a line), and a run that stops early may have read
// past the last line it delivered. (A *bufio.Reader of 4 KiB or more is the
// buffer itself: a second run reads on from the line after the first run's
// last, unless the first stopped within a line that filled the buffer: as
// long as the buffer or longer, counting a final '\r'.) Two runs must not
// read one r at the same time.
//
// Over an in-memory reader (*bytes.Reader, *strings.Reader, *bytes.Buffer)
// or a regular file, Lines is a source that never waits (see
// [stage.NeverWaits]: a cheap stage over it may run in its consumer's
// goroutines), since a read then completes without waiting for another
// party. (A few regular files can still block a read: FUSE and NFS files,
// /proc and tracefs pipes. To read one as a waiting source, hide its type:
// Lines(struct{ io.Reader }{f}).) Over anything else (a pipe, a socket, a
// terminal, a wrapper such as a gzip reader) it is a waiting source: a Read
// may block. A blocked Read cannot be abandoned: when the run is cancelled,
// the sink waits for it to return, and no Read follows it, even within a
// line (the line in progress is dropped; under stage.Until, no Read follows
// once the source's context has ended, a moment after stop is done; a
// *bufio.Reader given as r still retries a Read that returned nothing, up
// to 100 times, as bufio does). To
// stop a run blocked on a read, close the reader (or set a deadline on
// it). A nil r panics.
func Lines(r io.Reader, opts ...LinesOption) stage.Stream[string] {
	if r == nil {
		panic("sluice: source.Lines: nil reader")
	}
	c := linesConfig{max: DefaultMaxLineLength}
	for _, o := range opts {
		if o.apply == nil {
			panic("sluice: source.Lines: zero LinesOption")
		}
		o.apply(&c)
	}
	maxLen := c.max
	s := stage.Source(func(context.Context) (func(context.Context) (string, error), func()) {
		lr := &linesReader{r: r}
		br, ok := r.(*bufio.Reader)
		if !ok || br.Size() < 4096 {
			br = bufio.NewReaderSize(lr, 4096)
		}
		var buf []byte // the current line, when it spans several buffers
		n := 0         // lines read
		eof := false   // r said io.EOF: not read again (a terminal would wait)
		return func(ctx context.Context) (string, error) {
			lr.ctx = ctx
			buf = buf[:0]
			from := 0 // how much of what is buffered holds no '\n'
			for {
				b, _ := br.Peek(br.Buffered())
				i := bytes.IndexByte(b[from:], '\n')
				if i < 0 && eof && len(b) < br.Size() {
					i = len(b) - from // the last line, without a newline
				}
				if i >= 0 { // a whole line
					if ctx.Err() != nil {
						// The run ended meanwhile (a Read that was blocked
						// completed the line): it is not taken, and stays in
						// a buffer of r's own for the next run.
						return "", context.Cause(ctx)
					}
					i += from
					if i == 0 && len(buf) == 0 && eof {
						return "", io.EOF
					}
					n++
					line := b[:i]
					if len(buf) > 0 {
						buf = append(buf, line...)
						line = buf
					}
					v, err := finish(line, n, maxLen)
					br.Discard(min(i+1, len(b)))
					return v, err
				}
				from = len(b)
				if len(b) == br.Size() { // a full buffer, no line ending: the line goes on
					if ctx.Err() != nil {
						return "", context.Cause(ctx) // the buffer stays whole for the next run
					}
					// A '\r' at its end may begin the line ending: it stays
					// in the buffer, so that the line held never passes the
					// maximum, nor what was read the maximum plus a buffer.
					keep := 0
					if b[len(b)-1] == '\r' {
						keep = 1
					}
					if len(buf)+len(b)-keep > maxLen {
						return "", &LineTooLongError{Line: n + 1, Max: maxLen}
					}
					buf = append(buf, b[:len(b)-keep]...)
					br.Discard(len(b) - keep)
					from = keep
				}
				// One read more (Peek reads once, unless it reads nothing),
				// and none once the run was cancelled or drained: the sink
				// waits for one blocked Read at most. What a line in
				// progress had in a buffer of r's own stays there.
				if ctx.Err() != nil {
					return "", context.Cause(ctx)
				}
				if _, err := br.Peek(from + 1); err != nil {
					if err != io.EOF { // itself: an error that wraps it is a read error
						return "", err
					}
					eof = true // what is buffered is the last line
				}
			}
		}, nil
	})
	if readsWithoutWaiting(r) {
		s = stage.NeverWaits(s)
	}
	return s
}

// linesReader is r as Lines reads it through a buffer of its own: a Read
// once ctx, the context of the next in progress, is done returns its cause
// without reading, so that bufio's retries of a Read that gave nothing
// (up to 100) stop with the run.
type linesReader struct {
	r   io.Reader
	ctx context.Context
}

func (l *linesReader) Read(p []byte) (int, error) {
	if l.ctx != nil && l.ctx.Err() != nil {
		return 0, context.Cause(l.ctx)
	}
	return l.r.Read(p)
}

// readsWithoutWaiting reports whether a Read of r completes without waiting
// for another party: r holds its data in memory, or is a regular file.
func readsWithoutWaiting(r io.Reader) bool {
	switch r := r.(type) {
	case *bytes.Reader, *strings.Reader, *bytes.Buffer:
		return true
	case *os.File:
		fi, err := r.Stat()
		return err == nil && fi.Mode().IsRegular()
	}
	return false
}

// finish drops the line's '\r' and checks its length.
func finish(line []byte, n, maxLen int) (string, error) {
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) > maxLen {
		return "", &LineTooLongError{Line: n, Max: maxLen}
	}
	return string(line), nil
}
