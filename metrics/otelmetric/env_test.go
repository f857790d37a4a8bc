package otelmetric_test

// The OpenTelemetry backend of the shared scenarios (internal/metricstest):
// an SDK meter provider with a manual reader per scenario, read into
// metricstest.Points.

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/otelmetric"
)

// The documented names of the four instruments.
const (
	mReceived = "sluice.stage.received"
	mFinished = "sluice.stage.finished"
	mInFlight = "sluice.stage.in_flight"
	mDuration = "sluice.stage.duration"
)

var otelMetrics = map[string]metricstest.Metric{
	mReceived: metricstest.Received,
	mFinished: metricstest.Finished,
	mInFlight: metricstest.InFlight,
	mDuration: metricstest.Duration,
}

// otelLabels are the documented attribute keys.
var otelLabels = metricstest.Labels{Stage: "sluice.stage", Kind: "sluice.kind", Outcome: "sluice.outcome"}

// newEnv is otelmetric's observer on a fresh provider, for the shared
// scenarios.
func newEnv(t testing.TB) metricstest.Env {
	t.Helper()
	_, _, env := newMeterEnv(t)
	return env
}

// newMeterEnv is newEnv with its reader and meter (and the provider's
// options), for the OpenTelemetry-only checks.
func newMeterEnv(t testing.TB, opts ...sdkmetric.Option) (*sdkmetric.ManualReader, metric.Meter, metricstest.Env) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(append([]sdkmetric.Option{sdkmetric.WithReader(reader)}, opts...)...)
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	meter := provider.Meter("sluice-test")
	obs, err := otelmetric.New(meter)
	if err != nil {
		t.Fatalf("otelmetric.New: %v", err)
	}
	return reader, meter, metricstest.Env{Obs: obs, Read: read(reader), Labels: otelLabels}
}

// read reads every data point r collects (an instrument other than the
// four has Metric 0). It may be called from any goroutine.
func read(r sdkmetric.Reader) metricstest.Read {
	return func() ([]metricstest.Point, error) {
		var rm metricdata.ResourceMetrics
		if err := r.Collect(context.Background(), &rm); err != nil {
			return nil, err
		}
		var out []metricstest.Point
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					out = append(out, sumPoints(m.Name, d)...)
				case metricdata.Sum[float64]:
					out = append(out, sumPoints(m.Name, d)...)
				case metricdata.Histogram[float64]:
					out = append(out, histPoints(m.Name, d)...)
				case metricdata.Histogram[int64]:
					out = append(out, histPoints(m.Name, d)...)
				default:
					return nil, fmt.Errorf("%s: unexpected data %T", m.Name, m.Data)
				}
			}
		}
		return out, nil
	}
}

// sumPoints are the points of a sum: a counter if monotonic, else an
// up-down counter.
func sumPoints[N int64 | float64](name string, d metricdata.Sum[N]) []metricstest.Point {
	var out []metricstest.Point
	for _, dp := range d.DataPoints {
		p := metricstest.Point{Metric: otelMetrics[name], Shape: metricstest.ShapeUpDown, Value: float64(dp.Value)}
		if d.IsMonotonic {
			p.Shape = metricstest.ShapeCounter
		}
		attrs(&p, dp.Attributes)
		out = append(out, p)
	}
	return out
}

// histPoints are the points of a histogram, with cumulative counts.
func histPoints[N int64 | float64](name string, d metricdata.Histogram[N]) []metricstest.Point {
	var out []metricstest.Point
	for _, dp := range d.DataPoints {
		p := metricstest.Point{Metric: otelMetrics[name], Shape: metricstest.ShapeHistogram, Value: float64(dp.Count), Sum: float64(dp.Sum), Bounds: dp.Bounds}
		var c uint64
		for i := range dp.Bounds {
			c += dp.BucketCounts[i]
			p.Cum = append(p.Cum, c)
		}
		attrs(&p, dp.Attributes)
		out = append(out, p)
	}
	return out
}

// attrs fills p's labels and keys from set.
func attrs(p *metricstest.Point, set attribute.Set) {
	for _, kv := range set.ToSlice() {
		p.Keys = append(p.Keys, string(kv.Key))
		switch string(kv.Key) {
		case otelLabels.Stage:
			p.Stage = kv.Value.AsString()
		case otelLabels.Kind:
			p.Kind = kv.Value.AsString()
		case otelLabels.Outcome:
			p.Outcome = kv.Value.AsString()
		}
	}
	slices.Sort(p.Keys)
}
