package stage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// A panic in user code is an error, panic(nil) included, even under the
// legacy GODEBUG=panicnil=1 where recover returns nil for it: before, the
// call looked like a success and its zero result went downstream. The
// setting is read when a process starts, so the test runs in a child.
func TestPanicNilIsAPanicUnderLegacyGODEBUG(t *testing.T) {
	t.Setenv("GODEBUG", "panicnil=1") // inherited by the child
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, opts := range [][]stage.Option{nil, {stage.Workers(2), stage.Buffer(1)}} {
			got, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{1, 2}), func(_ context.Context, v int) (int, error) {
				if v == 2 {
					panic(nil)
				}
				return v, nil
			}, opts...))
			var pe *stage.PanicError
			if !errors.As(err, &pe) {
				t.Errorf("%v: got %v, %v; want a *stage.PanicError", opts, got, err)
			}
		}
	})
}
