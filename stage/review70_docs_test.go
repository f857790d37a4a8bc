package stage_test

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The sentences the black-box round found silent, as the docs now state
// them.

// Observe: "Observers attached by several calls all see every stage, each
// on its own (one attached twice sees it twice)".
func TestReview70ObserverAttachedTwiceSeesTwice(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), &st), &st)
	s := stage.Map(source.Slice(make([]int, 10)), func(_ context.Context, v int) (int, error) { return v, nil },
		stage.Name("m"))
	if _, err := sink.Slice(ctx, s); err != nil {
		t.Fatal(err)
	}
	c, _ := st.Get("m")
	if c.Received != 20 || c.Finished != 20 || c.Running != 0 {
		t.Fatalf("an observer attached twice: %+v, want every item counted twice", c)
	}
}

// Stats: "stages of the same name, in one run or in several, share one
// entry, whose counts add up and whose Info is that of the stage last
// opened under the name."
func TestReview70StatsSameNameOneEntry(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(context.Background(), &st)
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	// One run, two stages named "x": upstream (3 items known) then
	// downstream behind a Filter (total unknown), opened in that order.
	keep := func(context.Context, int) (bool, error) { return true, nil }
	s := stage.Map(stage.Filter(stage.Map(source.Slice([]int{1, 2, 3}), id, stage.Name("x"), stage.Workers(2)), keep),
		id, stage.Name("x"), stage.Workers(5))
	if _, err := sink.Slice(ctx, s); err != nil {
		t.Fatal(err)
	}
	c, _ := st.Get("x")
	if c.Received != 6 || c.Finished != 6 {
		t.Fatalf("two stages named x in one run: %+v, want one entry of 6", c)
	}
	if c.Workers != 5 || c.Total != -1 {
		t.Fatalf("Info %+v: want the stage last opened (workers 5, total -1)", c.Info)
	}
	if got := len(st.Snapshot()); got != 2 { // x and the filter
		t.Fatalf("Snapshot has %d entries, want 2", got)
	}
	// A later run of another shape under the name: its Info replaces it.
	if _, err := sink.Slice(ctx, stage.Map(source.Slice(make([]int, 7)), id, stage.Name("x"), stage.Workers(3))); err != nil {
		t.Fatal(err)
	}
	c, _ = st.Get("x")
	if c.Received != 13 || c.Workers != 3 || c.Total != 7 {
		t.Fatalf("after a run of 7 items, 3 workers: %+v", c)
	}
}

// Logger: "every record with the stage's name under the key "stage": a
// stage's start (Info, "sluice: stage started", with "kind", "workers" and
// "total" ...), each failed item (Warn, "sluice: item failed", with
// "index", "attempts" and "err" ...), and its close (Info, "sluice: stage
// closed", with the run's counts "received", "finished" and "failed", and
// "mean_latency")."
func TestReview70LoggerKeys(t *testing.T) {
	h := newR70handler()
	ctx := stage.Observe(context.Background(), stage.Logger(slog.New(h)))
	boom := errors.New("boom")
	s := stage.Map(source.Slice([]int{0, 1, 2}), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			return 0, boom
		}
		return v, nil
	}, stage.Name("st"), stage.Workers(1), stage.OnError(stage.Forward))
	for range sink.All(ctx, s) {
	}
	want := []struct {
		level slog.Level
		msg   string
		keys  []string
	}{
		{slog.LevelInfo, "sluice: stage started", []string{"stage", "kind", "workers", "total"}},
		{slog.LevelWarn, "sluice: item failed", []string{"stage", "index", "attempts", "err"}},
		{slog.LevelInfo, "sluice: stage closed", []string{"stage", "received", "finished", "failed", "mean_latency"}},
	}
	recs := h.records()
	if len(recs) != len(want) {
		t.Fatalf("records: %v, want %d", recs, len(want))
	}
	for i, w := range want {
		r := recs[i]
		var keys []string
		vals := map[string]slog.Value{}
		for _, a := range r.attrs {
			keys = append(keys, a.Key)
			vals[a.Key] = a.Value
		}
		if r.level != w.level || r.msg != w.msg || !reflect.DeepEqual(keys, w.keys) {
			t.Fatalf("record %d: %v, want %v %q with keys %v", i, r, w.level, w.msg, w.keys)
		}
		if vals["stage"].String() != "st" {
			t.Fatalf("record %d: stage %v, want st", i, vals["stage"])
		}
	}
	warn, closed := recs[1].attrs, recs[2].attrs
	if warn[1].Value.Int64() != 1 || warn[2].Value.Int64() != 1 || !errors.Is(warn[3].Value.Any().(error), boom) {
		t.Fatalf("failure record: %v", recs[1])
	}
	if closed[1].Value.Int64() != 3 || closed[2].Value.Int64() != 3 || closed[3].Value.Int64() != 1 {
		t.Fatalf("close record: %v", recs[2])
	}
}
