package bench

import (
	"sync"
	"sync/atomic"
)

// The hand-written baselines: what a Go user writes without a library,
// idiomatic unbuffered channels and a sync.WaitGroup worker pool. Each
// returns a checksum so that the benchmarks can check the work was done.

// feedSlice sends xs on a new unbuffered channel from a goroutine.
func feedSlice(xs []int) <-chan int {
	in := make(chan int)
	go func() {
		defer close(in)
		for _, x := range xs {
			in <- x
		}
	}()
	return in
}

// feedFunc sends what next produces until it reports false.
func feedFunc(next func() (int, bool)) <-chan int {
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

// pool runs workers goroutines that apply f to every input and send each
// result on the returned channel, which is closed when all are done.
func pool(in <-chan int, workers int, f func(int) (int, bool)) <-chan int {
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

func sum(in <-chan int) int {
	s := 0
	for y := range in {
		s += y
	}
	return s
}

// handMap: source goroutine, worker pool, consumer.
func handMap(in <-chan int, workers int, f func(int) int) int {
	return sum(pool(in, workers, func(x int) (int, bool) { return f(x), true }))
}

// handChain: map, filter, map, each a pool of its own.
func handChain(in <-chan int, workers int) int {
	a := pool(in, workers, func(x int) (int, bool) { return x + 1, true })
	b := pool(a, workers, func(x int) (int, bool) { return x, x%2 == 0 })
	return sum(pool(b, workers, func(x int) (int, bool) { return x * 3, true }))
}

// handFlatMap: each input becomes fan outputs.
func handFlatMap(in <-chan int, workers, fan int) int {
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
	return sum(out)
}

// handMerge: one goroutine per input forwarding to a shared channel.
func handMerge(ins ...<-chan int) int {
	out := make(chan int)
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := range in {
				out <- x
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return sum(out)
}

// parallelLoop is the channel-free floor: workers claim indexes with an
// atomic counter and keep partial sums.
func parallelLoop(xs []int, workers int, f func(int) int) int {
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
