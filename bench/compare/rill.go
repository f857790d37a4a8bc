package main

import (
	"time"

	"github.com/destel/rill"
)

func rillTotal(in <-chan rill.Try[int]) int { return rillReduce(in, add) }

func rillReduce(in <-chan rill.Try[int], f func(int, int) int) int {
	s := 0
	if err := rill.ForEach(in, 1, func(x int) error { s = f(s, x); return nil }); err != nil {
		panic(err)
	}
	return s
}

// rillMap sums the doubles of in; ordered, it keeps the input's order and
// folds them in it (see fold).
func rillMap(in []int, workers int, ordered bool) int {
	f := func(x int) (int, error) { return double(x), nil }
	if ordered {
		return rillReduce(rill.OrderedMap(rill.FromSlice(in, nil), workers, f), fold)
	}
	return rillTotal(rill.Map(rill.FromSlice(in, nil), workers, f))
}

func rillChain(in []int, workers int) int {
	s := rill.Map(rill.FromSlice(in, nil), workers, func(x int) (int, error) { return x + 1, nil })
	s = rill.Filter(s, workers, func(x int) (bool, error) { return x%2 == 0, nil })
	return rillTotal(rill.Map(s, workers, func(x int) (int, error) { return 3 * x, nil }))
}

func rillFuncMap(n, workers int) int {
	src := rill.Generate(func(send func(int), _ func(error)) {
		for i := range n {
			send(i + 1)
		}
	})
	return rillTotal(rill.Map(src, workers, func(x int) (int, error) { return double(x), nil }))
}

func rillMerge(quarter []int) int {
	return rillTotal(rill.Merge(rill.FromSlice(quarter, nil), rill.FromSlice(quarter, nil), rill.FromSlice(quarter, nil), rill.FromSlice(quarter, nil)))
}

func rillSleep(in []int, workers int, d time.Duration) int {
	return rillTotal(rill.Map(rill.FromSlice(in, nil), workers, func(x int) (int, error) {
		time.Sleep(d)
		return double(x), nil
	}))
}

// rillSlice is the per-request fan-out with rill: Map over the slice, the
// results collected with ToSlice (in completion order).
func rillSlice(in []int, workers int) []int {
	out, err := rill.ToSlice(rill.Map(rill.FromSlice(in, nil), workers, func(x int) (int, error) { return double(x), nil }))
	if err != nil {
		panic(err)
	}
	return out
}
