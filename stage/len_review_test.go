package stage_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestLenOneForOne: Len's doc: a source.Slice or Indexed source of n
// items, through stages that give one item per item (Map, Concurrent),
// carries n; a Filter, FlatMap, Apply, Batch, Merge or Tee makes it unknown.
func TestLenOneForOne(t *testing.T) {
	src := func() stage.Stream[int] { return source.Slice([]int{1, 2, 3}) }
	task := func(x int) func(context.Context) (int, error) {
		return func(context.Context) (int, error) { return x, nil }
	}
	cases := []struct {
		name string
		s    stage.Stream[int]
	}{
		{"Indexed", stage.Indexed(3, func(i int) int { return i })},
		{"Map Ordered Buffer", stage.Map(src(), double, stage.Workers(3), stage.Ordered(), stage.Buffer(2))},
		{"Map Timeout Retry", stage.Map(src(), double, stage.Timeout(time.Hour), stage.Retry(2, 0))},
		{"Map KeyBy", stage.Map(src(), double, stage.KeyBy(func(x int) int { return x % 2 }))},
		{"Map Forward", stage.Map(src(), double, stage.OnError(stage.Forward))},
		{"Concurrent", stage.Concurrent(stage.Map(src(), func(_ context.Context, x int) (func(context.Context) (int, error), error) { return task(x), nil }))},
		{"Until", stage.Until(src(), context.Background())},
		{"Map over Until", stage.Map(stage.Until(src(), context.Background()), double)},
	}
	for _, c := range cases {
		if got := c.s.Len(); got != 3 {
			t.Errorf("%s: Len() = %d, want 3", c.name, got)
		}
	}
	for _, c := range []struct {
		name string
		s    stage.Stream[int]
	}{
		{"Unbatch of Batch", stage.Unbatch(stage.Batch(src(), 2, 0))},
		{"Merge", stage.Merge(src(), src())},
		{"Apply", stage.Apply(src(), func(_ context.Context, x int, emit func(int) bool) error { emit(x); return nil })},
		{"Tee branch 0", stage.Tee(src(), 2)[0]},
		{"Map over Tee branch 1", stage.Map(stage.Tee(src(), 2)[1], double)},
	} {
		if got := c.s.Len(); got != -1 {
			t.Errorf("%s: Len() = %d, want -1", c.name, got)
		}
	}
}

// r2Allocated runs f and returns the bytes it allocated (TotalAlloc; other
// goroutines of the test binary are idle).
func r2Allocated(f func()) uint64 {
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestLenHugeIndexedEarlyEnd: a stream of Len math.MaxInt that ends
// after a few items (a FailFast error, the parent cancelled, sink.First,
// ErrStop) must not allocate for its announced length: sink.Slice makes
// room for at most 4096 values, Run's batch for at most 16.
func TestLenHugeIndexedEarlyEnd(t *testing.T) {
	huge := func() stage.Stream[int] { return stage.Indexed(math.MaxInt, func(i int) int { return i }) }
	failAt := func(_ context.Context, x int) (int, error) {
		if x == 5 {
			return 0, errR2
		}
		return x, nil
	}
	for _, c := range []struct {
		name string
		run  func() error
	}{
		{"Slice of a failing Map W1", func() error {
			_, err := sink.Slice(context.Background(), stage.Map(huge(), failAt, stage.Workers(1)))
			return err
		}},
		{"Slice of a failing Map W4 (fused)", func() error {
			_, err := sink.Slice(context.Background(), stage.Map(huge(), failAt, stage.Workers(4)))
			return err
		}},
		{"Slice of a failing Ordered Map W4", func() error {
			_, err := sink.Slice(context.Background(), stage.Map(huge(), failAt, stage.Workers(4), stage.Ordered()))
			return err
		}},
		{"First of a Map", func() error {
			_, _, err := sink.First(context.Background(), stage.Map(huge(), double, stage.Workers(4)))
			return err
		}},
		{"Run ErrStop of the bare source", func() error {
			n := 0
			return stage.Run(context.Background(), huge(), func(context.Context, int, error) error {
				if n++; n == 10 {
					return stage.ErrStop
				}
				return nil
			})
		}},
		{"Slice cancelled from a stage", func() error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := sink.Slice(ctx, stage.Map(huge(), func(_ context.Context, x int) (int, error) {
				if x == 3 {
					cancel()
				}
				return x, nil
			}, stage.Workers(2), stage.Buffer(1)))
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}},
	} {
		var err error
		var bytes uint64
		if !r2Guard(t, c.name, nil, func() { bytes = r2Allocated(func() { err = c.run() }) }) {
			return
		}
		if err != nil && !errors.Is(err, errR2) {
			t.Errorf("%s: err %v", c.name, err)
		}
		if bytes > 4<<20 {
			t.Errorf("%s: allocated %d bytes for a run of a few items", c.name, bytes)
		}
	}
}

// TestLenHugeElementsPresize: sink.Slice's room is bounded in values
// (4096), not in bytes: a stream of Len math.MaxInt of 16 KiB values that
// fails at its third item made sink.Slice allocate 64 MiB before the run.
// ("a huge n must not allocate before a run", says sink.Slice's code.)
func TestLenHugeElementsPresize(t *testing.T) {
	type big [16 << 10]byte
	s := stage.Map(stage.Indexed(math.MaxInt, func(i int) int { return i }), func(_ context.Context, x int) (big, error) {
		if x == 2 {
			return big{}, errR2
		}
		return big{}, nil
	}, stage.Workers(1))
	var got []big
	var err error
	bytes := r2Allocated(func() { got, err = sink.Slice(context.Background(), s) })
	// The failure cancels the run: outputs still queued are dropped, so the
	// sink received at most the two values before it (how many depends on
	// timing, which this test is not about).
	if !errors.Is(err, errR2) || len(got) > 2 {
		t.Fatalf("%d values, err %v", len(got), err)
	}
	if bytes > 8<<20 {
		t.Errorf("sink.Slice allocated %d MiB for a run that delivered 2 values of 16 KiB (Len %d)", bytes>>20, s.Len())
	}
}
