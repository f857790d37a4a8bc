package prom_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// New: "sluice_stage_in_flight{stage,kind}  items taken and not finished";
// stage.Watcher: "Finished: the call (all its attempts under Retry) ended".
// A stage function that calls runtime.Goexit (t.Fatal in a test) on a
// worker goroutine fails the run with stage.ErrGoexit, and its call has
// ended by the time the sink returns (every goroutine of the run has
// exited), but the watcher is never told: Received without Finished, so
// the in-flight gauge stays at 1 for ever after the run, and finished_total
// counts one call fewer than received_total.
func TestReview17GoexitLeavesNoItemInFlight(t *testing.T) {
	reg := prometheus.NewRegistry()
	obs, err := prom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := stage.Observe(context.Background(), obs)
	// Buffer(1): the stage runs its calls on goroutines of its own, never
	// on the sink's goroutine.
	m := stage.Map(source.Slice([]int{0, 1, 2, 3, 4, 5, 6, 7}), func(_ context.Context, v int) (int, error) {
		if v == 3 {
			runtime.Goexit()
		}
		return v, nil
	}, stage.Name("g"), stage.Workers(2), stage.Buffer(1))
	runcheck.Run(t, "goexit", func() { _, err = sink.Slice(ctx, m) })
	if !errors.Is(err, stage.ErrGoexit) {
		t.Fatalf("sink.Slice = %v, want stage.ErrGoexit", err)
	}
	labels := map[string]string{"stage": "g", "kind": "map"}
	recv := value(t, reg, "sluice_stage_received_total", labels)
	ok := value(t, reg, "sluice_stage_finished_total", map[string]string{"stage": "g", "outcome": "ok"})
	failed := value(t, reg, "sluice_stage_finished_total", map[string]string{"stage": "g", "outcome": "error"})
	inFlight := value(t, reg, "sluice_stage_in_flight", labels)
	if inFlight != 0 || ok+failed != recv {
		t.Fatalf("after the run: in_flight %v, received %v, finished ok %v + error %v; want in_flight 0 and every received call finished (the Goexit ended its call)", inFlight, recv, ok, failed)
	}
}
