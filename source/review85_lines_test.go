package source_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR85Boom = errors.New("review85: boom")

// r85Chunk is one Read of an r85Reader: data (split if Read gives less
// room) and the error returned with its last byte.
type r85Chunk struct {
	data []byte
	err  error
}

// r85Reader is a scripted reader of its own type (a waiting source for
// Lines). After its script it returns io.EOF. It records Reads made after it
// said io.EOF and how many bytes it gave.
type r85Reader struct {
	mu       sync.Mutex
	chunks   []r85Chunk
	eof      bool
	afterEOF int
	total    int
	reads    int
}

func (r *r85Reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	if r.eof {
		r.afterEOF++
		return 0, io.EOF
	}
	if len(r.chunks) == 0 {
		r.eof = true
		return 0, io.EOF
	}
	c := &r.chunks[0]
	if len(c.data) > len(p) {
		n := copy(p, c.data)
		c.data = c.data[n:]
		r.total += n
		return n, nil
	}
	n := copy(p, c.data)
	err := c.err
	r.chunks = r.chunks[1:]
	r.total += n
	if err == io.EOF {
		r.eof = true
	}
	return n, err
}

// r85Model computes what Lines promises for data: the lines of data[:end]
// split as bufio.ScanLines does; when errAt >= 0 the input ends there with a
// read error and the partial line before it is dropped. A line longer than
// max (without its ending, and without a final '\r' at the end of r) ends
// the run at that line (1-based), returned as tooLong.
func r85Model(data []byte, errAt, max int) (lines []string, tooLong int, startOfTooLong int) {
	end := len(data)
	if errAt >= 0 {
		end = errAt
	}
	d := data[:end]
	off := 0
	n := 0
	for off < len(d) {
		i := bytes.IndexByte(d[off:], '\n')
		var line []byte
		next := 0
		if i < 0 {
			if errAt >= 0 {
				break // partial line before the error: dropped
			}
			line = d[off:]
			next = len(d)
		} else {
			line = d[off : off+i]
			next = off + i + 1
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		n++
		if len(line) > max {
			return lines, n, off
		}
		lines = append(lines, string(line))
		off = next
	}
	return lines, 0, -1
}

// r85ScanLines is bufio.Scanner's answer, to check the model.
func r85ScanLines(data []byte) []string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64), len(data)+10)
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func r85Equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Lines: "split as bufio.ScanLines splits them: the line ending ("\n" or
// "\r\n") is dropped, and a last line without a newline is delivered. A read
// error ends the run with a *stage.SourceError after the complete lines
// before it went through (a partial line before the error is dropped)";
// "once r said io.EOF, a run does not read it again"; "a line longer than the
// maximum (... without its ending, and without a '\r' that ends r ...) ends
// the run with a *stage.SourceError wrapping a *LineTooLongError that names
// the line; at most the maximum plus one buffer (4 KiB ...) is read into
// memory for it".
//
// A random differential test: random input over {a, b, \r, \n}, random Read
// sizes with runs of empty Reads (fewer than 100), data returned with io.EOF or
// with a read error, random maxima; read bare, through a *bufio.Reader of
// random size, and through stages.
func TestReview85LinesRandomAgainstTheModel(t *testing.T) {
	rng := rand.New(rand.NewSource(85))
	const rounds = 600
	for round := 0; round < rounds; round++ {
		n := rng.Intn(200)
		data := make([]byte, n)
		for i := range data {
			switch x := rng.Intn(20); {
			case x < 11:
				data[i] = 'a'
			case x < 13:
				data[i] = 'b'
			case x < 16:
				data[i] = '\n'
			default:
				data[i] = '\r'
			}
		}
		max := 1 + rng.Intn(12)
		if rng.Intn(5) == 0 {
			max = source.DefaultMaxLineLength
		}
		errAt := -1
		if rng.Intn(4) == 0 {
			c := rng.Intn(n + 1)
			last := bytes.LastIndexByte(data[:c], '\n')
			if c-(last+1) <= max { // the partial line cannot be too long already
				errAt = c
			}
		}
		if errAt < 0 && max == source.DefaultMaxLineLength {
			if got, want := r85ScanLines(data), func() []string { l, _, _ := r85Model(data, -1, max); return l }(); !r85Equal(got, want) {
				t.Fatalf("model disagrees with bufio.Scanner on %q: %q vs %q", data, want, got)
			}
		}
		want, tooLong, _ := r85Model(data, errAt, max)

		// The script.
		var chunks []r85Chunk
		end := len(data)
		if errAt >= 0 {
			end = errAt
		}
		for off := 0; off < end; {
			for k := rng.Intn(3) * rng.Intn(40); k > 0; k-- {
				chunks = append(chunks, r85Chunk{data: nil})
			}
			sz := 1 + rng.Intn(30)
			if off+sz > end {
				sz = end - off
			}
			chunks = append(chunks, r85Chunk{data: append([]byte(nil), data[off:off+sz]...)})
			off += sz
		}
		final := io.EOF
		if errAt >= 0 {
			final = errR85Boom
		}
		if len(chunks) > 0 && rng.Intn(2) == 0 {
			chunks[len(chunks)-1].err = final // data and the error together
		} else {
			chunks = append(chunks, r85Chunk{err: final})
		}
		r := &r85Reader{chunks: chunks}
		var in io.Reader = r
		bufSize := 0
		if rng.Intn(3) == 0 {
			bufSize = []int{16, 64, 4096, 8192}[rng.Intn(4)]
			in = bufio.NewReaderSize(r, bufSize)
		}
		var s stage.Stream[string]
		lines := source.Lines(in, source.MaxLineLength(max))
		shape := rng.Intn(3)
		switch shape {
		case 0:
			s = lines
		case 1:
			s = stage.Map(lines, func(_ context.Context, v string) (string, error) { return v, nil }, stage.Workers(3), stage.Ordered())
		default:
			s = stage.Map(lines, func(_ context.Context, v string) (string, error) { return v, nil }, stage.Workers(1))
		}
		var got []string
		var err error
		runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
		label := fmt.Sprintf("round %d: data %q errAt %d max %d bufio %d shape %d", round, data, errAt, max, bufSize, shape)
		if !r85Equal(got, want) {
			t.Fatalf("%s: lines %q, want %q (err %v)", label, got, want, err)
		}
		var se *stage.SourceError
		switch {
		case tooLong > 0:
			var tl *source.LineTooLongError
			if !errors.As(err, &se) || !errors.As(err, &tl) || tl.Line != tooLong || tl.Max != max {
				t.Fatalf("%s: err %v, want a *SourceError wrapping LineTooLongError{Line: %d, Max: %d}", label, err, tooLong, max)
			}
		case errAt >= 0:
			if !errors.As(err, &se) || !errors.Is(err, errR85Boom) {
				t.Fatalf("%s: err %v, want a *SourceError wrapping the read error", label, err)
			}
		default:
			if err != nil {
				t.Fatalf("%s: err %v, want nil", label, err)
			}
		}
		r.mu.Lock()
		after := r.afterEOF
		r.mu.Unlock()
		if after != 0 {
			t.Fatalf("%s: %d Reads after r said io.EOF", label, after)
		}
	}
}

// Lines: "at most the maximum plus one buffer (4 KiB ...) is read into
// memory for it", for a hostile line after some short ones, whatever the
// Read sizes (a reader of its own type: Lines makes its own 4 KiB buffer).
// One byte more is allowed for a '\r' that could end r (not counted in the
// line, so Lines must look past it).
func TestReview85LinesTooLongReadIsBounded(t *testing.T) {
	rng := rand.New(rand.NewSource(8585))
	for round := 0; round < 60; round++ {
		max := 1 + rng.Intn(9000)
		prefix := strings.Repeat("ok\n", rng.Intn(3000))
		long := strings.Repeat("x", max+1+rng.Intn(20000))
		data := []byte(prefix + long + "\n")
		var chunks []r85Chunk
		for off := 0; off < len(data); {
			sz := 1 + rng.Intn(12000)
			if off+sz > len(data) {
				sz = len(data) - off
			}
			chunks = append(chunks, r85Chunk{data: data[off : off+sz]})
			off += sz
		}
		r := &r85Reader{chunks: chunks}
		var got []string
		var err error
		runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), source.Lines(r, source.MaxLineLength(max))) })
		var tl *source.LineTooLongError
		if !errors.As(err, &tl) || tl.Line != len(prefix)/3+1 || len(got) != len(prefix)/3 {
			t.Fatalf("round %d: %d lines, err %v", round, len(got), err)
		}
		r.mu.Lock()
		read := r.total - len(prefix)
		r.mu.Unlock()
		if read > max+4096+1 {
			t.Fatalf("round %d: read %d bytes of a line too long for max %d: more than max + 4 KiB (+1)", round, read, max)
		}
	}
}

// Lines: "A reader that returns no bytes and no error 100 times in a row is a
// read error too, io.ErrNoProgress (as bufio's)". 99 in a row are not.
func TestReview85LinesNoProgressBoundary(t *testing.T) {
	empties := func(k int) []r85Chunk { return make([]r85Chunk, k) }
	cases := []struct {
		name   string
		chunks []r85Chunk
		want   []string
		noProg bool
	}{
		{"99 then a line", append(empties(99), r85Chunk{data: []byte("x\n")}), []string{"x"}, false},
		{"100", empties(100), nil, true},
		{"a line then 100", append([]r85Chunk{{data: []byte("a\nb")}}, empties(100)...), []string{"a"}, true},
		{"99, a byte, 99, a line", append(append(append(empties(99), r85Chunk{data: []byte("q")}), empties(99)...), r85Chunk{data: []byte("r\n")}), []string{"qr"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, buffered := range []bool{false, true} {
				r := &r85Reader{chunks: append([]r85Chunk(nil), c.chunks...)}
				var in io.Reader = r
				if buffered {
					in = bufio.NewReaderSize(r, 4096)
				}
				var got []string
				var err error
				runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), source.Lines(in)) })
				var se *stage.SourceError
				if !r85Equal(got, c.want) {
					t.Errorf("bufio %v: lines %q, want %q", buffered, got, c.want)
				}
				if c.noProg != (errors.As(err, &se) && errors.Is(err, io.ErrNoProgress)) || (!c.noProg && err != nil) {
					t.Errorf("bufio %v: err %v, want ErrNoProgress: %v", buffered, err, c.noProg)
				}
			}
		})
	}
}

// The same differential over the readers Lines treats as never waiting
// (*strings.Reader, *bytes.Reader, *bytes.Buffer, a regular file), bare and
// under cheap stages that may run in their consumer's goroutines: the lines
// and the errors must be those of the model, whatever path reads them.
func TestReview85LinesInMemoryAgainstTheModel(t *testing.T) {
	rng := rand.New(rand.NewSource(858))
	dir := t.TempDir()
	for round := 0; round < 400; round++ {
		n := rng.Intn(300)
		if rng.Intn(10) == 0 {
			n = 4090 + rng.Intn(20) // around the buffer's size
		}
		data := make([]byte, n)
		for i := range data {
			switch x := rng.Intn(20); {
			case x < 12:
				data[i] = 'a'
			case x < 15:
				data[i] = '\n'
			case x < 17 || n > 1000:
				data[i] = '\r'
			default:
				data[i] = 'b'
			}
		}
		if n > 1000 && rng.Intn(2) == 0 {
			for i := range data {
				if data[i] == '\n' && rng.Intn(4) != 0 {
					data[i] = 'a' // long lines
				}
			}
		}
		max := 1 + rng.Intn(12)
		switch rng.Intn(4) {
		case 0:
			max = source.DefaultMaxLineLength
		case 1:
			max = 1 + rng.Intn(5000)
		}
		want, tooLong, _ := r85Model(data, -1, max)
		kind := rng.Intn(4)
		var in io.Reader
		var f *os.File
		switch kind {
		case 0:
			in = strings.NewReader(string(data))
		case 1:
			in = bytes.NewReader(data)
		case 2:
			in = bytes.NewBuffer(append([]byte(nil), data...))
		default:
			name := filepath.Join(dir, fmt.Sprintf("f%d", round))
			if err := os.WriteFile(name, data, 0o600); err != nil {
				t.Fatal(err)
			}
			var err error
			f, err = os.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			in = f
		}
		lines := source.Lines(in, source.MaxLineLength(max))
		shape := rng.Intn(4)
		var s stage.Stream[string]
		id := func(_ context.Context, v string) (string, error) { return v, nil }
		switch shape {
		case 0:
			s = lines
		case 1:
			s = stage.Map(lines, id, stage.Workers(1))
		case 2:
			s = stage.Map(lines, id, stage.Workers(4), stage.Ordered())
		default:
			s = stage.Filter(stage.Map(lines, id, stage.Workers(4)), func(context.Context, string) (bool, error) { return true, nil }, stage.Workers(2))
		}
		var got []string
		var err error
		runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
		if f != nil {
			f.Close()
		}
		label := fmt.Sprintf("round %d: %d bytes, max %d, reader %d, shape %d", round, n, max, kind, shape)
		if shape == 3 {
			sort.Strings(got)
			want = append([]string(nil), want...)
			sort.Strings(want)
		}
		if !r85Equal(got, want) {
			t.Fatalf("%s: %d lines, want %d (err %v)\n got %q\nwant %q", label, len(got), len(want), err, got, want)
		}
		var tl *source.LineTooLongError
		if tooLong > 0 {
			if !errors.As(err, &tl) || tl.Line != tooLong || tl.Max != max {
				t.Fatalf("%s: err %v, want LineTooLongError{Line: %d, Max: %d}", label, err, tooLong, max)
			}
		} else if err != nil {
			t.Fatalf("%s: err %v", label, err)
		}
	}
}

// Lines: "at most the maximum plus one buffer (4 KiB, or the size of a
// *bufio.Reader given as r, which is then the buffer) is read into memory for
// it"; "A *bufio.Reader of 4 KiB or more is the buffer itself". A *bufio.Reader
// smaller than 4 KiB is not the buffer (the 4 KiB one is): the bound is the
// maximum plus the larger of the two (plus one byte for a '\r' that may end r).
func TestReview85LinesTooLongThroughABufioReaderOfAnySize(t *testing.T) {
	for _, size := range []int{16, 100, 4095, 4096, 5000, 10000} {
		for _, max := range []int{1, 100, 3000, 20000} {
			data := []byte(strings.Repeat("x", 50000) + "\n")
			r := &r85Reader{chunks: []r85Chunk{{data: data}}}
			br := bufio.NewReaderSize(r, size)
			var err error
			runcheck.Run(t, "slice", func() { _, err = sink.Slice(context.Background(), source.Lines(br, source.MaxLineLength(max))) })
			var tl *source.LineTooLongError
			if !errors.As(err, &tl) || tl.Line != 1 || tl.Max != max {
				t.Fatalf("bufio %d, max %d: err %v", size, max, err)
			}
			buf := br.Size()
			if buf < 4096 {
				buf = 4096
			}
			r.mu.Lock()
			read := r.total
			r.mu.Unlock()
			if read > max+buf+1 {
				t.Errorf("bufio %d, max %d: read %d bytes, more than %d", br.Size(), max, read, max+buf+1)
			}
		}
	}
}
