package metricstest

// The review13 scenarios: adversarial tests of the documented promises of
// the metrics adapters, written from their documentation (and stage's)
// only. Each adapter's review13 test runs them (Review13) with its own
// backend.

import (
	"errors"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
)

// Review13 runs the review13 scenarios against an adapter: newEnv makes a
// fresh observer on a fresh backend. Each scenario is a subtest.
// ConcurrentRunsShareSeries is run by the adapter itself (it may have more
// observers on one backend).
func Review13(t *testing.T, newEnv func(testing.TB) Env) {
	for _, sc := range []struct {
		name string
		run  func(*testing.T, func(testing.TB) Env)
	}{
		{"CountsPerStage", review13CountsPerStage},
		{"CutShortIsOK", review13CutShortIsOK},
		{"InFlightZeroAfterEveryEnding", review13InFlightZeroAfterEveryEnding},
		{"AwkwardNames", review13AwkwardNames},
		{"BucketsAndRetries", review13BucketsAndRetries},
		{"NameStabilityAndEmptyRuns", review13NameStabilityAndEmptyRuns},
		{"InFlightWithPanickingNeighbour", func(t *testing.T, newEnv func(testing.TB) Env) {
			env := newEnv(t)
			BesideAPanickingObserver(t, env.Obs, env.Read)
		}},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, newEnv) })
	}
}

var errR13 = errors.New("review13: boom")

// r13Val sums the points of metric for the stage whose kind and outcome
// match ("" matches any); n is how many points matched.
func r13Val(all []Point, metric Metric, stageName, kind, outcome string) (v float64, n int) {
	for _, p := range all {
		if p.Metric != metric || p.Stage != stageName || (kind != "" && p.Kind != kind) || (outcome != "" && p.Outcome != outcome) {
			continue
		}
		v += p.Value
		n++
	}
	return v, n
}

// r13Balanced checks, for one stage: received == ok + error finished ==
// duration count, and in flight 0; it returns received, ok and error.
func r13Balanced(t *testing.T, all []Point, stageName string) (recv, ok, failed float64) {
	t.Helper()
	recv, _ = r13Val(all, Received, stageName, "", "")
	ok, _ = r13Val(all, Finished, stageName, "", "ok")
	failed, _ = r13Val(all, Finished, stageName, "", "error")
	dur, _ := r13Val(all, Duration, stageName, "", "")
	in, _ := r13Val(all, InFlight, stageName, "", "")
	if recv != ok+failed || dur != ok+failed || in != 0 {
		t.Errorf("%s: received %v, finished ok %v + error %v, duration count %v, in flight %v: want received = finished = duration count, in flight 0",
			stageName, recv, ok, failed, dur, in)
	}
	return recv, ok, failed
}

// Within runs f, failing the test if it has not returned after the
// Watchdog (f runs on a goroutine of its own: no t.Fatal in it).
func Within(t *testing.T, f func()) {
	t.Helper()
	runcheck.NoHang(t, "hung", f)
}
