package otelmetric_test

import (
	"context"
	"strconv"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRecordsPerStage(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())
	obs, err := otelmetric.New(provider.Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := stage.Observe(context.Background(), obs)
	in := make([]string, 100)
	for i := range in {
		in[i] = strconv.Itoa(i)
	}
	in[7], in[70] = "x", "y"
	nums := stage.Map(source.Slice(in), func(_ context.Context, s string) (int, error) { return strconv.Atoi(s) },
		stage.Name("parse"), stage.Workers(4), stage.OnError(stage.Forward))
	if _, err := sink.Count(ctx, nums); err == nil {
		t.Fatal("want the two forwarded errors")
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	points := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					points++
					outcome, _ := p.Attributes.Value(attribute.Key("sluice.outcome"))
					stageName, _ := p.Attributes.Value(attribute.Key("sluice.stage"))
					got[m.Name+"/"+stageName.AsString()+"/"+outcome.AsString()] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					points++
					got[m.Name] = int64(p.Count)
				}
			}
		}
	}
	want := map[string]int64{
		"sluice.stage.received/parse/":      100,
		"sluice.stage.in_flight/parse/":     0,
		"sluice.stage.finished/parse/ok":    98,
		"sluice.stage.finished/parse/error": 2,
		"sluice.stage.duration":             100,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if points != 5 {
		t.Fatalf("%d data points, want 5: attributes per stage, never per item", points)
	}
}
