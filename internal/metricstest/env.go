package metricstest

import (
	"slices"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// Env is one adapter's observer on a fresh backend, the function that
// reads what the backend holds, and the backend's names for the labels.
// An adapter's test makes one Env per scenario; the review7 and review34
// scenarios take it through Env7 and Env34.
type Env struct {
	Obs    stage.Observer
	Read   Read
	Labels Labels
}

// Labels are a backend's names for the stage, kind and outcome labels
// (attribute keys).
type Labels struct{ Stage, Kind, Outcome string }

// Keys returns the label keys a series of metric must have, sorted.
func (l Labels) Keys(metric Metric) []string {
	keys := []string{l.Kind, l.Stage}
	if metric == Finished {
		keys = append(keys, l.Outcome)
	}
	slices.Sort(keys)
	return keys
}

// names7 are the review7 scenarios' names of the four metrics.
var names7 = map[Metric]string{Received: "received", Finished: "finished", InFlight: "in_flight", Duration: "duration"}

// Points7 returns the points of the four metrics as the review7 scenarios
// name them; the points of other metrics are left out.
func Points7(all []Point) []Point7 {
	var out []Point7
	for _, p := range all {
		if name, ok := names7[p.Metric]; ok {
			out = append(out, Point7{Metric: name, Stage: p.Stage, Kind: p.Kind, Outcome: p.Outcome, Value: p.Value, Sum: p.Sum})
		}
	}
	return out
}

// Env7 is e for the review7 scenarios.
func (e Env) Env7() Env7 {
	return Env7{Obs: e.Obs, Read: func() ([]Point7, error) {
		all, err := e.Read()
		return Points7(all), err
	}}
}

// Snap returns the points of the four metrics by series, failing the test
// if two points are of one series.
func Snap(t testing.TB, all []Point) Snap34 {
	t.Helper()
	out := Snap34{}
	for _, p := range all {
		name, ok := names7[p.Metric]
		if !ok {
			continue
		}
		k := Key34{Metric: name, Stage: p.Stage, Kind: p.Kind, Outcome: p.Outcome}
		if _, dup := out[k]; dup {
			t.Fatalf("two series for %+v", k)
		}
		out[k] = Point34{Value: p.Value, Sum: p.Sum, Bounds: p.Bounds, Cum: p.Cum}
	}
	return out
}

// Env34 is e for the review34 scenarios.
func (e Env) Env34() Env34 {
	return Env34{Obs: e.Obs, Read: func(t testing.TB) Snap34 {
		t.Helper()
		return Snap(t, MustRead(t, e.Read))
	}}
}
