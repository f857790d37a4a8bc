package main

import (
	"time"

	"github.com/sluicedev/sluice/bench"
)

func handMap(in []int, workers int) int {
	return bench.HandMap(bench.FeedSlice(in), workers, double)
}

func handChain(in []int, workers int) int { return bench.HandChain(bench.FeedSlice(in), workers) }

func handFuncMap(n, workers int) int {
	i := 0
	next := func() (int, bool) {
		if i == n {
			return 0, false
		}
		i++
		return i, true
	}
	return bench.HandMap(bench.FeedFunc(next), workers, double)
}

func handMerge(quarter []int) int { return bench.HandMerge(quarter, quarter, quarter, quarter) }

func handSleep(in []int, workers int, d time.Duration) int {
	return bench.HandMap(bench.FeedSlice(in), workers, func(x int) int { time.Sleep(d); return double(x) })
}

// handOrderedMap is the ordered pipeline a user writes by hand: a queue of
// futures (one buffered channel per item) read in order by the consumer,
// which folds the results in it (see fold).
func handOrderedMap(in []int, workers int) int {
	type job struct {
		x   int
		res chan int
	}
	jobs := make(chan job)
	futures := make(chan chan int, workers)
	go func() {
		defer close(jobs)
		defer close(futures)
		for _, x := range in {
			j := job{x, make(chan int, 1)}
			futures <- j.res
			jobs <- j
		}
	}()
	for range workers {
		go func() {
			for j := range jobs {
				j.res <- double(j.x)
			}
		}()
	}
	s := 0
	for f := range futures {
		s = fold(s, <-f)
	}
	return s
}

// handSlice is the per-request fan-out as written by hand: a semaphore
// channel, a goroutine per item, a WaitGroup.
func handSlice(in []int, workers int) []int { return bench.FanOut(in, workers, double) }
