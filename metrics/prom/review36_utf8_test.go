package prom_test

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// New: "A stage name that is not valid UTF-8, which a label cannot hold, is
// recorded with each run of invalid bytes replaced by one U+FFFD (so names
// that differ only there share a series)." A name that already holds U+FFFD
// is valid and recorded as it is, so it shares a series with an invalid
// name that differs from it only where the invalid run was.
func TestReview36PromInvalidUTF8Names(t *testing.T) {
	reg, obs := r34New(t)
	ctx := stage.Observe(context.Background(), obs)
	names := map[string]string{
		"a\xff\xfeb":    "a\uFFFDb",        // one run, one U+FFFD
		"c\xffd\xfee":   "c\uFFFDd\uFFFDe", // two runs, two
		"\xed\xa0\x80s": "\uFFFDs",         // an encoded surrogate: one run
		"x\xe2\x82":     "x\uFFFD",         // a truncated sequence
		"f\xff\uFFFDg":  "f\uFFFD\uFFFDg",  // a run, then a real U+FFFD
		"h\uFFFDi":      "h\uFFFDi",        // valid: as it is
		"h\xffi":        "h\uFFFDi",        // shares h\uFFFDi's series
		"ok\u00e9":      "ok\u00e9",
	}
	want := map[string]float64{}
	for n, rec := range names {
		m := stage.Map(source.Slice(metricstest.Ints(2)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name(n))
		if _, err := sink.Count(ctx, m); err != nil {
			t.Fatal(err)
		}
		want[rec] += 2
	}
	got := map[string]float64{}
	for k, p := range r34Read(t, reg) {
		if k.Metric == "received" {
			if k.Kind != "map" {
				t.Errorf("kind %q, want map", k.Kind)
			}
			got[k.Stage] += p.Value
		}
	}
	if len(got) != len(want) {
		t.Errorf("series: %v, want %v", got, want)
	}
	for n, v := range want {
		if got[n] != v {
			t.Errorf("received{stage=%q} = %v, want %v (all: %v)", n, got[n], v, got)
		}
	}
}
