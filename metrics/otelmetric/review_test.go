package otelmetric_test

// Adversarial tests of the OpenTelemetry observer, written from its
// documentation (and stage's Observer/Watcher/Info). A real SDK meter
// provider with a manual reader, real runs. The scenarios every adapter
// shares are in internal/metricstest; this file runs them and holds the
// SDK's own promises.

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/internal/metricstest"
)

// 1. The four instruments, their kinds (counter, up-down counter,
// histogram) and attribute keys, as documented.
func TestReviewOtelInstrumentShapes(t *testing.T) {
	reader, _, env := newMeterEnv(t)
	metricstest.MetricShapes(t, env)
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	checkCumulativeSeconds(t, rm)
}

// checkCumulativeSeconds checks what the shared scenarios cannot see: every
// instrument is cumulative, and the duration's unit is seconds.
func checkCumulativeSeconds(t *testing.T, rm metricdata.ResourceMetrics) {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var temp metricdata.Temporality
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				temp = d.Temporality
			case metricdata.Sum[float64]:
				temp = d.Temporality
			case metricdata.Histogram[float64]:
				temp = d.Temporality
			case metricdata.Histogram[int64]:
				temp = d.Temporality
			}
			if temp != metricdata.CumulativeTemporality {
				t.Errorf("%s: temporality %v, want cumulative", m.Name, temp)
			}
			if m.Name == mDuration && m.Unit != "s" {
				t.Errorf("%s: unit %q, want \"s\" (durations in seconds)", m.Name, m.Unit)
			}
		}
	}
}

// 2-6: the scenarios every adapter runs (see metricstest).
func TestReviewOtelInFlightAndSecondsDuringARun(t *testing.T) {
	env := newEnv(t)
	metricstest.InFlightAndSeconds(t, env.Obs, env.Read)
}

func TestReviewOtelDurationCoversAllAttempts(t *testing.T) {
	env := newEnv(t)
	metricstest.DurationCoversAllAttempts(t, env.Obs, env.Read)
}

func TestReviewOtelOutcomesAndKinds(t *testing.T) {
	env := newEnv(t)
	metricstest.OutcomesAndKinds(t, env.Obs, env.Read)
}

func TestReviewOtelEarlyEndLeavesNothingInFlight(t *testing.T) {
	metricstest.EarlyEndLeavesNothingInFlight(t, newEnv)
}

func TestReviewOtelCutShortCallsAreNotErrors(t *testing.T) {
	metricstest.CutShortCallsAreNotErrors(t, newEnv)
}

func TestReviewOtelEarlyEndsAgreeWithStats(t *testing.T) {
	metricstest.EarlyEndsAgreeWithStats(t, newEnv)
}

func TestReviewOtelConcurrentRunsShareTheObserver(t *testing.T) {
	env := newEnv(t)
	metricstest.ConcurrentRunsShareTheObserver(t, env.Obs, env.Read)
}

// 7. Awkward stage names; a stage that never failed has 4 data points
// (no finished point with outcome error).
func TestReviewOtelAwkwardStageNames(t *testing.T) {
	metricstest.AwkwardStageNames(t, newEnv(t), 4)
}
