package source_test

import (
	"bufio"
	"io"
	"os"
	"testing"
)

// TestReview30LinesWrappersArePipesToo attacks Lines' "Over anything else (a
// pipe, a socket, a terminal, a wrapper such as a gzip reader) it is a
// waiting source", with the wrappers a caller reaches for over a pipe: a
// *bufio.Reader (of 4 KiB or more, "the buffer itself", and smaller), an
// io.LimitReader, an io.MultiReader. A feedback loop (the sink writes line
// k+1 only once it has line k) completes over a waiting source and hangs if
// a consumer goroutine waits in the Read (see feedback in lines_test.go).
func TestReview30LinesWrappersArePipesToo(t *testing.T) {
	wraps := map[string]func(r io.Reader) io.Reader{
		"bufio4k":  func(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 4096) },
		"bufio64k": func(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 64<<10) },
		"bufio16":  func(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 16) },
		"limit":    func(r io.Reader) io.Reader { return io.LimitReader(r, 1<<40) },
		"multi":    func(r io.Reader) io.Reader { return io.MultiReader(r) },
	}
	for name, wrap := range wraps {
		t.Run(name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			feedAll(t, name+" over a pipe", wrap(r), w)
		})
	}
}
