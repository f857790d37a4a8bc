package bench

import "sync"

// handMap is the baseline: a source goroutine, workers reading an unbuffered
// channel, an unbuffered output channel, and a closer goroutine.
func handMap(xs []int, workers int, f func(int) int) int {
	in := make(chan int)
	out := make(chan int)
	go func() {
		defer close(in)
		for _, x := range xs {
			in <- x
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := range in {
				out <- f(x)
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	sum := 0
	for y := range out {
		sum += y
	}
	return sum
}
