package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestRecycledStatesServeConcurrentRuns: a run's per-stage state (and its
// sink's batch) goes back to a pool when the run finishes and serves a
// later run. Many runs at once, of every fused shape (Map, Filter, FlatMap,
// Concurrent; over a slice, over a channel, which an Interruptible source
// fuses at open; with more workers than the state has room for; with a
// sink batch that may outgrow what the pool keeps) and every way of ending
// (the end of the input, a failure, an early stop, a cancellation, a
// panic, an ErrStop), each check their exact result: a state that one run still used after another took it
// would mix their items, lose some or hang. In a child process, the only
// place in this package's tests where states are reused (see
// recycle_internal_test.go), so that a crash fails this test only.
func TestRecycledStatesServeConcurrentRuns(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		return runcheck.OnGoroutines(8, func(g int) string {
			for i := range 400 {
				if msg := recycledRun(g, i); msg != "" {
					return fmt.Sprintf("run %d: %s", i, msg)
				}
			}
			return ""
		})
	})
	if parent && out != "ok" {
		t.Fatalf("runs over recycled states went wrong: %s", out)
	}
}

var errRecycled = errors.New("item failed")

// recycledRun runs one small run, its shape and size chosen by (g, i), and
// returns what was wrong with its result, or "".
func recycledRun(g, i int) string {
	ctx := context.Background()
	n := []int{0, 1, 2, 3, 10, 37}[(g+i)%6]
	w := stage.Workers([]int{1, 2, 4}[i%3])
	in := ints(n)
	want := func(f func(int) int) []int {
		out := make([]int, 0, n)
		for _, x := range in {
			out = append(out, f(x))
		}
		return out
	}
	sameSet := func(got, want []int, err error) string {
		if err != nil {
			return fmt.Sprintf("error %v", err)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Sprintf("got %v, want %v", got, want)
		}
		return ""
	}
	switch i % 12 {
	case 0: // Map
		got, err := sink.Slice(ctx, stage.Map(source.Slice(in), double, w))
		return sameSet(got, want(func(x int) int { return 2 * x }), err)
	case 1: // a chain of fused stages, another type in the middle
		s := stage.Map(source.Slice(in), func(_ context.Context, x int) (string, error) { return strconv.Itoa(x + g), nil }, w)
		s = stage.Filter(s, func(context.Context, string) (bool, error) { return true, nil }, w)
		got, err := sink.Slice(ctx, stage.Map(s, func(_ context.Context, v string) (int, error) { x, err := strconv.Atoi(v); return x - g, err }, w))
		return sameSet(got, in, err)
	case 2: // FlatMap
		got, err := sink.Slice(ctx, stage.FlatMap(source.Slice(in), func(_ context.Context, x int) ([]int, error) { return []int{x, x}, nil }, w))
		var wantTwice []int
		for _, x := range in {
			wantTwice = append(wantTwice, x, x)
		}
		return sameSet(got, wantTwice, err)
	case 3: // Concurrent
		tasks := make([]func(context.Context) (int, error), n)
		for k := range tasks {
			tasks[k] = func(context.Context) (int, error) { return k + 1, nil }
		}
		got, err := sink.Slice(ctx, stage.Concurrent(source.Slice(tasks), w))
		return sameSet(got, want(func(x int) int { return x + 1 }), err)
	case 4: // a FailFast failure at the last item
		if n == 0 {
			return ""
		}
		_, err := sink.Slice(ctx, stage.Map(source.Slice(in), func(_ context.Context, x int) (int, error) {
			if x == n-1 {
				return 0, errRecycled
			}
			return x, nil
		}, w))
		var se *stage.Error
		if !errors.Is(err, errRecycled) || !errors.As(err, &se) || se.Index != n-1 {
			return fmt.Sprintf("error %v, want item %d's failure", err, n-1)
		}
	case 5: // an early stop
		got, ok, err := sink.First(ctx, stage.Map(source.Slice(in), double, w))
		if err != nil || ok != (n > 0) || got%2 != 0 || got >= 2*max(n, 1) {
			return fmt.Sprintf("First: %v, %v, %v", got, ok, err)
		}
	case 6: // the parent cancelled from inside a call
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, err := sink.Slice(cctx, stage.Map(source.Slice(in), func(_ context.Context, x int) (int, error) {
			cancel()
			return x, nil
		}, w))
		if n > 0 && !errors.Is(err, context.Canceled) {
			return fmt.Sprintf("cancelled run: %v", err)
		}
	case 7: // a panic in the function
		if n == 0 {
			return ""
		}
		_, err := sink.Slice(ctx, stage.Map(source.Slice(in), func(context.Context, int) (int, error) { panic("boom") }, w))
		var pe *stage.PanicError
		if !errors.As(err, &pe) {
			return fmt.Sprintf("panicking run: %v", err)
		}
	case 9: // over a channel: an Interruptible source, fused at open
		ch := make(chan int)
		go func() {
			defer close(ch)
			for _, x := range in {
				ch <- x
			}
		}()
		got, err := sink.Slice(ctx, stage.Map(source.Chan(ch), double, w))
		return sameSet(got, want(func(x int) int { return 2 * x }), err)
	case 10: // more workers than the state has room for steppers
		got, err := sink.Slice(ctx, stage.Map(source.Slice(in), double, stage.Workers(8)))
		return sameSet(got, want(func(x int) int { return 2 * x }), err)
	case 11: // many items ready at once: the sink's batch may outgrow what the pool keeps
		big := ints(300 + g)
		got, err := sink.Slice(ctx, stage.FlatMap(source.Slice(big), func(_ context.Context, x int) ([]int, error) { return []int{x}, nil }, stage.Workers(2), stage.Buffer(300)))
		return sameSet(got, big, err)
	case 8: // the sink stops with ErrStop after the first item
		seen := 0
		err := sink.ForEach(ctx, stage.Map(source.Slice(in), double, w), func(context.Context, int) error {
			seen++
			return stage.ErrStop
		})
		if err != nil || seen != min(n, 1) {
			return fmt.Sprintf("ErrStop: saw %d, %v", seen, err)
		}
	}
	return ""
}
