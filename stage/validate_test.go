package stage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func TestMisuseAtBuildTimePanicsNamingTheFunction(t *testing.T) {
	var zero stage.Stream[int]
	ok := source.Slice(ints(1))
	cases := []struct {
		name  string
		build func()
	}{
		{"stage.Workers", func() { stage.Workers(-2) }},
		{"stage.Buffer", func() { stage.Buffer(-1) }},
		{"stage.Name", func() { stage.Name("") }},
		{"stage.Handle", func() { stage.Handle(nil) }},
		{"stage.Budget", func() { stage.Budget(-1, nil) }},
		{"stage.Retry", func() { stage.Retry(0, 0) }},
		{"stage.Retry", func() { stage.Retry(2, -time.Second) }},
		{"stage.RetryIf", func() { stage.RetryIf(2, 0, nil) }},
		{"stage.RetryIf", func() { stage.RetryIf(0, 0, func(error) bool { return true }) }},
		{"stage.NeverWaits", func() { stage.NeverWaits(source.Slice(ints(1))) }},
		{"stage.Interruptible", func() { stage.Interruptible(source.Slice(ints(1))) }},
		{"stage.NeverWaits", func() {
			stage.NeverWaits(stage.Map(source.Func(func(context.Context) (int, error) { return 0, nil }), double))
		}},
		{"stage.Timeout", func() { stage.Timeout(0) }},
		{"stage.RateLimit", func() { stage.RateLimit(0, 1) }},
		{"stage.RateLimit", func() { stage.RateLimit(10, 0) }},
		{"stage.SharedRateLimit", func() { stage.SharedRateLimit(nil) }},
		{"stage.Map", func() { stage.Map(zero, double) }},
		{"stage.Map", func() { stage.Map[int, int](ok, nil) }},
		{"stage.Map", func() { stage.Map(ok, double, stage.Option{}) }},
		{"stage.Filter", func() { stage.Filter(zero, func(context.Context, int) (bool, error) { return true, nil }) }},
		{"stage.Filter", func() { stage.Filter(ok, nil) }},
		{"stage.FlatMap", func() { stage.FlatMap[int, int](ok, nil) }},
		{"stage.FlatMap", func() {
			stage.FlatMap(zero, func(context.Context, int) ([]int, error) { return nil, nil })
		}},
		{"stage.Concurrent", func() { stage.Concurrent(stage.Stream[func(context.Context) (int, error)]{}) }},
		{"stage.Merge", func() { stage.Merge(ok, zero) }},
		{"stage.Apply", func() { stage.Apply[int, int](ok, nil) }},
		{"stage.Source", func() { stage.Source[int](nil) }},
		{"stage.AckSource", func() { stage.AckSource[int](nil) }},
		{"stage.Batch", func() { stage.Batch(ok, 0, 0) }},
		{"stage.Batch", func() { stage.Batch(ok, 1, -time.Second) }},
		{"stage.Tee", func() { stage.Tee(ok, 0) }},
		{"stage.Until", func() { stage.Until(ok, nil) }},
		{"stage.KeyBy", func() { stage.KeyBy[int, int](nil) }},
		{"stage.Indexed", func() { stage.Indexed(-1, func(i int) int { return i }) }},
		{"stage.Indexed", func() { stage.Indexed[int](3, nil) }},
		{"stage.Run", func() {
			_ = stage.Run(context.Background(), zero, func(context.Context, int, error) error { return nil })
		}},
		{"stage.Run", func() { _ = stage.Run(context.Background(), ok, nil) }},
		{"source.Func", func() { source.Func[int](nil) }},
		{"source.Chan", func() { source.Chan[int](nil) }},
		{"source.Seq", func() { source.Seq[int](nil) }},
		{"source.Seq2", func() { source.Seq2[int](nil) }},
		{"source.Lines", func() { source.Lines(nil) }},
		{"sink.ForEach", func() { _ = sink.ForEach[int](context.Background(), ok, nil) }},
		{"sink.Reduce", func() { _, _ = sink.Reduce[int, int](context.Background(), ok, 0, nil) }},
		{"sink.Chan", func() { _ = sink.Chan(context.Background(), ok, nil) }},
		// A sink given the zero stream panics in stage.Run, which runs it.
		{"stage.Run", func() { _, _ = sink.Slice(context.Background(), zero) }},
	}
	for _, c := range cases {
		msg := panicMessage(c.build)
		if !strings.HasPrefix(msg, "sluice: "+c.name+":") {
			t.Errorf("%s: panic %q, want a message starting with %q", c.name, msg, "sluice: "+c.name+":")
		}
	}
}
