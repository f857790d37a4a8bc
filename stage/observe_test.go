package stage_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func TestStatsCountsEveryStage(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var st stage.Stats
			ctx := stage.Observe(context.Background(), &st)
			s := stage.Map(source.Slice(ints(100)), failMultiplesOf3, m.opts(stage.Name("check"), stage.OnError(stage.Forward))...)
			s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, m.opts(stage.Name("keep"))...)
			s = stage.Map(s, double, m.opts(stage.Name("double"))...)
			n, _ := sink.Count(ctx, s)
			if n != 66 {
				t.Fatalf("%d items, want 66", n)
			}
			want := []stage.Counts{
				{Info: stage.Info{Name: "check", Kind: "map", Workers: m.workers, Total: 100}, Received: 100, Finished: 100, Failed: 34},
				{Info: stage.Info{Name: "keep", Kind: "filter", Workers: m.workers, Total: 100}, Received: 66, Finished: 66},
				{Info: stage.Info{Name: "double", Kind: "map", Workers: m.workers, Total: -1}, Received: 66, Finished: 66},
			}
			got := st.Snapshot()
			if len(got) != len(want) {
				t.Fatalf("got %d stages, want %d", len(got), len(want))
			}
			for i := range want {
				got[i].Latency = 0
				if got[i] != want[i] {
					t.Errorf("stage %d: got %+v, want %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestStatsReadableWhileRunning(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(context.Background(), &st)
	started := make(chan struct{}, 3)
	release := make(chan struct{})
	f := func(_ context.Context, x int) (int, error) {
		started <- struct{}{}
		<-release
		return x, nil
	}
	done := make(chan error)
	go func() {
		_, err := sink.Count(ctx, stage.Map(source.Slice(ints(10)), f, stage.Workers(3), stage.Name("slow")))
		done <- err
	}()
	for range 3 {
		<-started
	}
	s, ok := st.Get("slow")
	if !ok || s.InFlight != 3 || s.Received != 3 || s.Finished != 0 || s.Running != 1 {
		t.Errorf("while 3 calls wait: %+v, want 3 in flight, running", s)
	}
	close(release)
	go func() {
		for range started { // the other calls
		}
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(started)
	if s, _ := st.Get("slow"); s.InFlight != 0 || s.Finished != 10 || s.Running != 0 {
		t.Fatalf("after the run: %+v, want 10 finished, closed", s)
	}
}

func TestObserverNoAllocationPerItem(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(context.Background(), &st)
	allocs := func(n int) float64 {
		xs := ints(n)
		return testing.AllocsPerRun(5, func() {
			s := stage.Map(source.Slice(xs), double, stage.Workers(4))
			if _, err := sink.Reduce(ctx, s, 0, func(a, b int) int { return a + b }); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, large := allocs(100), allocs(20000)
	if large-small > 200 {
		t.Fatalf("%.0f allocations for 100 items, %.0f for 20000: the observer allocates per item", small, large)
	}
}

func TestObserveSeveral(t *testing.T) {
	var a, b stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), &a), &b)
	if _, err := sink.Count(ctx, stage.Map(source.Slice(ints(7)), double)); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*stage.Stats{&a, &b} {
		if s, ok := st.Get("map#1"); !ok || s.Finished != 7 {
			t.Fatalf("got %+v, want 7 finished in both", s)
		}
	}
}

// Observers attached to a context stay its own: two contexts derived from
// one with an observer each see their own observer and the shared one,
// never each other's (Observe appends to a list that both could share).
func TestObserveBranches(t *testing.T) {
	var first, second, shared, left, right stage.Stats
	// Three observers deep, so that a list grown by append has room left.
	base := stage.Observe(stage.Observe(stage.Observe(context.Background(), &first), &second), &shared)
	lctx := stage.Observe(base, &left)
	rctx := stage.Observe(base, &right)
	if _, err := sink.Count(lctx, stage.Map(source.Slice(ints(3)), double)); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Count(rctx, stage.Map(source.Slice(ints(5)), double)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		st   *stage.Stats
		want int64
	}{{"shared", &shared, 8}, {"left", &left, 3}, {"right", &right, 5}} {
		if s, _ := c.st.Get("map#1"); s.Finished != c.want {
			t.Errorf("%s observer: %d finished, want %d", c.name, s.Finished, c.want)
		}
	}
}

func TestTotalsThroughBatch(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(context.Background(), &st)
	s := stage.Map(stage.Batch(source.Slice(ints(10)), 3, 0), func(_ context.Context, b []int) (int, error) { return len(b), nil }, stage.Name("insert"))
	if _, err := sink.Count(ctx, s); err != nil {
		t.Fatal(err)
	}
	// How many batches a Batch makes depends on its timer: unknown.
	if s, _ := st.Get("insert"); s.Total != -1 || s.Finished != 4 {
		t.Fatalf("got %+v, want an unknown total and 4 batches", s)
	}
}

func TestLoggerLogsLifecycleAndFailuresOnly(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	ctx := stage.Observe(context.Background(), stage.Logger(l))
	s := stage.Map(source.Slice(ints(30)), failMultiplesOf3, stage.Name("check"), stage.OnError(stage.Forward))
	sink.Count(ctx, s)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	count := func(msg string) int {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, msg) {
				n++
			}
		}
		return n
	}
	if len(lines) != 12 || count("stage started") != 1 || count("item failed") != 10 || count("stage closed") != 1 {
		t.Fatalf("log:\n%s\nwant a start, 10 failures and a close", buf.String())
	}
	if !strings.Contains(lines[11], "received=30") || !strings.Contains(lines[11], "failed=10") {
		t.Fatalf("close line %q, want the counts", lines[11])
	}
}
