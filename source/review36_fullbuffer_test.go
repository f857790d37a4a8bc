package source_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r36Chunks gives one chunk per Read; the Read of chunk gateAt signals
// entered and waits for gate before it returns.
type r36Chunks struct {
	chunks  []string
	gateAt  int
	entered chan struct{}
	gate    chan struct{}
	n       int
}

func (r *r36Chunks) Read(p []byte) (int, error) {
	if r.n == len(r.chunks) {
		return 0, io.EOF
	}
	if r.n == r.gateAt {
		close(r.entered)
		<-r.gate
	}
	c := r.chunks[r.n]
	if len(p) < len(c) {
		panic("r36Chunks: short buffer")
	}
	r.n++
	return copy(p, c), nil
}

// Lines over a *bufio.Reader of 4 KiB: "a second run reads on from the line
// after the first run's last". The first run (a Map with a Buffer, so that
// the source reads on while the sink holds an item) is cancelled on its
// first line while the source's next Read is blocked; that Read then brings a line of
// exactly the buffer's size, which fills the buffer: it stays in r's
// bufio.Reader (12f06b8), so the second run reads that line whole (before
// 12f06b8 the full buffer was moved out and dropped with the run).
func TestReview36LinesFullBufferStaysAfterCancel(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		long := strings.Repeat("x", 4096)
		r := &r36Chunks{chunks: []string{"first\n", long, "\nlast\n"}, gateAt: 1, entered: make(chan struct{}), gate: make(chan struct{})}
		br := bufio.NewReaderSize(r, 4096)
		ctx, cancel := context.WithCancel(context.Background())
		var seen []string
		lines := stage.Map(source.Lines(br), func(_ context.Context, v string) (string, error) { return v, nil }, stage.Buffer(2))
		err := sink.ForEach(ctx, lines, func(_ context.Context, v string) error {
			seen = append(seen, v)
			<-r.entered // the source reads on while the sink holds "first"
			cancel()
			close(r.gate)
			return nil
		})
		if !errors.Is(err, context.Canceled) || len(seen) != 1 || seen[0] != "first" {
			t.Fatalf("first run: %v, %d lines, want context.Canceled after \"first\"", err, len(seen))
		}
		got, err := sink.Slice(context.Background(), source.Lines(br))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0] != long || got[1] != "last" {
			lens := make([]int, len(got))
			for i, g := range got {
				lens[i] = len(g)
			}
			t.Errorf("second run: lines of lengths %v, want [4096 4] (the full-buffer line whole, then \"last\")", lens)
		}
	})
}
