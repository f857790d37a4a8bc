package bench

import (
	"sync"
	"sync/atomic"
)

// The hand-written baselines: what a Go user writes without a library,
// idiomatic unbuffered channels and a sync.WaitGroup worker pool. Each
// returns a checksum so that the benchmarks can check the work was done.

// FeedSlice sends xs on a new unbuffered channel from a goroutine.
func FeedSlice(xs []int) <-chan int {
	in := make(chan int)
	go func() {
		defer close(in)
		for _, x := range xs {
			in <- x
		}
	}()
	return in
}

// FeedFunc sends what next produces until it reports false.
func FeedFunc(next func() (int, bool)) <-chan int {
	in := make(chan int)
	go func() {
		defer close(in)
		for {
			x, ok := next()
			if !ok {
				return
			}
			in <- x
		}
	}()
	return in
}

// Pool runs workers goroutines that apply f to every input and send each
// result f keeps on the returned channel, closed when all are done.
func Pool(in <-chan int, workers int, f func(int) (int, bool)) <-chan int {
	out := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := range in {
				if y, keep := f(x); keep {
					out <- y
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// Sum receives every value of in and returns their sum.
func Sum(in <-chan int) int {
	s := 0
	for y := range in {
		s += y
	}
	return s
}

// HandMap is a one-stage pipeline: in, a pool of workers applying f, and
// a consumer that sums the results.
func HandMap(in <-chan int, workers int, f func(int) int) int {
	return Sum(Pool(in, workers, func(x int) (int, bool) { return f(x), true }))
}

// HandChain is map (+1), filter (even), map (×3), each a pool of its own,
// summed.
func HandChain(in <-chan int, workers int) int {
	a := Pool(in, workers, func(x int) (int, bool) { return x + 1, true })
	b := Pool(a, workers, func(x int) (int, bool) { return x, x%2 == 0 })
	return Sum(Pool(b, workers, func(x int) (int, bool) { return x * 3, true }))
}

// HandFlatMap turns each input x into x, x+1, ..., x+fan-1, summed.
func HandFlatMap(in <-chan int, workers, fan int) int {
	out := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := range in {
				for k := range fan {
					out <- x + k
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return Sum(out)
}

// HandMerge sums the values of the slices xss as a user merges them by
// hand: one goroutine per slice sending straight to a shared unbuffered
// channel (one hand-off per item), summed by the caller.
func HandMerge(xss ...[]int) int {
	out := make(chan int)
	var wg sync.WaitGroup
	for _, xs := range xss {
		wg.Go(func() {
			for _, x := range xs {
				out <- x
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return Sum(out)
}

// ParallelLoop is the channel-free floor: workers claim indexes with an
// atomic counter and keep partial sums.
func ParallelLoop(xs []int, workers int, f func(int) int) int {
	var next atomic.Int64
	sums := make([]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := 0
			for {
				i := int(next.Add(1) - 1)
				if i >= len(xs) {
					break
				}
				s += f(xs[i])
			}
			sums[w] = s
		}()
	}
	wg.Wait()
	total := 0
	for _, s := range sums {
		total += s
	}
	return total
}

// FanOut is the per-request fan-out as it is written by hand: at most
// workers goroutines at once (a semaphore channel), one per item, each
// result in its slot, a WaitGroup to wait for them. It is what errgroup
// with SetLimit does, without the error.
func FanOut(xs []int, workers int, f func(int) int) []int {
	out := make([]int, len(xs))
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i, x := range xs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = f(x)
		}()
	}
	wg.Wait()
	return out
}
