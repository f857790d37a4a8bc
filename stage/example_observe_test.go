package stage_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Attach Stats once for the whole pipeline, through the sink's context, and
// read the counters while the run goes on or after it.
func ExampleStats() {
	var stats stage.Stats
	ctx := stage.Observe(context.Background(), &stats)
	nums := stage.Map(source.Slice([]string{"1", "2", "x", "4"}), func(_ context.Context, s string) (int, error) {
		return strconv.Atoi(s)
	}, stage.Name("parse"), stage.OnError(stage.Forward))
	sink.Count(ctx, nums)

	s, _ := stats.Get("parse")
	fmt.Printf("%s: %d/%d done, %d failed, %d in flight\n", s.Name, s.Finished, s.Total, s.Failed, s.InFlight)
	// Output: parse: 4/4 done, 1 failed, 0 in flight
}

// Logger logs each stage's start and close and every failed item, never a
// success.
func ExampleLogger() {
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey || a.Key == "mean_latency" {
			return slog.Attr{}
		}
		return a
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime}))
	ctx := stage.Observe(context.Background(), stage.Logger(log))
	nums := stage.Map(source.Slice([]string{"1", "x"}), func(_ context.Context, s string) (int, error) {
		return strconv.Atoi(s)
	}, stage.Name("parse"), stage.Workers(1), stage.OnError(stage.Forward))
	sink.Count(ctx, nums)
	// Output:
	// level=INFO msg="sluice: stage started" stage=parse kind=map workers=1 total=2
	// level=WARN msg="sluice: item failed" stage=parse index=1 attempts=1 err="strconv.Atoi: parsing \"x\": invalid syntax"
	// level=INFO msg="sluice: stage closed" stage=parse received=2 finished=2 failed=1
}
