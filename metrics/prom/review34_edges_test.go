package prom_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// New: "The duration histogram's buckets are in seconds, from 1 µs to about
// 4 s, each bound 4 times the one before. A call's duration is the
// stage.Watcher's latency". A latency exactly on a bound falls in that
// bound's bucket (le), one nanosecond more in the next; outcomes follow the
// three forms of Watcher.Finished's err. The watcher is driven directly, as
// the engine does (Stage, Received, Finished, Closed).
func TestReview34PromBucketEdgesAndOutcomes(t *testing.T) {
	reg, obs := r34New(t)
	bounds := r34Bounds()
	w := obs.Stage(stage.Info{Name: "edge", Kind: "map", Workers: 1, Total: -1})
	var lats []time.Duration
	for _, b := range bounds {
		d := time.Duration(math.Round(b * 1e9))
		lats = append(lats, d, d+1)
	}
	lats = append(lats, 0, time.Hour, math.MaxInt64)
	cut := fmt.Errorf("cut short: %w", context.Canceled)
	failed := &stage.Error{Stage: "edge", Index: 3, Attempts: 1, Err: errR34}
	wantOK, wantErr := 0, 0
	for i, d := range lats {
		w.Received()
		switch i % 3 {
		case 0:
			w.Finished(d, nil)
			wantOK++
		case 1:
			w.Finished(d, failed)
			wantErr++
		case 2:
			w.Finished(d, cut)
			wantOK++
		}
	}
	w.Received() // one left in flight
	w.Closed()
	snap := r34Read(t, reg)
	k := func(m, o string) r34Key { return r34Key{m, "edge", "map", o} }
	if v := snap[k("received", "")].value; v != float64(len(lats)+1) {
		t.Errorf("received = %v, want %d", v, len(lats)+1)
	}
	if v := snap[k("finished", "ok")].value; v != float64(wantOK) {
		t.Errorf("finished ok = %v, want %d (nil and cut-short errors)", v, wantOK)
	}
	if v := snap[k("finished", "error")].value; v != float64(wantErr) {
		t.Errorf("finished error = %v, want %d (*stage.Error)", v, wantErr)
	}
	if v := snap[k("in_flight", "")].value; v != 1 {
		t.Errorf("in_flight = %v, want 1 (one received, not finished; Closed does not finish it)", v)
	}
	h := snap[k("duration", "")]
	want := make([]uint64, len(bounds))
	var sum float64
	for _, d := range lats {
		sum += d.Seconds()
		for i, b := range bounds {
			if d.Seconds() <= b {
				want[i]++
			}
		}
	}
	if fmt.Sprint(h.bounds) != fmt.Sprint(bounds) {
		t.Fatalf("bounds = %v, want %v", h.bounds, bounds)
	}
	if fmt.Sprint(h.cum) != fmt.Sprint(want) || h.value != float64(len(lats)) {
		t.Errorf("cumulative buckets = %v (count %v), want %v (count %d): latencies %v", h.cum, h.value, want, len(lats), lats)
	}
	if math.Abs(h.sum-sum) > 1e-9*sum {
		t.Errorf("sum = %v s, want %v s", h.sum, sum)
	}
}

// New: "A stage name that is not valid UTF-8, which a label cannot hold,
// is recorded with each run of invalid bytes replaced by one U+FFFD." Whatever
// the name, gathering (on a pedantic registry) succeeds, every label is
// valid UTF-8, valid parts of the name survive, and names differing in a
// valid part stay apart. Stage names are given by stage.Name.
func TestReview34PromInvalidUTF8Names(t *testing.T) {
	reg, obs := r34New(t)
	ctx := stage.Observe(context.Background(), obs)
	names := []string{"a\xffb", "x\xe2\x82", "\xc0\xafz", "\xed\xa0\x80s", "\xff\xfe", "ok\u00e9"}
	for _, n := range names {
		m := stage.Map(source.Slice(r34Ints(3)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name(n))
		if _, err := sink.Count(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	snap := r34Read(t, reg)
	got := map[string]float64{}
	for k, p := range snap {
		if !utf8.ValidString(k.stage) {
			t.Errorf("label %q is not valid UTF-8", k.stage)
		}
		if k.metric == "received" {
			got[k.stage] += p.value
		}
	}
	// "each run of invalid bytes replaced by one U+FFFD"
	for _, want := range []string{"a\uFFFDb", "ok\u00e9", "\uFFFD"} {
		if got[want] != 3 {
			t.Errorf("received{stage=%q} = %v, want 3 (all: %v)", want, got[want], got)
		}
	}
	var total float64
	for _, v := range got {
		total += v
	}
	if total != float64(3*len(names)) {
		t.Errorf("received over every stage = %v, want %d: %v", total, 3*len(names), got)
	}
	t.Logf("labels recorded: %+q", keys(got))
}

// Observer.Stage: "Stage is called once per stage per run"; prom's Stage
// "resolves the stage's series once". Two pipelines sharing one observer
// with the same stage names: a name used by stages of two kinds gets a
// series per kind (labels {stage,kind}), the same name and kind adds up; a
// run whose stages have no item still leaves in flight 0.
func TestReview34PromSameNamesTwoPipelines(t *testing.T) {
	reg, obs := r34New(t)
	var stats stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), obs), &stats)
	p1 := stage.Filter(stage.Map(source.Slice(r34Ints(10)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("s")),
		func(_ context.Context, v int) (bool, error) { return v < 5, nil }, stage.Name("t"))
	p2 := stage.Map(stage.Filter(source.Slice(r34Ints(7)), func(_ context.Context, v int) (bool, error) {
		if v == 6 {
			return false, errR34
		}
		return true, nil
	}, stage.Name("s"), stage.OnError(stage.Forward)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("t"))
	p3 := stage.Map(source.Slice([]int{}), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("t"))
	for range 2 {
		if _, err := sink.Count(ctx, p1); err != nil {
			t.Fatal(err)
		}
		var se *stage.Error
		if _, err := sink.Count(ctx, p2); !errors.As(err, &se) {
			t.Fatalf("p2: %v", err)
		}
		if _, err := sink.Count(ctx, p3); err != nil {
			t.Fatal(err)
		}
	}
	snap := r34Read(t, reg)
	for _, c := range []struct {
		k    r34Key
		want float64
	}{
		{r34Key{"received", "s", "map", ""}, 20},
		{r34Key{"received", "s", "filter", ""}, 14},
		{r34Key{"finished", "s", "filter", "error"}, 2},
		{r34Key{"finished", "s", "filter", "ok"}, 12},
		{r34Key{"received", "t", "filter", ""}, 20},
		{r34Key{"received", "t", "map", ""}, 12}, // forwarded errors are not received
		{r34Key{"in_flight", "t", "map", ""}, 0},
		{r34Key{"duration", "t", "map", ""}, 12},
	} {
		if p, ok := snap[c.k]; !ok || p.value != c.want {
			t.Errorf("%+v = %v (present %v), want %v", c.k, p.value, ok, c.want)
		}
	}
	r34CheckStats(t, snap, &stats)
}

func keys[V any](m map[string]V) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	return s
}
