package prom_test

// The Prometheus backend of the shared scenarios (internal/metricstest): a
// fresh pedantic registry per scenario, read into metricstest.Points.

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/prom"
)

// The documented names of the four metrics.
const (
	mReceived = "sluice_stage_received_total"
	mFinished = "sluice_stage_finished_total"
	mInFlight = "sluice_stage_in_flight"
	mDuration = "sluice_stage_duration_seconds"
)

var promMetrics = map[string]metricstest.Metric{
	mReceived: metricstest.Received,
	mFinished: metricstest.Finished,
	mInFlight: metricstest.InFlight,
	mDuration: metricstest.Duration,
}

// promLabels are the documented label names.
var promLabels = metricstest.Labels{Stage: "stage", Kind: "kind", Outcome: "outcome"}

// newEnv is prom's observer on a fresh registry, for the shared scenarios.
func newEnv(t testing.TB) metricstest.Env {
	t.Helper()
	_, env := newRegEnv(t)
	return env
}

// newRegEnv is newEnv with its registry, for the Prometheus-only checks.
func newRegEnv(t testing.TB) (*prometheus.Registry, metricstest.Env) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	obs, err := prom.New(reg)
	if err != nil {
		t.Fatalf("prom.New(fresh registry) = %v", err)
	}
	return reg, metricstest.Env{Obs: obs, Read: read(reg), Labels: promLabels}
}

// read reads every series g gathers (a metric other than the four has
// Metric 0). It may be called from any goroutine.
func read(g prometheus.Gatherer) metricstest.Read {
	return func() ([]metricstest.Point, error) {
		mfs, err := g.Gather()
		if err != nil {
			return nil, err
		}
		var out []metricstest.Point
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				p := metricstest.Point{Metric: promMetrics[mf.GetName()]}
				for _, l := range m.GetLabel() {
					p.Keys = append(p.Keys, l.GetName())
					switch l.GetName() {
					case promLabels.Stage:
						p.Stage = l.GetValue()
					case promLabels.Kind:
						p.Kind = l.GetValue()
					case promLabels.Outcome:
						p.Outcome = l.GetValue()
					}
				}
				slices.Sort(p.Keys)
				switch mf.GetType().String() {
				case "COUNTER":
					p.Shape, p.Value = metricstest.ShapeCounter, m.GetCounter().GetValue()
				case "GAUGE":
					p.Shape, p.Value = metricstest.ShapeUpDown, m.GetGauge().GetValue()
				case "HISTOGRAM":
					h := m.GetHistogram()
					p.Shape, p.Value, p.Sum = metricstest.ShapeHistogram, float64(h.GetSampleCount()), h.GetSampleSum()
					for _, b := range h.GetBucket() {
						if !math.IsInf(b.GetUpperBound(), 1) {
							p.Bounds = append(p.Bounds, b.GetUpperBound())
							p.Cum = append(p.Cum, b.GetCumulativeCount())
						}
					}
				default:
					return nil, fmt.Errorf("%s: unexpected type %s", mf.GetName(), mf.GetType())
				}
				out = append(out, p)
			}
		}
		return out, nil
	}
}
