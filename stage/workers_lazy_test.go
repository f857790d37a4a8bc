package stage_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// lazyLayout is a stage whose workers past the first few dozen start as
// items come: its options, and an input of n items of unknown length.
type lazyLayout struct {
	opts  []stage.Option
	input func(n int) stage.Stream[int]
}

// lazyLayouts are every kind of stage: those that keep their workers as
// goroutines of their own (Ordered, KeyBy, a Buffer), and a plain Map,
// whose calls its consumer may run (fused), over a source that may wait
// (Interruptible: its workers start with the run) and over one that never
// waits (they start at the consumer's first pull).
var lazyLayouts = map[string]lazyLayout{
	"ordered":          {opts: []stage.Option{stage.Ordered()}, input: generator},
	"keyby":            {opts: []stage.Option{stage.KeyBy(func(x int) int { return x })}, input: generator},
	"buffer":           {opts: []stage.Option{stage.Buffer(1)}, input: generator},
	"fused/waiting":    {input: func(n int) stage.Stream[int] { return stage.Interruptible(generator(n)) }},
	"fused/neverwaits": {input: func(n int) stage.Stream[int] { return stage.NeverWaits(generator(n)) }},
}

// run is a Map of the layout with Workers(n) over in.
func (l lazyLayout) run(in stage.Stream[int], f func(context.Context, int) (int, error), n int) stage.Stream[int] {
	return stage.Map(in, f, append(l.opts[:len(l.opts):len(l.opts)], stage.Workers(n))...)
}

// generator is a source of n items whose length the stream does not know.
func generator(n int) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, errEOF
			}
			i++
			return i - 1, nil
		}, nil
	})
}

// barrier returns a function whose first n calls all wait until the n-th
// has arrived (or their context ends), and the count of calls that arrived.
func barrier(n int) (func(context.Context, int) (int, error), *atomic.Int64) {
	var arrived atomic.Int64
	all := make(chan struct{})
	return func(ctx context.Context, x int) (int, error) {
		if arrived.Add(1) == int64(n) {
			close(all)
		}
		select {
		case <-all:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return x, nil
	}, &arrived
}

// The Workers doc: "with enough input ... exactly n" calls at once, also
// for n larger than the workers a stage starts with its run: a barrier of
// all n calls completes, over an input of unknown length with more items
// than workers.
func TestManyWorkersAllRunAtOnceOverAnInputOfUnknownLength(t *testing.T) {
	const workers, items = 150, 400
	for name, l := range lazyLayouts {
		t.Run(name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				f, arrived := barrier(workers)
				ctx, cancel := context.WithTimeout(context.Background(), runcheck.Watchdog/2) // a hang watchdog
				defer cancel()
				got, err := sink.Slice(ctx, l.run(l.input(items), f, workers))
				if err != nil || len(got) != items {
					t.Fatalf("Slice = %d items, %v (%d calls arrived): fewer than %d calls ran at once", len(got), err, arrived.Load(), workers)
				}
			})
		})
	}
}

// The same over a short input: a Workers(1<<30) stage over 3 items, from a
// channel and from the layout's input, neither runs out of memory nor
// starts more than a few dozen goroutines (in a child process: if it tried
// to start them all, the process would die).
func TestHugeWorkersOverAShortInput(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for name, l := range lazyLayouts {
			for _, from := range []string{"chan", "input"} {
				in := l.input(3)
				if from == "chan" {
					ch := make(chan int, 3)
					ch <- 0
					ch <- 1
					ch <- 2
					close(ch)
					in = source.Chan(ch)
				}
				before := runtime.NumGoroutine()
				var mu sync.Mutex
				most := 0
				f := func(_ context.Context, x int) (int, error) {
					mu.Lock()
					most = max(most, runtime.NumGoroutine())
					mu.Unlock()
					return x, nil
				}
				got, err := sink.Slice(context.Background(), l.run(in, f, 1<<30))
				if err != nil || len(got) != 3 {
					t.Fatalf("%s over a %s: Slice = %v, %v", name, from, got, err)
				}
				if most > before+100 {
					t.Errorf("%s over a %s: %d goroutines during a run of 3 items, %d before", name, from, most, before)
				}
			}
		}
	})
}

// A run whose workers are still starting ends cleanly on a failure and on
// a cancellation: the sink returns the error, and (goleak, at the end of
// the package's tests) no goroutine is left.
func TestManyWorkersEndCleanlyWhileStarting(t *testing.T) {
	const workers, items = 300, 2000
	boom := errors.New("boom")
	for name, l := range lazyLayouts {
		t.Run(name+"/fewer-items-than-workers", func(t *testing.T) {
			// The input ends before every place started: the run still
			// ends, with every item.
			done := make(chan int, 1)
			go func() {
				got, err := sink.Slice(context.Background(), l.run(l.input(100), double, workers))
				if err != nil {
					t.Error(err)
				}
				done <- len(got)
			}()
			select {
			case n := <-done:
				if n != 100 {
					t.Fatalf("%d items, want 100", n)
				}
			case <-time.After(time.Minute): // a hang watchdog
				t.Fatal("the run did not end when its input did")
			}
		})
		t.Run(name+"/failfast", func(t *testing.T) {
			f := func(_ context.Context, x int) (int, error) {
				if x == 100 {
					return 0, boom
				}
				return x, nil
			}
			_, err := sink.Slice(context.Background(), l.run(l.input(items), f, workers))
			if !errors.Is(err, boom) {
				t.Fatalf("Slice = %v, want boom", err)
			}
		})
		t.Run(name+"/cancel", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var calls atomic.Int64
			f := func(ctx context.Context, x int) (int, error) {
				if calls.Add(1) == 100 {
					cancel()
				}
				<-ctx.Done()
				return x, nil
			}
			done := make(chan error, 1)
			go func() {
				_, err := sink.Slice(ctx, l.run(l.input(items), f, workers))
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Slice = %v, want context.Canceled", err)
				}
			case <-time.After(time.Minute): // a hang watchdog
				t.Fatal("the cancelled run did not return")
			}
		})
		t.Run(name+"/consumer-of-many-goroutines", func(t *testing.T) {
			// Cheap calls: a fused stage's goroutines give their places to
			// the 100 workers of the next stage, which then see the input
			// end (and must end what was never started).
			const n = 20_000
			done := make(chan int, 1)
			go func() {
				got, err := sink.Slice(context.Background(), stage.Map(l.run(l.input(n), double, workers), double, stage.Workers(100)))
				if err != nil {
					t.Error(err)
				}
				done <- len(got)
			}()
			select {
			case got := <-done:
				if got != n {
					t.Fatalf("%d items, want %d", got, n)
				}
			case <-time.After(time.Minute): // a hang watchdog
				t.Fatal("the run did not end when its input did")
			}
		})
	}
}
