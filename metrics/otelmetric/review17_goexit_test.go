package otelmetric_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// New: "sluice.stage.in_flight  items taken and not finished";
// stage.Watcher: "Finished: the call (all its attempts under Retry) ended".
// A stage function that calls runtime.Goexit (t.Fatal in a test) on a
// worker goroutine fails the run with stage.ErrGoexit; its call has ended
// when the sink returns, but the watcher is never told (Received without
// Finished): the up-down counter stays at 1 after the run, and
// sluice.stage.finished counts one call fewer than sluice.stage.received.
func TestReview17GoexitLeavesNoItemInFlight(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())
	obs, err := otelmetric.New(provider.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := stage.Observe(context.Background(), obs)
	// Buffer(1): the calls run on goroutines of the stage, never on the
	// sink's goroutine.
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
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if d, ok := mt.Data.(metricdata.Sum[int64]); ok {
				for _, p := range d.DataPoints {
					name, _ := p.Attributes.Value(attribute.Key("sluice.stage"))
					if name.AsString() == "g" {
						got[mt.Name] += p.Value
					}
				}
			}
		}
	}
	if got["sluice.stage.in_flight"] != 0 || got["sluice.stage.finished"] != got["sluice.stage.received"] {
		t.Fatalf("after the run: %v; want in_flight 0 and finished = received (the Goexit ended its call)", got)
	}
}
