package prom_test

// Review34: adversarial tests of package prom, written from the
// documentation of prom and stage only. The scenarios are shared with the
// other adapters (internal/metricstest's Review34); this file reads the
// registry for them.

import (
	"context"
	"math"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var r34Names = map[string]string{
	"sluice_stage_received_total":   "received",
	"sluice_stage_finished_total":   "finished",
	"sluice_stage_in_flight":        "in_flight",
	"sluice_stage_duration_seconds": "duration",
}

func r34Read(t testing.TB, g prometheus.Gatherer) metricstest.Snap34 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := metricstest.Snap34{}
	for _, mf := range mfs {
		name, ok := r34Names[mf.GetName()]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			k := metricstest.Key34{Metric: name, Stage: l["stage"], Kind: l["kind"], Outcome: l["outcome"]}
			var p metricstest.Point34
			switch {
			case m.GetCounter() != nil:
				p.Value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				p.Value = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				p.Value = float64(h.GetSampleCount())
				p.Sum = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					if math.IsInf(b.GetUpperBound(), 1) {
						continue
					}
					p.Bounds = append(p.Bounds, b.GetUpperBound())
					p.Cum = append(p.Cum, b.GetCumulativeCount())
				}
			}
			if _, dup := out[k]; dup {
				t.Fatalf("two series for %+v", k)
			}
			out[k] = p
		}
	}
	return out
}

func r34New(t testing.TB) (*prometheus.Registry, *prom.Observer) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	obs, err := prom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return reg, obs
}

func TestReview34Prom(t *testing.T) {
	metricstest.Review34(t, func(t testing.TB) metricstest.Env34 {
		reg, obs := r34New(t)
		return metricstest.Env34{Obs: obs, Read: func(t testing.TB) metricstest.Snap34 { return r34Read(t, reg) }}
	})
}

// New: "A stage name that is not valid UTF-8, which a label cannot hold,
// is recorded with each run of invalid bytes replaced by one U+FFFD."
// Whatever the name, gathering on a pedantic registry succeeds (r34Read
// fails the test otherwise) and every label is valid UTF-8; review36 checks
// the names recorded.
func TestReview34PromInvalidUTF8Names(t *testing.T) {
	reg, obs := r34New(t)
	ctx := stage.Observe(context.Background(), obs)
	for _, n := range []string{"a\xffb", "x\xe2\x82", "\xc0\xafz", "\xed\xa0\x80s", "\xff\xfe", "ok\u00e9"} {
		m := stage.Map(source.Slice(metricstest.Ints(3)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name(n))
		if _, err := sink.Count(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for k := range r34Read(t, reg) {
		if !utf8.ValidString(k.Stage) {
			t.Errorf("label %q is not valid UTF-8", k.Stage)
		}
	}
}
