package prom_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRecordsPerStage(t *testing.T) {
	reg := prometheus.NewRegistry()
	obs, err := prom.New(reg)
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
	even := stage.Filter(nums, func(_ context.Context, n int) (bool, error) { return n%2 == 0, nil }, stage.Name("even"))
	for run := range 2 {
		if _, err := sink.Count(ctx, even); err == nil {
			t.Fatalf("run %d: want the two forwarded errors", run)
		}
	}
	for _, c := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"sluice_stage_received_total", map[string]string{"stage": "parse", "kind": "map"}, 200},
		{"sluice_stage_finished_total", map[string]string{"stage": "parse", "outcome": "ok"}, 196},
		{"sluice_stage_finished_total", map[string]string{"stage": "parse", "outcome": "error"}, 4},
		{"sluice_stage_in_flight", map[string]string{"stage": "parse"}, 0},
		{"sluice_stage_received_total", map[string]string{"stage": "even", "kind": "filter"}, 196},
		{"sluice_stage_duration_seconds", map[string]string{"stage": "even"}, 196},
	} {
		if got := value(t, reg, c.metric, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.metric, c.labels, got, c.want)
		}
	}
	// Per-stage series only: 2 stages × (received, ok, error, in flight,
	// histogram) whatever the number of items.
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 10 {
		t.Fatalf("%d series (%v), want 10", n, err)
	}
	if _, err := prom.New(reg); err == nil {
		t.Fatal("a second New on one registry: want the registration error")
	}
	var are prometheus.AlreadyRegisteredError
	_, err = prom.New(reg)
	if !errors.As(err, &are) {
		t.Fatalf("err = %v, want AlreadyRegisteredError", err)
	}
}

// value gathers reg and returns the value of the series of metric whose
// labels include labels (a histogram's sample count).
func value(t *testing.T, reg *prometheus.Registry, metric string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v", metric, labels)
	return 0
}

// TestFailedNewRegistersNothing: when one of the metrics clashes with one
// already on the registry, New registers none of them, so that a New after
// the clash is removed succeeds.
func TestFailedNewRegistersNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	// The same metric as New's third (a registry keeps a name's labels and
	// help for its lifetime, so only an equal one can come back later).
	clash := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_stage_in_flight", Help: "Items a sluice stage has taken and not finished.",
	}, []string{"stage", "kind"})
	reg.MustRegister(clash)
	if _, err := prom.New(reg); err == nil {
		t.Fatal("New succeeded over a clashing metric")
	}
	if !reg.Unregister(clash) {
		t.Fatal("the clashing metric was not registered")
	}
	if _, err := prom.New(reg); err != nil {
		t.Fatalf("New after the clash was removed: %v (the first New left some metrics registered)", err)
	}
}
