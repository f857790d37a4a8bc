// Package bench holds sluice's benchmarks and the hand-written baselines
// they are measured against (exported so that bench/compare runs the same
// code). Each one runs a sluice pipeline
// and the equivalent hand-written pipeline (unbuffered channels and a
// sync.WaitGroup worker pool, as a user would write it) in the same binary,
// and reports ns/item and allocs/item, so that ratios hold on a noisy
// machine:
//
//	go test -run '^$' -bench . -benchtime 20x ./bench
package bench
