package otelmetric_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR34 = errors.New("review34 item error")

func r34Ints(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// r34Runs runs a mix of pipelines (every stage kind that calls a function,
// every policy, Retry, RateLimit, KeyBy and its key panic, Ordered, Buffer,
// outputs that wait for room, FailFast, a panic, a cancellation, an early
// stop, names shared between pipelines and kinds), concurrently, with ctx.
func r34Runs(t *testing.T, ctx context.Context) {
	a := func() stage.Stream[int] {
		m := stage.Map(source.Slice(r34Ints(120)), func(_ context.Context, v int) (int, error) {
			if v%11 == 0 {
				return 0, errR34
			}
			return v, nil
		}, stage.Name("retry"), stage.Retry(3, 50*time.Microsecond), stage.KeyBy(func(v int) int { return v % 5 }),
			stage.Ordered(), stage.Workers(4), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
		fm := stage.FlatMap(m, func(_ context.Context, v int) ([]int, error) {
			if v%13 == 0 {
				panic("review34 flatmap")
			}
			return []int{v, v + 1, v + 2}, nil
		}, stage.Name("fan"), stage.Workers(2), stage.OnError(stage.Forward))
		return stage.Filter(fm, func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil },
			stage.Name("shared"), stage.RateLimit(50000, 1), stage.Workers(3))
	}
	b := func() stage.Stream[int] {
		tasks := stage.Map(source.Slice(r34Ints(60)), func(_ context.Context, v int) (func(context.Context) (int, error), error) {
			if v%9 == 0 {
				return nil, nil
			}
			return func(context.Context) (int, error) {
				if v%10 == 0 {
					return 0, errR34
				}
				return v, nil
			}, nil
		}, stage.Name("shared"), stage.Workers(2))
		return stage.Concurrent(tasks, stage.Name("tasks"), stage.Workers(5), stage.OnError(stage.Budget(100, nil)))
	}
	c := func() stage.Stream[int] {
		ap := stage.Apply(source.Slice(r34Ints(40)), func(_ context.Context, v int, emit func(int) bool) error {
			for i := range 5 {
				if !emit(v*5 + i) {
					return errR34
				}
			}
			return nil
		}, stage.Name("apply"), stage.Workers(3))
		return stage.Unbatch(stage.Batch(ap, 7, 0))
	}
	d := func() stage.Stream[int] {
		return stage.Map(source.Slice(r34Ints(30)), func(_ context.Context, v int) (int, error) { return v, nil },
			stage.Name("keypanic"), stage.Workers(3), stage.KeyBy(func(v int) int {
				if v%8 == 3 {
					panic("review34 key")
				}
				return v % 2
			}), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	}
	e := func() stage.Stream[int] {
		m := stage.Map(source.Slice(r34Ints(100)), func(_ context.Context, v int) (int, error) {
			if v == 50 {
				panic("review34 failfast")
			}
			return v, nil
		}, stage.Name("ff"), stage.Workers(4))
		return stage.Map(m, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("after"), stage.Workers(2))
	}
	var wg sync.WaitGroup
	run := func(label string, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runcheck.NoHang(t, label, f)
		}()
	}
	for i := range 3 {
		run(fmt.Sprint("a", i), func() { _, _ = sink.Count(ctx, a()) })
		run(fmt.Sprint("b", i), func() { _, _ = sink.Count(ctx, b()) })
		run(fmt.Sprint("c", i), func() {
			_ = sink.ForEach(ctx, c(), func(context.Context, int) error { return nil })
		})
		run(fmt.Sprint("d", i), func() { _, _ = sink.Slice(ctx, d()) })
		run(fmt.Sprint("e", i), func() { _, _ = sink.Count(ctx, e()) })
		run(fmt.Sprint("first", i), func() { _, _, _ = sink.First(ctx, a()) })
		run(fmt.Sprint("break", i), func() {
			n := 0
			for range sink.All(ctx, b()) {
				if n++; n == 7 {
					break
				}
			}
		})
		run(fmt.Sprint("cancel", i), func() {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			m := stage.Map(source.Slice(r34Ints(80)), func(fctx context.Context, v int) (int, error) {
				if v == 30 {
					cancel()
				}
				if v >= 30 {
					<-fctx.Done()
					return 0, fctx.Err()
				}
				return v, nil
			}, stage.Name("cancel"), stage.Workers(4), stage.Buffer(1))
			_, _ = sink.Count(cctx, m)
		})
	}
	wg.Wait()
}

// New: "sluice.stage.received  items taken for a call",
// "sluice.stage.finished  calls ended; outcome "ok" or "error"",
// "sluice.stage.in_flight  items taken and not finished",
// "sluice.stage.duration  call durations (all attempts)";
// "A call's outcome is "error" when its item failed ... and "ok"
// otherwise"; "The duration histogram's buckets are in seconds, from 1 µs
// to about 4 s, each bound 4 times the one before. A call's duration is the
// stage.Watcher's latency". A tap between the engine and the adapter
// records every Received and Finished(latency, err): each series must
// match it exactly (count, sum, every bucket), and match stage.Stats.
func TestReview34OtelExactPerCall(t *testing.T) {
	reg, obs := r34New(t)
	tp := r34NewTap(obs)
	var stats stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), tp), &stats)
	r34Runs(t, ctx)
	snap := r34Read(t, reg)
	r34CheckTap(t, snap, tp)
	r34CheckStats(t, snap, &stats)
	// Every series belongs to a stage the engine announced.
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for k := range snap {
		if tp.st[[2]string{k.stage, k.kind}] == nil {
			t.Errorf("series %+v for a stage never announced", k)
		}
	}
	// The runs did what they were built for (else the test proves little).
	for _, k := range [][2]string{{"retry", "map"}, {"fan", "flatmap"}, {"tasks", "concurrent"}, {"keypanic", "map"}, {"ff", "map"}} {
		if r := tp.st[k]; r == nil || r.failed == 0 {
			t.Errorf("stage %v: no failed call seen", k)
		}
	}
	for _, k := range [][2]string{{"shared", "filter"}, {"shared", "map"}, {"apply", "apply"}, {"after", "map"}, {"cancel", "map"}} {
		if r := tp.st[k]; r == nil || r.ok == 0 {
			t.Errorf("stage %v: no call seen", k)
		}
	}
}
