package otelmetric_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// New: "sluice.stage.in_flight  items taken and not finished"; "a call cut
// short by the end of the run (another stage's failure, a cancellation) did
// not fail". The caller cancels at every item in turn, from inside that
// item's call, in stages of every shape (KeyBy, Ordered, Buffer, FlatMap,
// Concurrent, a RateLimit wait, a Retry backoff), and runs stop early
// (sink.First, a break out of sink.All) at every item: after each run,
// nothing is in flight, no call counts as an error (no function failed),
// every received call finished, and the series match the engine's calls
// and Stats.
func TestReview34OtelCancelAtEveryPoint(t *testing.T) {
	const n = 12
	reg, obs := r34New(t)
	tp := r34NewTap(obs)
	var stats stage.Stats
	base := stage.Observe(stage.Observe(context.Background(), tp), &stats)
	// f returns a stage function that cancels the run at item k and
	// returns its ctx's error once the run is ending.
	type fn = func(context.Context, int) (int, error)
	mk := func(k int, cancel func()) fn {
		return func(ctx context.Context, v int) (int, error) {
			if v == k {
				cancel()
			}
			if v >= k {
				<-ctx.Done()
				return 0, ctx.Err()
			}
			return v, nil
		}
	}
	shapes := map[string]func(k int, cancel func()) stage.Stream[int]{
		"map": func(k int, c func()) stage.Stream[int] {
			return stage.Map(source.Slice(r34Ints(n)), mk(k, c), stage.Name("c.map"), stage.Workers(4))
		},
		"buffered": func(k int, c func()) stage.Stream[int] {
			return stage.Map(source.Slice(r34Ints(n)), mk(k, c), stage.Name("c.buf"), stage.Workers(3), stage.Buffer(2))
		},
		"ordered": func(k int, c func()) stage.Stream[int] {
			return stage.Map(source.Slice(r34Ints(n)), mk(k, c), stage.Name("c.ord"), stage.Workers(3), stage.Ordered())
		},
		"keyby": func(k int, c func()) stage.Stream[int] {
			return stage.Map(source.Slice(r34Ints(n)), mk(k, c), stage.Name("c.key"), stage.Workers(3),
				stage.KeyBy(func(v int) int { return v % 3 }))
		},
		"flatmap": func(k int, c func()) stage.Stream[int] {
			f := mk(k, c)
			return stage.FlatMap(source.Slice(r34Ints(n)), func(ctx context.Context, v int) ([]int, error) {
				x, err := f(ctx, v)
				return []int{x, x, x}, err
			}, stage.Name("c.flat"), stage.Workers(2))
		},
		"concurrent": func(k int, c func()) stage.Stream[int] {
			f := mk(k, c)
			tasks := stage.Map(source.Slice(r34Ints(n)), func(_ context.Context, v int) (func(context.Context) (int, error), error) {
				return func(ctx context.Context) (int, error) { return f(ctx, v) }, nil
			}, stage.Name("c.mk"), stage.Workers(1)) // tasks in input order: item k before the later ones that wait for the cancel
			return stage.Concurrent(tasks, stage.Name("c.conc"), stage.Workers(3))
		},
		"ratelimit": func(k int, c func()) stage.Stream[int] {
			// One token then one a day: calls after the first wait for a
			// token until the run ends.
			return stage.Map(source.Slice(r34Ints(n)), func(ctx context.Context, v int) (int, error) {
				c()
				return v, nil
			}, stage.Name("c.rate"), stage.Workers(3), stage.RateLimit(1.0/86400, 1))
		},
		"backoff": func(k int, c func()) stage.Stream[int] {
			// Item k fails, and is cancelled as it goes into a day's backoff.
			return stage.Map(source.Slice(r34Ints(n)), func(ctx context.Context, v int) (int, error) {
				if v == k {
					return 0, errR34
				}
				return v, nil
			}, stage.Name("c.back"), stage.Workers(2), stage.RetryIf(2, 24*time.Hour, func(error) bool { c(); return true }))
		},
		"downstream": func(k int, c func()) stage.Stream[int] {
			up := stage.Map(source.Slice(r34Ints(n)), func(_ context.Context, v int) (int, error) { return v, nil },
				stage.Name("c.up"), stage.Workers(1), stage.Buffer(1)) // input order, as above
			return stage.Map(up, mk(k, c), stage.Name("c.down"), stage.Workers(2))
		},
	}
	check := func(label string) {
		t.Helper()
		snap := r34Read(t, reg)
		for key, p := range snap {
			if key.metric == "in_flight" && p.value != 0 {
				t.Errorf("%s: in_flight{%s} = %v after the run", label, key.stage, p.value)
			}
			if key.metric == "finished" && key.outcome == "error" && p.value != 0 {
				t.Errorf("%s: finished{%s,error} = %v: no call failed", label, key.stage, p.value)
			}
		}
	}
	for name, shape := range shapes {
		for k := range n {
			label := fmt.Sprintf("%s/cancel@%d", name, k)
			ctx, cancel := context.WithCancel(base)
			runcheck.Run(t, label, func() { _, _ = sink.Count(ctx, shape(k, cancel)) })
			cancel()
			check(label)
			// Early stops: First, and a break after k+1 items; no cancel.
			label = fmt.Sprintf("%s/first", name)
			never := func() {}
			if name == "ratelimit" || name == "backoff" {
				continue
			}
			runcheck.Run(t, label, func() { _, _, _ = sink.First(base, shape(n, never)) })
			check(label)
			label = fmt.Sprintf("%s/break@%d", name, k)
			runcheck.Run(t, label, func() {
				i := 0
				for range sink.All(base, shape(n, never)) {
					if i++; i > k {
						break
					}
				}
			})
			check(label)
		}
	}
	snap := r34Read(t, reg)
	r34CheckTap(t, snap, tp)
	r34CheckStats(t, snap, &stats)
}
