package metricstest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// shapes are the documented shapes of the four metrics.
var shapes = map[Metric]Shape{Received: ShapeCounter, Finished: ShapeCounter, InFlight: ShapeUpDown, Duration: ShapeHistogram}

// MetricShapes: after a run, the backend holds the four metrics and no
// other, each of its documented shape (received and finished counters, in
// flight up and down, duration a histogram), with exactly the documented
// labels, per stage; finished's outcome is ok or error; the values are the
// run's.
func MetricShapes(t *testing.T, env Env) {
	s := stage.Map(source.Slice(Ints(10)), func(_ context.Context, i int) (int, error) {
		if i == 3 {
			return 0, errors.New("three")
		}
		return i, nil
	}, stage.Name("m"), stage.OnError(stage.Forward))
	if _, err := sink.Count(stage.Observe(context.Background(), env.Obs), s); err == nil {
		t.Fatal("want the forwarded error")
	}
	all := MustRead(t, env.Read)
	seen := map[Metric]int{}
	for _, p := range all {
		want, ok := shapes[p.Metric]
		if !ok {
			t.Errorf("undocumented metric: %+v", p)
			continue
		}
		seen[p.Metric]++
		if keys := env.Labels.Keys(p.Metric); p.Shape != want || !slices.Equal(p.Keys, keys) {
			t.Errorf("%v: a %v with labels %v, want a %v with %v", p.Metric, p.Shape, p.Keys, want, keys)
		}
		if p.Stage != "m" || p.Kind != "map" {
			t.Errorf("%v: stage %q kind %q, want m, map", p.Metric, p.Stage, p.Kind)
		}
		if p.Metric == Finished && p.Outcome != "ok" && p.Outcome != "error" {
			t.Errorf("%v: outcome %q", p.Metric, p.Outcome)
		}
	}
	for m := range shapes {
		if seen[m] == 0 {
			t.Errorf("no %v series after a run", m)
		}
	}
	if Val(all, Received, "m", "") != 10 || Val(all, Finished, "m", "ok") != 9 || Val(all, Finished, "m", "error") != 1 {
		t.Errorf("values: %+v", all)
	}
}
