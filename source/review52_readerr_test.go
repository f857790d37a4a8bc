package source_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR52Read = errors.New("r52: read failed")

// r52Chunks gives data in the given chunk sizes, then errR52Read, with the
// last chunk when withLast.
type r52Chunks struct {
	data     string
	sizes    []int
	withLast bool
	failed   int
}

func (r *r52Chunks) Read(p []byte) (int, error) {
	if r.data == "" {
		r.failed++
		return 0, errR52Read
	}
	n := len(r.data)
	if len(r.sizes) > 0 {
		n = min(n, r.sizes[0])
		r.sizes = r.sizes[1:]
	}
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	if r.data == "" && r.withLast {
		r.failed++
		return n, errR52Read
	}
	return n, nil
}

// Doc (Lines): "split as bufio.ScanLines splits them: the line ending ("\n"
// or "\r\n") is dropped"; "A read error ends the run with a
// *stage.SourceError after the complete lines before it went through (a
// partial line before the error is dropped)". The input is cut at a random
// byte (inside a "\r\n" too) and read in random chunks, the error coming
// after the last chunk or with it (io.Reader: "Callers should always
// process the n > 0 bytes returned before considering the error"): the
// lines ended by a '\n' before the cut are delivered, the rest is not.
func TestReview52LinesReadErrorAtRandomCuts(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(52, 52))
		for round := range 3000 {
			var b strings.Builder
			for range rng.IntN(8) {
				b.WriteString(strings.Repeat(string(rune('a'+rng.IntN(3))), rng.IntN(20)))
				if rng.IntN(5) == 0 {
					b.WriteString("\r")
				}
				b.WriteString([]string{"\n", "\r\n", "\r\r\n", "\n\n"}[rng.IntN(4)])
			}
			b.WriteString(strings.Repeat("z", rng.IntN(3)))
			text := b.String()
			cut := rng.IntN(len(text) + 1)
			before := text[:cut]
			var want []string
			if i := strings.LastIndexByte(before, '\n'); i >= 0 {
				for l := range strings.Lines(before[:i+1]) {
					l = strings.TrimSuffix(l, "\n")
					want = append(want, strings.TrimSuffix(l, "\r"))
				}
			}
			var sizes []int
			for range 6 {
				sizes = append(sizes, 1+rng.IntN(9))
			}
			cr := &r52Chunks{data: before, sizes: sizes, withLast: rng.IntN(2) == 0}
			var r io.Reader = cr
			kind := "plain"
			switch rng.IntN(3) {
			case 1:
				r, kind = bufio.NewReaderSize(cr, 16), "bufio16"
			case 2:
				r, kind = bufio.NewReaderSize(cr, 4096), "bufio4096"
			}
			got, err := sink.Slice(context.Background(), source.Lines(r))
			label := fmt.Sprintf("round %d (%s, %q cut at %d, error with last chunk %v)", round, kind, text, cut, cr.withLast)
			var se *stage.SourceError
			if !errors.As(err, &se) || !errors.Is(err, errR52Read) {
				t.Fatalf("%s: err %v, want a *SourceError wrapping the read error", label, err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s: lines %q, want %q", label, got, want)
			}
			if cr.failed != 1 {
				t.Fatalf("%s: the reader was read %d times after its error", label, cr.failed-1)
			}
		}
	})
}
