package stage_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r55Sizes and r55Workers are the tiny runs the engine's newest paths target.
var (
	r55Sizes   = []int{0, 1, 2, 3, 4, 5}
	r55Workers = []int{1, 2, 3, 4, 5, 8, -1}
)

// r55Ints returns 0..n-1.
func r55Ints(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

// r55Src describes how a source of 0..n-1 is made; stops counts the calls
// of stop (for the kinds built on stage.Source), nexts the items taken.
type r55Src struct {
	name  string
	make  func(n int, nexts, stops *atomic.Int64) stage.Stream[int]
	len   bool // whether Stream.Len is known
	fresh bool // the stream must be built anew for each run (a channel)
}

func r55Counter(n int, nexts, stops *atomic.Int64) func(ctx context.Context) (next func(context.Context) (int, error), stop func()) {
	return func(ctx context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
				if i >= n {
					return 0, io.EOF
				}
				i++
				nexts.Add(1)
				return i - 1, nil
			}, func() {
				stops.Add(1)
			}
	}
}

var r55Sources = []r55Src{
	{name: "slice", len: true, make: func(n int, _, _ *atomic.Int64) stage.Stream[int] { return source.Slice(r55Ints(n)) }},
	{name: "indexed", len: true, make: func(n int, nexts, _ *atomic.Int64) stage.Stream[int] {
		return stage.Indexed(n, func(i int) int { nexts.Add(1); return i })
	}},
	{name: "neverwaits", make: func(n int, nexts, stops *atomic.Int64) stage.Stream[int] {
		return stage.NeverWaits(stage.Source(r55Counter(n, nexts, stops)))
	}},
	{name: "waiting", make: func(n int, nexts, stops *atomic.Int64) stage.Stream[int] {
		return stage.Source(r55Counter(n, nexts, stops))
	}},
	{name: "chan", fresh: true, make: func(n int, _, _ *atomic.Int64) stage.Stream[int] {
		ch := make(chan int, n)
		for i := range n {
			ch <- i
		}
		close(ch)
		return source.Chan(ch)
	}},
	{name: "interruptible", make: func(n int, nexts, stops *atomic.Int64) stage.Stream[int] {
		return stage.Interruptible(stage.Source(func(ctx context.Context) (func(context.Context) (int, error), func()) {
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			close(ch)
			return func(ctx context.Context) (int, error) {
					select {
					case v, ok := <-ch:
						if !ok {
							return 0, io.EOF
						}
						nexts.Add(1)
						return v, nil
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				}, func() {
					stops.Add(1)
				}
		}))
	}},
}

// r55Opts builds the options of one cell.
func r55Opts(workers int, ordered bool, buffer int, more ...stage.Option) []stage.Option {
	opts := []stage.Option{stage.Workers(workers)}
	if ordered {
		opts = append(opts, stage.Ordered())
	}
	if buffer > 0 {
		opts = append(opts, stage.Buffer(buffer))
	}
	return append(opts, more...)
}

// r55Collect runs s with stage.Run and returns the values in arrival order.
func r55Collect[T any](ctx context.Context, s stage.Stream[T]) ([]T, []error, error) {
	var vs []T
	var fwd []error
	err := stage.Run(ctx, s, func(_ context.Context, v T, err error) error {
		if err != nil {
			fwd = append(fwd, err)
			return nil
		}
		vs = append(vs, v)
		return nil
	})
	return vs, fwd, err
}

// r55SameMultiset reports whether a and b hold the same items.
func r55SameMultiset(a, b []int) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// r55Key is the context key under which a run's id travels.
type r55Key struct{}

func r55RunID(ctx context.Context) int {
	v, _ := ctx.Value(r55Key{}).(int)
	return v
}

// r55Tagged is an item tagged with the run that produced it.
type r55Tagged struct {
	Run, V int
}

func (x r55Tagged) String() string { return fmt.Sprintf("run%d/%d", x.Run, x.V) }

// r55Once records a first violation only.
type r55Once struct {
	mu  sync.Mutex
	msg string
}

func (o *r55Once) failf(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.msg == "" {
		o.msg = fmt.Sprintf(format, args...)
	}
}
