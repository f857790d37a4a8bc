package main

import (
	"time"

	"github.com/sourcegraph/conc/pool"
	"github.com/sourcegraph/conc/stream"
)

// concPoolMap: a result pool, one task (closure) per item.
func concPoolMap(in []int, workers int) int {
	p := pool.NewWithResults[int]().WithMaxGoroutines(workers)
	for _, x := range in {
		p.Go(func() int { return double(x) })
	}
	s := 0
	for _, y := range p.Wait() {
		s += y
	}
	return s
}

// concStreamMap: conc's ordered stream, callbacks run in submission order,
// which fold the doubles in it (see fold).
func concStreamMap(in []int, workers int) int {
	st := stream.New().WithMaxGoroutines(workers)
	s := 0
	for _, x := range in {
		st.Go(func() stream.Callback {
			y := double(x)
			return func() { s = fold(s, y) }
		})
	}
	st.Wait()
	return s
}

func concPoolSleep(in []int, workers int, d time.Duration) int {
	p := pool.NewWithResults[int]().WithMaxGoroutines(workers)
	for _, x := range in {
		p.Go(func() int { time.Sleep(d); return double(x) })
	}
	s := 0
	for _, y := range p.Wait() {
		s += y
	}
	return s
}

// concSlice is the per-request fan-out with conc's result pool: at most
// workers goroutines, results collected into a slice.
func concSlice(in []int, workers int) []int {
	p := pool.NewWithResults[int]().WithMaxGoroutines(workers)
	for _, x := range in {
		p.Go(func() int { return double(x) })
	}
	return p.Wait()
}
