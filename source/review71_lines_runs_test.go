package source_test

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
)

// "(A *bufio.Reader of 4 KiB or more is the buffer itself: a second run reads
// on from the line after the first run's last, unless the first stopped
// within a line that filled the buffer ...)" with sink.First's "over a bare
// source, exactly one item is taken".
//
// Runs of First over one Lines stream of a *bufio.Reader get the lines one
// after the other, "\r\n" endings and a last line without a newline
// included; then the stream is empty.
func TestReview71LinesBufioRunsReadOn(t *testing.T) {
	for _, size := range []int{4096, 1 << 16} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			const n = 300
			var b strings.Builder
			for i := range n {
				fmt.Fprintf(&b, "line %d %s", i, strings.Repeat("x", i%50))
				if i < n-1 {
					if i%3 == 0 {
						b.WriteString("\r\n")
					} else {
						b.WriteString("\n")
					}
				}
			}
			s := source.Lines(bufio.NewReaderSize(struct{ *strings.Reader }{strings.NewReader(b.String())}, size))
			for i := range n {
				var v string
				var ok bool
				var err error
				runcheck.Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
				want := fmt.Sprintf("line %d %s", i, strings.Repeat("x", i%50))
				if v != want || !ok || err != nil {
					t.Fatalf("run %d: First = (%q, %v, %v), want %q", i, v, ok, err, want)
				}
			}
			var v string
			var ok bool
			var err error
			runcheck.Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
			if v != "" || ok || err != nil {
				t.Fatalf("after the last line: First = (%q, %v, %v), want an empty stream", v, ok, err)
			}
		})
	}
}
