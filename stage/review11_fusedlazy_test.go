package stage_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// review11Input is an input of n items (0..n-1) under a fusable stage: each
// takes the fused stage down one of its paths. took is called for each item
// the source hands out, before it does.
type review11Input func(n int, took func()) stage.Stream[int]

// review11Inputs: a slice (sized: startIdle starts min(places, items)); a
// NeverWaits source of unknown length (startIdle starts every place, 64 at
// once); a channel, full from the start or fed one value at a time
// (Interruptible: newFuseRunWaiting, one goroutine stays in the source).
func review11Inputs() map[string]review11Input {
	return map[string]review11Input{
		"slice": func(n int, took func()) stage.Stream[int] {
			return stage.Indexed(n, func(i int) int { took(); return i })
		},
		"neverwaits": func(n int, took func()) stage.Stream[int] {
			return stage.NeverWaits(review11Counter(n, took))
		},
		"chan": func(n int, took func()) stage.Stream[int] {
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			close(ch)
			return review11Chan(ch, took)
		},
	}
}

// review11Counter is a source of n items of unknown length that counts
// what it hands out.
func review11Counter(n int, took func()) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, io.EOF
			}
			i++
			took()
			return i - 1, nil
		}, nil
	})
}

// review11Chan is source.Chan that counts the values it hands out.
func review11Chan(ch <-chan int, took func()) stage.Stream[int] {
	return stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(ctx context.Context) (int, error) {
			select {
			case v, ok := <-ch:
				if !ok {
					return 0, io.EOF
				}
				took()
				return v, nil
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			}
		}, nil
	}))
}

// review11Consumers put a consumer after the fused stage up: the sink
// itself (one handle), a plain Map of many workers (fused in turn over a
// NeverWaits input, else a stage of its own goroutines; either way each
// worker place takes a handle of up), one with Buffer(1) (always its own
// goroutines, each with a handle), KeyBy (one shared handle), a Map of few
// workers, a Batch and a Merge (one goroutine of their own pulls).
func review11Consumers() map[string]func(up stage.Stream[int]) stage.Stream[int] {
	inc := func(_ context.Context, x int) (int, error) { return x + 1, nil }
	return map[string]func(stage.Stream[int]) stage.Stream[int]{
		"sink":   func(up stage.Stream[int]) stage.Stream[int] { return up },
		"map100": func(up stage.Stream[int]) stage.Stream[int] { return stage.Map(up, inc, stage.Workers(100)) },
		"buffer100": func(up stage.Stream[int]) stage.Stream[int] {
			return stage.Map(up, inc, stage.Workers(100), stage.Buffer(1))
		},
		"keyby100": func(up stage.Stream[int]) stage.Stream[int] {
			return stage.Map(up, inc, stage.Workers(100), stage.KeyBy(func(x int) int { return x % 7 }))
		},
		"map3":  func(up stage.Stream[int]) stage.Stream[int] { return stage.Map(up, inc, stage.Workers(3)) },
		"batch": func(up stage.Stream[int]) stage.Stream[int] { return stage.Unbatch(stage.Batch(up, 7, 0)) },
		"merge": func(up stage.Stream[int]) stage.Stream[int] { return stage.Merge(up) },
	}
}

// review11Shift is what a consumer adds to each item.
func review11Shift(consumer string) int {
	if consumer == "sink" || consumer == "batch" || consumer == "merge" {
		return 0
	}
	return 1
}

// Every item arrives exactly once through a fused stage of more places
// than start at once, whatever its input and consumer: the stand-in writer
// of the places not started must end the queue neither early (items lost,
// or a handle that sees the end while items remain) nor never (a hang),
// while places start from goroutines and from consumer handles, go to
// handles (cheap calls) and come back (slow ones). Sizes around 64 and
// around the places; calls cheap but for a slow stretch, so that places
// move both ways.
func TestReview11FusedEveryItemOnce(t *testing.T) {
	for iname, input := range review11Inputs() {
		for cname, consumer := range review11Consumers() {
			t.Run(iname+"/"+cname, func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) {
					for _, workers := range []int{65, 300} {
						for _, n := range []int{1, 65, 129, 301, 5000} {
							f := func(_ context.Context, x int) (int, error) {
								if x%1000 >= 200 && x%1000 < 230 {
									time.Sleep(30 * time.Microsecond) // a slow stretch: places go back to goroutines
								}
								return x, nil
							}
							up := stage.Map(input(n, func() {}), f, stage.Workers(workers))
							got, err := sink.Slice(context.Background(), consumer(up))
							if err != nil || len(got) != n {
								t.Fatalf("workers=%d n=%d: Slice = %d items, %v; want %d", workers, n, len(got), err, n)
							}
							slices.Sort(got)
							shift := review11Shift(cname)
							for i, v := range got {
								if v != i+shift {
									t.Fatalf("workers=%d n=%d: got[%d] = %d, want %d", workers, n, i, v, i+shift)
								}
							}
						}
					}
				})
			})
		}
	}
}

// The read-ahead bound: a fused stage of n places never holds more than n
// items its consumer has not taken, also while its places start one by one
// (a place started by more brings one token: a fused queue has one per
// goroutine, and a handle's place none). When the source hands out an
// item, the items it handed out (this one too) minus those the sink's
// callback began on is at most n, plus one handed to the sink while it
// waited (taken at once, as stage.Run says). The callback yields a few times per item
// so that the stage runs ahead of it.
func TestReview11FusedReadAheadBound(t *testing.T) {
	const workers, n = 100, 20000
	for iname, input := range review11Inputs() {
		t.Run(iname, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				for _, slow := range []bool{false, true} {
					var pulled, began, worst atomic.Int64
					took := func() {
						d := pulled.Add(1) - began.Load()
						for w := worst.Load(); d > w && !worst.CompareAndSwap(w, d); w = worst.Load() {
						}
					}
					f := func(_ context.Context, x int) (int, error) {
						if slow && x%3 == 0 {
							time.Sleep(30 * time.Microsecond) // keep some places with goroutines
						}
						return x, nil
					}
					err := sink.ForEach(context.Background(), stage.Map(input(n, took), f, stage.Workers(workers)), func(context.Context, int) error {
						began.Add(1)
						for range 3 {
							runtime.Gosched()
						}
						return nil
					})
					if err != nil {
						t.Fatalf("slow=%v: ForEach = %v", slow, err)
					}
					// The n places, and one item handed to the sink while it
					// waited, which is taken (stage.Run) before f begins it.
					if w := worst.Load(); w > workers+1 {
						t.Fatalf("slow=%v: %d items taken from the source and not yet begun by the sink, past the %d places and the one in its hands", slow, w, workers)
					}
				}
			})
		})
	}
}

// "with enough input and a consumer that keeps up exactly n" calls at once,
// for n past the 64 places a fused stage starts at once, down the paths
// the package's barrier tests do not take: a slice (startIdle sizes the
// run by the items left) and a channel (Interruptible: the places start
// with the run, then as items are taken). (The package's "waiting" input,
// a plain Source, is not fused at all.) Each call waits for all n.
func TestReview11FusedBarrierOfAllPlaces(t *testing.T) {
	const workers, items = 150, 400
	for iname, input := range review11Inputs() {
		if iname == "neverwaits" {
			continue // TestManyWorkersAllRunAtOnceOverAnInputOfUnknownLength, fused/neverwaits
		}
		t.Run(iname, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				f, arrived := barrier(workers)
				ctx, cancel := context.WithTimeout(context.Background(), runcheck.Watchdog/2) // a hang watchdog
				defer cancel()
				got, err := sink.Slice(ctx, stage.Map(input(items, func() {}), f, stage.Workers(workers)))
				if err != nil || len(got) != items {
					t.Fatalf("Slice = %d items, %v (%d calls arrived): fewer than %d calls ran at once", len(got), err, arrived.Load(), workers)
				}
			})
		})
	}
}

// A drain (Until) while the places still start: every item the source
// handed out reaches the sink, and the run ends with nil. An item lost in
// a queue that ended early, or a handle that saw the end of the stage
// while a place still had items, shows as fewer items delivered than
// taken. stop is done from the stage's function after k calls, with many
// of the places not started yet.
func TestReview11FusedDrainWhilePlacesStart(t *testing.T) {
	const workers, n = 300, 100_000
	for iname, input := range review11Inputs() {
		for cname, consumer := range review11Consumers() {
			t.Run(iname+"/"+cname, func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) {
					for _, k := range []int64{1, 10, 70, 200, 1000} {
						stop, drain := context.WithCancel(context.Background())
						var pulled, calls atomic.Int64
						f := func(_ context.Context, x int) (int, error) {
							if calls.Add(1) == k {
								drain()
							}
							return x, nil
						}
						up := stage.Map(stage.Until(input(n, func() { pulled.Add(1) }), stop), f, stage.Workers(workers))
						got, err := sink.Slice(context.Background(), consumer(up))
						drain()
						if err != nil || int64(len(got)) != pulled.Load() {
							t.Fatalf("k=%d: Slice = %d items, %v; the source handed out %d", k, len(got), err, pulled.Load())
						}
						slices.Sort(got)
						if len(slices.Compact(got)) != len(got) {
							t.Fatalf("k=%d: an item arrived twice", k)
						}
					}
				})
			})
		}
	}
}

// Runs that end early while the places still start, over every input and
// consumer: the first item (sink.First), a stop from the sink's callback
// (ErrStop), a cancellation and a failure from the stage's function after
// k calls. Each returns what it must, no run hangs, and (goleak, in
// TestMain of the child) no goroutine is left: a place started by more
// after the end sees it and exits.
func TestReview11FusedEndsEarlyWhilePlacesStart(t *testing.T) {
	const workers, n = 300, 20_000
	boom := errors.New("boom")
	for iname, input := range review11Inputs() {
		for cname, consumer := range review11Consumers() {
			t.Run(iname+"/"+cname, func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) {
					for _, k := range []int64{1, 65, 2000} {
						up := stage.Map(input(n, func() {}), double, stage.Workers(workers))
						if _, ok, err := sink.First(context.Background(), consumer(up)); !ok || err != nil {
							t.Fatalf("First = %v, %v", ok, err)
						}

						var seen atomic.Int64
						up = stage.Map(input(n, func() {}), double, stage.Workers(workers))
						err := sink.ForEach(context.Background(), consumer(up), func(context.Context, int) error {
							if seen.Add(1) == k {
								return stage.ErrStop
							}
							return nil
						})
						if err != nil || seen.Load() != k {
							t.Fatalf("k=%d: ErrStop: ForEach = %v after %d items", k, err, seen.Load())
						}

						ctx, cancel := context.WithCancel(context.Background())
						var calls atomic.Int64
						cancelling := func(_ context.Context, x int) (int, error) {
							if calls.Add(1) == k {
								cancel()
							}
							return x, nil
						}
						_, err = sink.Slice(ctx, consumer(stage.Map(input(n, func() {}), cancelling, stage.Workers(workers))))
						cancel()
						if !errors.Is(err, context.Canceled) {
							t.Fatalf("k=%d: cancelled: Slice = %v", k, err)
						}

						calls.Store(0)
						failing := func(_ context.Context, x int) (int, error) {
							if calls.Add(1) == k {
								return 0, boom
							}
							return x, nil
						}
						if _, err := sink.Slice(context.Background(), consumer(stage.Map(input(n, func() {}), failing, stage.Workers(workers)))); !errors.Is(err, boom) {
							t.Fatalf("k=%d: failed: Slice = %v", k, err)
						}
					}
				})
			})
		}
	}
}

// A goroutine that gives its place to a consumer's handle is not leaving
// for good: the places not started yet are still needed. Over a channel
// (Interruptible), the first 500 values have cheap calls, so that a
// goroutine of the stage retires into the sink's handle while most of the
// 2000 places have not started; only once the sink has taken all 500 (so
// that no output of the stage waits behind a consumer inside a call: the
// Workers caveat does not apply) come 2100 more values whose calls wait
// until 1999 of them run at once. (Not 2000: the sink's handle, which
// holds a place, may wait for an output instead of asking the channel, a
// limit of the Interruptible path older than the lazy start.) A retire
// that gave up the places not started (applier.noMore) leaves the barrier
// short for ever: the places stop near the hundred started by then.
func TestReview11FusedBarrierAfterARetire(t *testing.T) {
	const workers, cheap = 2000, 500
	const items, wall = cheap + workers + 100, workers - 1
	runcheck.InChildTest(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), runcheck.Watchdog/2) // a hang watchdog
		defer cancel()
		ch := make(chan int, items)
		sawCheap := make(chan struct{})
		fed := make(chan struct{})
		go func() {
			defer close(fed)
			for i := range cheap {
				ch <- i
			}
			select {
			case <-sawCheap:
			case <-ctx.Done():
				return
			}
			for i := cheap; i < items; i++ {
				ch <- i
			}
			close(ch)
		}()
		meet, arrived := barrier(wall)
		f := func(ctx context.Context, x int) (int, error) {
			if x < cheap {
				return x, nil
			}
			return meet(ctx, x)
		}
		var got atomic.Int64
		err := sink.ForEach(ctx, stage.Map(review11Chan(ch, func() {}), f, stage.Workers(workers)), func(context.Context, int) error {
			if got.Add(1) == cheap {
				close(sawCheap)
			}
			return nil
		})
		<-fed
		if err != nil || got.Load() != items {
			t.Fatalf("ForEach = %v after %d items of %d (%d calls arrived): fewer than %d calls ran at once", err, got.Load(), items, arrived.Load(), wall)
		}
	})
}
