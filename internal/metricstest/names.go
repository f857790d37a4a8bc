package metricstest

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// AwkwardStageNames: stage names that need escaping in an exposition
// format, or that are a metric's or label's own name, keep their exact
// value as the stage label, and a name that is not valid UTF-8 has U+FFFD
// for its invalid bytes; no name takes a run down or the backend's reading.
// Each name is a set of perStage series of its own (the series a stage that
// never failed has in the backend).
func AwkwardStageNames(t *testing.T, env Env, perStage int) {
	ctx := stage.Observe(context.Background(), env.Obs)
	names := []string{"a\"b\\c\nd", `x{stage="y"}`, "é ünïcödé 段", " ", "sluice_stage_in_flight", "sluice.stage", "bad\xff"}
	for _, name := range names {
		s := stage.Map(source.Slice(Ints(3)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name(name))
		var got int
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("stage %q: the run panicked: %v", name, p)
				}
			}()
			got, err = sink.Count(ctx, s)
		}()
		if err != nil || got != 3 {
			t.Fatalf("stage %q: %d items, %v", name, got, err)
		}
	}
	all := MustRead(t, env.Read)
	for _, name := range names {
		if got := Val(all, Received, strings.ToValidUTF8(name, "\uFFFD"), ""); got != 3 {
			t.Errorf("stage %q: received %v, want 3", name, got)
		}
	}
	if len(all) != perStage*len(names) {
		t.Errorf("%d series, want %d", len(all), perStage*len(names))
	}
}

// InvalidUTF8Names (review36): "A stage name that is not valid UTF-8 is
// recorded with each run of invalid bytes replaced by one U+FFFD (so names
// that differ only there share a series)." A name that already holds
// U+FFFD is valid and recorded as it is, so it shares a series with an
// invalid name that differs from it only where the invalid run was.
func InvalidUTF8Names(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
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
		m := stage.Map(source.Slice(Ints(2)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name(n))
		if _, err := sink.Count(ctx, m); err != nil {
			t.Fatal(err)
		}
		want[rec] += 2
	}
	got := map[string]float64{}
	for k, p := range Snap(t, MustRead(t, env.Read)) {
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
			t.Errorf("received{%s=%q} = %v, want %v (all: %v)", env.Labels.Stage, n, got[n], v, got)
		}
	}
}

// LabelsValidUTF8 (review34): whatever the stage name, the backend can be
// read (Snap fails the test on two series of one name) and every stage
// label is valid UTF-8.
func LabelsValidUTF8(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	for _, n := range []string{"a\xffb", "x\xe2\x82", "\xc0\xafz", "\xed\xa0\x80s", "\xff\xfe", "ok\u00e9"} {
		m := stage.Map(source.Slice(Ints(3)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name(n))
		if _, err := sink.Count(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for k := range Snap(t, MustRead(t, env.Read)) {
		if !utf8.ValidString(k.Stage) {
			t.Errorf("label %q is not valid UTF-8", k.Stage)
		}
	}
}
