package stage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

var (
	errR93Next = errors.New("review93: next failed")
	errR93Stop = errors.New("review93: found at stop")
)

// TestReview93StopPanicAfterASourceErrorKeepsTheFirst: Source, "A source
// that finds a failure after its last item ... reports it by panicking in
// stop with a *SourceError: the run fails with that error as it is, unless
// its result was decided first (a failure, ...)". A source whose next
// failed has decided the run's result: the *SourceError its stop panics
// with afterwards must not replace next's error. (And a plain panic in
// that stop neither.)
func TestReview93StopPanicAfterASourceErrorKeepsTheFirst(t *testing.T) {
	for _, name := range []string{"source-error", "plain"} {
		t.Run(name, func(t *testing.T) {
			src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				return func(context.Context) (int, error) { return 0, errR93Next }, func() {
					if name == "plain" {
						panic(errR93Stop)
					}
					panic(&stage.SourceError{Err: errR93Stop})
				}
			})
			var err error
			runcheck.Run(t, "the run", func() { _, err = sink.Slice(context.Background(), src) })
			var se *stage.SourceError
			if !errors.As(err, &se) || !errors.Is(err, errR93Next) || errors.Is(err, errR93Stop) {
				t.Errorf("run: %v, want the *SourceError of next's error, not stop's", err)
			}
		})
	}
}
