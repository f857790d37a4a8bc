package otelmetric_test

import (
	"context"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func ExampleNew() {
	reader := sdkmetric.NewManualReader() // a real service exports instead
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(context.Background())

	obs, err := otelmetric.New(provider.Meter("etl"))
	if err != nil {
		panic(err)
	}
	ctx := stage.Observe(context.Background(), obs)
	squares := stage.Map(source.Slice([]int{1, 2, 3}), func(_ context.Context, n int) (int, error) { return n * n, nil }, stage.Name("square"))
	sink.Count(ctx, squares)

	var rm metricdata.ResourceMetrics
	reader.Collect(context.Background(), &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name == "sluice.stage.received" {
			fmt.Println(m.Name, m.Data.(metricdata.Sum[int64]).DataPoints[0].Value)
		}
	}
	// Output: sluice.stage.received 3
}
