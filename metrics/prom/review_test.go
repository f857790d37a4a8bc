package prom_test

// Adversarial tests of the Prometheus observer, written from its
// documentation (and stage's Observer/Watcher/Info). Real registry, real
// runs. The scenarios every adapter shares are in internal/metricstest;
// this file runs them and holds the registry's own promises.

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// 1. The four metrics, their types and label names, as documented.
func TestReviewPromMetricShapes(t *testing.T) {
	reg, env := newRegEnv(t)
	metricstest.MetricShapes(t, env)
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Logf("promlint (not a documented promise): %v %v", problems, err)
	}
}

// 2-6: the scenarios every adapter runs (see metricstest).
func TestReviewPromInFlightAndSecondsDuringARun(t *testing.T) {
	env := newEnv(t)
	metricstest.InFlightAndSeconds(t, env.Obs, env.Read)
}

func TestReviewPromDurationCoversAllAttempts(t *testing.T) {
	env := newEnv(t)
	metricstest.DurationCoversAllAttempts(t, env.Obs, env.Read)
}

func TestReviewPromOutcomesAndKinds(t *testing.T) {
	env := newEnv(t)
	metricstest.OutcomesAndKinds(t, env.Obs, env.Read)
}

func TestReviewPromEarlyEndLeavesNothingInFlight(t *testing.T) {
	metricstest.EarlyEndLeavesNothingInFlight(t, newEnv)
}

func TestReviewPromCutShortCallsAreNotErrors(t *testing.T) {
	metricstest.CutShortCallsAreNotErrors(t, newEnv)
}

func TestReviewPromEarlyEndsAgreeWithStats(t *testing.T) {
	metricstest.EarlyEndsAgreeWithStats(t, newEnv)
}

func TestReviewPromConcurrentRunsShareTheObserver(t *testing.T) {
	env := newEnv(t)
	metricstest.ConcurrentRunsShareTheObserver(t, env.Obs, env.Read)
}

// 7. Awkward stage names; a registry holds 5 series per stage (finished
// has its ok and error series from a stage's first call).
func TestReviewPromAwkwardStageNames(t *testing.T) {
	metricstest.AwkwardStageNames(t, newEnv(t), 5)
}

// 8. New on a registry that already holds one of the names (another
// observer) returns the registry's error, and the observer that holds the
// metrics goes on recording into them.
func TestReviewPromSecondNewLeavesTheFirstWorking(t *testing.T) {
	reg, env := newRegEnv(t)
	_, err := prom.New(reg)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("second New: %v, want AlreadyRegisteredError", err)
	}
	s := stage.Map(source.Slice(metricstest.Ints(5)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name("s"))
	if _, err := sink.Count(stage.Observe(context.Background(), env.Obs), s); err != nil {
		t.Fatal(err)
	}
	if got := metricstest.Val(metricstest.MustRead(t, env.Read), metricstest.Received, "s", ""); got != 5 {
		t.Fatalf("received %v, want 5", got)
	}
}
