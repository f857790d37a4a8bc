package main

import (
	"context"
	"io"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var ctx = context.Background()

func add(a, b int) int { return a + b }

func sluiceTotal(s stage.Stream[int]) int { return sluiceReduce(s, add) }

func sluiceReduce(s stage.Stream[int], f func(int, int) int) int {
	n, err := sink.Reduce(ctx, s, 0, f)
	if err != nil {
		panic(err)
	}
	return n
}

// sluiceMap sums the doubles of in; ordered, it keeps the input's order and
// folds them in it (see fold).
func sluiceMap(in []int, workers int, ordered bool) int {
	opts := []stage.Option{stage.Workers(workers)}
	f := add
	if ordered {
		opts, f = append(opts, stage.Ordered()), fold
	}
	return sluiceReduce(stage.Map(source.Slice(in), func(_ context.Context, x int) (int, error) { return double(x), nil }, opts...), f)
}

func sluiceChain(in []int, workers int) int {
	w := stage.Workers(workers)
	s := stage.Map(source.Slice(in), func(_ context.Context, x int) (int, error) { return x + 1, nil }, w)
	s = stage.Filter(s, func(_ context.Context, x int) (bool, error) { return x%2 == 0, nil }, w)
	return sluiceTotal(stage.Map(s, func(_ context.Context, x int) (int, error) { return 3 * x, nil }, w))
}

// sluiceFuncMap maps over a generator function; neverWaits says so to
// sluice (stage.NeverWaits), which lets the stage run in its consumer.
func sluiceFuncMap(n, workers int, neverWaits bool) int {
	i := 0
	src := source.Func(func(context.Context) (int, error) {
		if i == n {
			return 0, io.EOF
		}
		i++
		return i, nil
	})
	if neverWaits {
		src = stage.NeverWaits(src)
	}
	return sluiceTotal(stage.Map(src, func(_ context.Context, x int) (int, error) { return double(x), nil }, stage.Workers(workers)))
}

func sluiceMerge(quarter []int) int {
	return sluiceTotal(stage.Merge(source.Slice(quarter), source.Slice(quarter), source.Slice(quarter), source.Slice(quarter)))
}

func sluiceSleep(in []int, workers int, d time.Duration) int {
	return sluiceTotal(stage.Map(source.Slice(in), func(_ context.Context, x int) (int, error) {
		time.Sleep(d)
		return double(x), nil
	}, stage.Workers(workers)))
}

// sluiceSliceMap is the per-request fan-out: a Map into sink.Slice (in the
// input's order if ordered).
func sluiceSliceMap(in []int, workers int, ordered bool) []int {
	opts := []stage.Option{stage.Workers(workers)}
	if ordered {
		opts = append(opts, stage.Ordered())
	}
	out, err := sink.Slice(ctx, stage.Map(source.Slice(in), func(_ context.Context, x int) (int, error) { return double(x), nil }, opts...))
	if err != nil {
		panic(err)
	}
	return out
}

// sluiceSliceConcurrent is the same with Concurrent over tasks.
func sluiceSliceConcurrent(in []int, workers int) []int {
	tasks := make([]func(context.Context) (int, error), len(in))
	for i, x := range in {
		tasks[i] = func(context.Context) (int, error) { return double(x), nil }
	}
	out, err := sink.Slice(ctx, stage.Concurrent(source.Slice(tasks), stage.Workers(workers)))
	if err != nil {
		panic(err)
	}
	return out
}
