package source_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
)

// r33Input makes lines whose lengths sit around the buffer size, with
// '\r' at and around its boundary ("\r\n", "\r\r\n", a lone '\r').
func r33Input(rng *rand.Rand, size, lines int) string {
	var b strings.Builder
	for range lines {
		var n int
		switch rng.IntN(4) {
		case 0:
			n = rng.IntN(8)
		case 1:
			n = size - 3 + rng.IntN(3) // up to size-1: never longer than the buffer
		default:
			n = rng.IntN(size - 1)
		}
		l := []byte(strings.Repeat("c", n))
		if n > 2 && rng.IntN(3) == 0 {
			l[rng.IntN(n)] = '\r'
		}
		switch rng.IntN(4) {
		case 0:
			b.Write(l)
			b.WriteString("\r\n")
		case 1:
			if n > 0 { // the line's last byte is a '\r' too
				l[n-1] = '\r'
				b.Write(l)
				b.WriteString("\r\n")
				break
			}
			fallthrough
		default:
			b.Write(l)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestReview33LinesBufioFirstRunAfterRun: Lines over a *bufio.Reader of 4
// KiB or more, read by one sink.First after another until the end, gives
// the lines of r as bufio.ScanLines splits them:
//
//	"(A *bufio.Reader of 4 KiB or more is the buffer itself: a second run
//	reads on from the line after the first run's last, ...)"
//	"split as bufio.ScanLines splits them"
//
// The last line may lack a newline and end in '\r'. Lines are shorter than the buffer (with their '\r'), some within one or
// two bytes of it; the underlying reader gives all it can, half, or a byte
// at a time.
func TestReview33LinesBufioFirstRunAfterRun(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 1))
	for _, size := range []int{4096, 4097, 8192} {
		for _, rd := range []string{"full", "half", "byte"} {
			for i := range 4 {
				// and a last line without a newline: none, short, or one
				// whose '\r' ends the buffer as r ends
				in := r33Input(rng, size, 12) + []string{"", "x", strings.Repeat("t", size-1) + "\r", "\r"}[i]
				var want []string
				sc := bufio.NewScanner(strings.NewReader(in))
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					want = append(want, sc.Text())
				}
				var under = strings.NewReader(in)
				var u interface{ Read([]byte) (int, error) } = under
				switch rd {
				case "half":
					u = iotest.HalfReader(under)
				case "byte":
					u = iotest.OneByteReader(under)
				}
				br := bufio.NewReaderSize(u, size)
				var got []string
				for range len(want) + 2 {
					l, ok, err := sink.First(context.Background(), source.Lines(br))
					if err != nil {
						t.Fatalf("%d/%s/%d: First: %v", size, rd, i, err)
					}
					if !ok {
						break
					}
					got = append(got, l)
				}
				if !slices.Equal(got, want) {
					t.Errorf("%d/%s/%d: run after run gave %d lines, ScanLines %d; first difference at %s", size, rd, i, len(got), len(want), r33FirstDiff(got, want))
				}
			}
		}
	}
}

func r33FirstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%d (%d vs %d bytes)", i, len(a[i]), len(b[i]))
		}
	}
	return fmt.Sprint(min(len(a), len(b)))
}
