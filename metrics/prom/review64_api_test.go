package prom_test

// Review 64: the API surface of package prom, from its documentation
// only: the zero Observer.

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "Observer is a stage.Observer that records into Prometheus metrics; make
// one with New." A zero Observer (&prom.Observer{}) still satisfies
// stage.Observer; stage's doc: "An observer is user code: a panic in Stage
// or in a Watcher's method fails the run, and the process goes on." So a
// run given one either works or fails with a *PanicError; it never crashes.
func TestReview64APIZeroObserver(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		ctx := stage.Observe(context.Background(), &prom.Observer{})
		_, err := sink.Slice(ctx, stage.Map(source.Slice([]int{1, 2}),
			func(_ context.Context, v int) (int, error) { return v, nil }))
		var pe *stage.PanicError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("a run observed by a zero prom.Observer: %v", err)
		}
		t.Logf("a run observed by a zero prom.Observer: %v", err)
	})
}
