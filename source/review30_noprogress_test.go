package source_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r30NoProgress gives "a\n" once, then (0, nil) for ever: a reader that
// breaks no rule of io.Reader ("Implementations of Read are discouraged from
// returning a zero byte count with a nil error") but never gets anywhere.
type r30NoProgress struct {
	calls  atomic.Int64
	onCall func(n int64)
}

func (r *r30NoProgress) Read(p []byte) (int, error) {
	n := r.calls.Add(1)
	if r.onCall != nil {
		r.onCall(n)
	}
	if n == 1 {
		return copy(p, "a\n"), nil
	}
	return 0, nil
}

// TestReview30LinesReaderWithoutProgress attacks, with a reader that returns
// (0, nil) for ever after its first line, the package's "A source takes an
// item from the caller's world (... a line read) ... never after the run
// was cancelled" and sink's "returns only when every goroutine of the run
// has exited ... on cancellation of ctx": the run is cancelled from inside a
// Read; the sink must then return (an error for which errors.Is(err,
// context.Canceled) holds, or a *stage.SourceError if Lines gave up on the
// reader first) and Read must not be called again after the Read that
// cancelled. Without the cancellation, the run must end too (a reader that
// never progresses must not spin the run for ever, as bufio's
// io.ErrNoProgress does not).
func TestReview30LinesReaderWithoutProgress(t *testing.T) {
	out, ok := runcheck.InChild(t, func() string {
		for _, at := range []int64{2, 50, 99} {
			ctx, cancel := context.WithCancel(context.Background())
			r := &r30NoProgress{}
			var after atomic.Int64
			r.onCall = func(n int64) {
				if n == at {
					cancel()
				} else if n > at {
					after.Add(1)
				}
			}
			got, err := sink.Slice(ctx, source.Lines(r))
			cancel()
			var se *stage.SourceError
			if !errors.Is(err, context.Canceled) && !errors.As(err, &se) {
				return fmt.Sprintf("cancel at read %d: %q, %v", at, got, err)
			}
			if after.Load() != 0 && !errors.As(err, &se) {
				return fmt.Sprintf("cancel at read %d: %d reads after the cancellation", at, after.Load())
			}
		}
		// no cancellation: the run must still end, with a source error.
		r := &r30NoProgress{}
		got, err := sink.Slice(context.Background(), source.Lines(r))
		var se *stage.SourceError
		if !errors.As(err, &se) {
			return fmt.Sprintf("no cancellation: %q, %v", got, err)
		}
		return "ok"
	})
	if ok && out != "ok" {
		t.Fatal(out)
	}
}
