package prom_test

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func ExampleNew() {
	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	obs, err := prom.New(reg)
	if err != nil {
		panic(err)
	}
	ctx := stage.Observe(context.Background(), obs)
	squares := stage.Map(source.Slice([]int{1, 2, 3}), func(_ context.Context, n int) (int, error) { return n * n, nil }, stage.Name("square"))
	sink.Count(ctx, squares)

	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "sluice_stage_received_total" {
			m := mf.GetMetric()[0]
			fmt.Println(mf.GetName(), m.GetLabel()[1].GetValue(), m.GetCounter().GetValue())
		}
	}
	// Output: sluice_stage_received_total square 3
}
