package otelmetric_test

// Review34: adversarial tests of package otelmetric, written from the
// documentation of otelmetric and stage only. The scenarios are shared with
// the other adapters (internal/metricstest's Review34); this file reads a
// manual reader for them, and holds otelmetric's own scenarios.

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/otelmetric"
)

var r34Names = map[string]string{
	"sluice.stage.received":  "received",
	"sluice.stage.finished":  "finished",
	"sluice.stage.in_flight": "in_flight",
	"sluice.stage.duration":  "duration",
}

func r34Read(t testing.TB, r sdkmetric.Reader) metricstest.Snap34 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	out := metricstest.Snap34{}
	add := func(name string, set attribute.Set, p metricstest.Point34) {
		get := func(k string) string { v, _ := set.Value(attribute.Key(k)); return v.AsString() }
		k := metricstest.Key34{Metric: name, Stage: get("sluice.stage"), Kind: get("sluice.kind"), Outcome: get("sluice.outcome")}
		if _, dup := out[k]; dup {
			t.Fatalf("two data points for %+v", k)
		}
		out[k] = p
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			name, ok := r34Names[m.Name]
			if !ok {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					add(name, dp.Attributes, metricstest.Point34{Value: float64(dp.Value)})
				}
			case metricdata.Sum[float64]:
				for _, dp := range d.DataPoints {
					add(name, dp.Attributes, metricstest.Point34{Value: dp.Value})
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					p := metricstest.Point34{Value: float64(dp.Count), Sum: dp.Sum, Bounds: dp.Bounds}
					var c uint64
					for i := range dp.Bounds {
						c += dp.BucketCounts[i]
						p.Cum = append(p.Cum, c)
					}
					add(name, dp.Attributes, p)
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

func r34New(t testing.TB, opts ...sdkmetric.Option) (*sdkmetric.ManualReader, *otelmetric.Observer) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(append([]sdkmetric.Option{sdkmetric.WithReader(reader)}, opts...)...)
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	obs, err := otelmetric.New(mp.Meter("review34"))
	if err != nil {
		t.Fatal(err)
	}
	return reader, obs
}

func TestReview34Otel(t *testing.T) {
	metricstest.Review34(t, func(t testing.TB) metricstest.Env34 {
		rd, obs := r34New(t)
		return metricstest.Env34{Obs: obs, Read: func(t testing.TB) metricstest.Snap34 { return r34Read(t, rd) }}
	})
}
