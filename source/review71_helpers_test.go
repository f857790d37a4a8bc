package source_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// errReview71Boom is the tests' own failure.
var errReview71Boom = errors.New("review71: boom")

// review71Step is one Read of a review71Reader: it returns data (copied in
// full: Read is given room for it, else the test fails) and err, after
// waiting for gate (if any); or it panics with panicV, or calls Goexit.
type review71Step struct {
	data    string
	err     error
	gate    <-chan struct{}
	started chan struct{} // closed when the Read starts
	panicV  any
	goexit  bool
}

// review71Reader is a scripted io.Reader of its own type (so Lines treats it
// as a source that may wait). After the script it returns io.EOF. It counts
// Reads, and the Reads made after it returned io.EOF.
type review71Reader struct {
	t         testing.TB
	mu        sync.Mutex
	steps     []review71Step
	reads     int
	eofSeen   bool
	afterEOF  int
	returned  int // Reads that returned
	bytesRead int
}

func (r *review71Reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	if r.eofSeen {
		r.afterEOF++
	}
	i := r.reads
	r.reads++
	r.mu.Unlock()
	if i >= len(r.steps) {
		r.mu.Lock()
		r.eofSeen = true
		r.returned++
		r.mu.Unlock()
		return 0, io.EOF
	}
	st := r.steps[i]
	if st.started != nil {
		close(st.started)
	}
	if st.gate != nil {
		select {
		case <-st.gate:
		case <-time.After(runcheck.Watchdog):
			r.t.Errorf("read %d: gate never opened", i)
		}
	}
	if st.panicV != nil {
		panic(st.panicV)
	}
	if st.goexit {
		runtime.Goexit()
	}
	if len(p) < len(st.data) {
		r.t.Errorf("read %d: room for %d bytes, the script has %d", i, len(p), len(st.data))
	}
	n := copy(p, st.data)
	r.mu.Lock()
	r.returned++
	r.bytesRead += n
	if errors.Is(st.err, io.EOF) && st.err == io.EOF {
		r.eofSeen = true
	}
	r.mu.Unlock()
	return n, st.err
}

func (r *review71Reader) counts() (reads, returned, afterEOF int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads, r.returned, r.afterEOF
}

// review71Collect runs s with sink.Slice under runcheck.Run.
func review71Collect(t *testing.T, ctx context.Context, s stage.Stream[string]) ([]string, error) {
	t.Helper()
	var got []string
	var err error
	runcheck.Run(t, "slice", func() { got, err = sink.Slice(ctx, s) })
	return got, err
}

// review71Join shows lines for messages.
func review71Join(lines []string) string { return "[" + strings.Join(lines, "|") + "]" }
