package otelmetric_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/stage"
)

// New: "The duration histogram's buckets are in seconds, from 1 µs to
// about 4 s, each bound 4 times the one before (as the prom package's; a
// View can change them)." A View on the provider sets other bounds.
func TestReview34OtelViewChangesBuckets(t *testing.T) {
	want := []float64{0.5, 1, 2}
	_, _, env := newMeterEnv(t, sdkmetric.WithView(sdkmetric.NewView(
		sdkmetric.Instrument{Name: "sluice.stage.duration"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: want}})))
	w := env.Obs.Stage(stage.Info{Name: "v", Kind: "map", Workers: 1, Total: -1})
	for _, d := range []time.Duration{time.Millisecond, 1500 * time.Millisecond, 3 * time.Second} {
		w.Received()
		w.Finished(d, nil)
	}
	w.Closed()
	h := metricstest.Snap(t, metricstest.MustRead(t, env.Read))[metricstest.Key34{Metric: "duration", Stage: "v", Kind: "map"}]
	if fmt.Sprint(h.Bounds) != fmt.Sprint(want) || fmt.Sprint(h.Cum) != "[1 1 2]" || h.Value != 3 {
		t.Errorf("with a View: bounds %v, cumulative %v, count %v; want %v, [1 1 2], 3", h.Bounds, h.Cum, h.Value, want)
	}
}

// New: "the same meter may serve several observers, which then add into the
// same series". Two observers of one meter, each attached to its own
// concurrent runs of the same pipelines: one set of data points, whose
// counts are the engine's calls to both (a tap on each) and Stats'.
func TestReview34OtelTwoObserversOneMeter(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	o1, err1 := otelmetric.New(mp.Meter("review34"))
	o2, err2 := otelmetric.New(mp.Meter("review34"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	var stats stage.Stats
	t1, t2 := metricstest.NewTap34(o1), metricstest.NewTap34(o2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		metricstest.Runs34(t, stage.Observe(stage.Observe(context.Background(), t1), &stats))
	}()
	metricstest.Runs34(t, stage.Observe(stage.Observe(context.Background(), t2), &stats))
	<-done
	snap := metricstest.Snap(t, metricstest.MustRead(t, read(reader)))
	metricstest.CheckStats34(t, snap, &stats)
	metricstest.CheckTap34(t, snap, t1, t2) // the series hold the sum of both
}
