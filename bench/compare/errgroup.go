package main

import (
	"context"
	"time"

	"golang.org/x/sync/errgroup"
)

// errgroupMap: SetLimit(workers), one goroutine per item, results on a
// channel that the caller's goroutine sums.
func errgroupMap(in []int, workers int) int {
	return errgroupRun(in, workers, double)
}

func errgroupSleep(in []int, workers int, d time.Duration) int {
	return errgroupRun(in, workers, func(x int) int { time.Sleep(d); return double(x) })
}

func errgroupRun(in []int, workers int, f func(int) int) int {
	var g errgroup.Group
	g.SetLimit(workers)
	out := make(chan int)
	go func() {
		for _, x := range in {
			g.Go(func() error { out <- f(x); return nil })
		}
		_ = g.Wait()
		close(out)
	}()
	s := 0
	for y := range out {
		s += y
	}
	return s
}

// errgroupSlice is the per-request fan-out as errgroup users write it:
// SetLimit, one goroutine per item, each result in its slot.
func errgroupSlice(in []int, workers int) []int {
	out := make([]int, len(in))
	var g errgroup.Group
	g.SetLimit(workers)
	for i, x := range in {
		g.Go(func() error { out[i] = double(x); return nil })
	}
	_ = g.Wait()
	return out
}

// errgroupSliceCtx is the same fan-out as errgroup users write it when the
// first error should cancel the calls still running (what a sluice run
// does): WithContext, and each call gets the group's ctx.
func errgroupSliceCtx(in []int, workers int) []int {
	out := make([]int, len(in))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i, x := range in {
		g.Go(func() error {
			v, err := doubleCtx(gctx, x)
			if err != nil {
				return err
			}
			out[i] = v
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		panic(err)
	}
	return out
}

// doubleCtx is double as a call that could fail or watch its ctx (it does
// neither), the shape of a sluice stage's function.
func doubleCtx(_ context.Context, x int) (int, error) { return double(x), nil }
