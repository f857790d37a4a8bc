package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// A pipeline: parse lines concurrently, keep the even numbers, square them,
// and collect the results in input order.
func Example() {
	ctx := context.Background()
	lines := source.Lines(strings.NewReader("1\n2\n3\n4\n5\n6\n"))
	nums := stage.Map(lines, func(_ context.Context, s string) (int, error) {
		return strconv.Atoi(s)
	}, stage.Workers(4), stage.Ordered())
	even := stage.Filter(nums, func(_ context.Context, n int) (bool, error) {
		return n%2 == 0, nil
	}, stage.Workers(4), stage.Ordered())
	squares := stage.Map(even, func(_ context.Context, n int) (int, error) {
		return n * n, nil
	}, stage.Workers(4), stage.Ordered())

	got, err := sink.Slice(ctx, squares)
	fmt.Println(got, err)
	// Output: [4 16 36] <nil>
}

// Fan out per request: call a handful of backends, at most 3 at a time,
// gather the answers in the order of the calls; the first error cancels the
// calls still running (they see ctx.Done()) and is the run's error.
func Example_fanOut() {
	ctx := context.Background()
	backends := []string{"users", "orders", "prices", "stock", "reviews"}
	answers, err := sink.Slice(ctx, stage.Map(source.Slice(backends), func(ctx context.Context, name string) (string, error) {
		return name + ": ok", nil // a real call takes ctx and returns its error
	}, stage.Workers(3), stage.Ordered()))
	fmt.Println(answers, err)
	// Output: [users: ok orders: ok prices: ok stock: ok reviews: ok] <nil>
}

// With the default FailFast policy, the first failure ends the run and the
// sink reports where it happened.
func Example_failFast() {
	ctx := context.Background()
	nums := stage.Map(source.Slice([]string{"1", "2", "x", "4"}), func(_ context.Context, s string) (int, error) {
		return strconv.Atoi(s)
	}, stage.Name("parse"))

	_, err := sink.Slice(ctx, nums)
	var se *stage.Error
	if errors.As(err, &se) {
		fmt.Printf("stage %s, item %d (%q): %v\n", se.Stage, se.Index, se.Input, errors.Unwrap(se.Err))
	}
	// Output: stage parse, item 2 ("x"): invalid syntax
}

// With Forward, failures travel downstream in their items' places and the
// run goes on.
func Example_forward() {
	ctx := context.Background()
	nums := stage.Map(source.Slice([]string{"1", "x", "3"}), func(_ context.Context, s string) (int, error) {
		return strconv.Atoi(s)
	}, stage.OnError(stage.Forward), stage.Workers(1))

	for n, err := range sink.All(ctx, nums) {
		if err != nil {
			fmt.Println("failed:", errors.Is(err, strconv.ErrSyntax))
			continue
		}
		fmt.Println("parsed:", n)
	}
	// Output:
	// parsed: 1
	// failed: true
	// parsed: 3
}

func ExampleMap() {
	ctx := context.Background()
	lengths := stage.Map(source.Slice([]string{"a", "bb", "ccc"}), func(_ context.Context, s string) (int, error) {
		return len(s), nil
	}, stage.Workers(2), stage.Ordered())
	got, err := sink.Slice(ctx, lengths)
	fmt.Println(got, err)
	// Output: [1 2 3] <nil>
}

func ExampleFilter() {
	ctx := context.Background()
	long := stage.Filter(source.Slice([]string{"go", "sluice", "ok", "pipeline"}), func(_ context.Context, s string) (bool, error) {
		return len(s) > 2, nil
	}, stage.Ordered())
	got, err := sink.Slice(ctx, long)
	fmt.Println(got, err)
	// Output: [sluice pipeline] <nil>
}

func ExampleFlatMap() {
	ctx := context.Background()
	words := stage.FlatMap(source.Slice([]string{"a b", "c", "d e f"}), func(_ context.Context, line string) ([]string, error) {
		return strings.Fields(line), nil
	}, stage.Ordered())
	got, err := sink.Slice(ctx, words)
	fmt.Println(got, err)
	// Output: [a b c d e f] <nil>
}

// Concurrent runs tasks, at most three at a time: the Python original's
// concurrent(tasks, limit=3).
func ExampleConcurrent() {
	ctx := context.Background()
	var tasks []func(context.Context) (string, error)
	for i := range 5 {
		tasks = append(tasks, func(context.Context) (string, error) {
			return fmt.Sprintf("task %d done", i), nil
		})
	}
	results := stage.Concurrent(source.Slice(tasks), stage.Workers(3), stage.Ordered())
	for r, err := range sink.All(ctx, results) {
		fmt.Println(r, err)
	}
	// Output:
	// task 0 done <nil>
	// task 1 done <nil>
	// task 2 done <nil>
	// task 3 done <nil>
	// task 4 done <nil>
}

func ExampleMerge() {
	ctx := context.Background()
	both := stage.Merge(source.Slice([]int{1, 2, 3}), source.Slice([]int{10, 20}))
	sum, err := sink.Reduce(ctx, both, 0, func(acc, n int) int { return acc + n })
	fmt.Println(sum, err)
	// Output: 36 <nil>
}

// Apply is the primitive the other stages are written with: f gets each
// item and emits any number of outputs. Here: run-length expansion.
func ExampleApply() {
	ctx := context.Background()
	type run struct {
		char  string
		count int
	}
	expanded := stage.Apply(source.Slice([]run{{"a", 3}, {"b", 1}, {"c", 2}}), func(_ context.Context, r run, emit func(string) bool) error {
		for range r.count {
			if !emit(r.char) {
				return nil // the run was cancelled
			}
		}
		return nil
	}, stage.Ordered())
	got, err := sink.Slice(ctx, expanded)
	fmt.Println(strings.Join(got, ""), err)
	// Output: aaabcc <nil>
}

// Source is the primitive sources are written with: open runs once per run
// and returns the item generator and a stop function.
func ExampleSource() {
	ctx := context.Background()
	countdown := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		n := 3 // fresh state for every run
		next := func(context.Context) (int, error) {
			if n == 0 {
				return 0, io.EOF
			}
			n--
			return n + 1, nil
		}
		stop := func() { fmt.Println("stopped") }
		return next, stop
	})
	for range 2 {
		got, err := sink.Slice(ctx, countdown)
		fmt.Println(got, err)
	}
	// Output:
	// stopped
	// [3 2 1] <nil>
	// stopped
	// [3 2 1] <nil>
}

// A generator that computes its items without waiting may say so, which
// lets a cheap stage over it run in its consumer's goroutines.
func ExampleNeverWaits() {
	n := 0
	squares := stage.NeverWaits(source.Func(func(context.Context) (int, error) {
		if n == 5 {
			return 0, io.EOF
		}
		n++
		return n * n, nil
	}))
	sum, err := sink.Reduce(context.Background(), stage.Map(squares, func(_ context.Context, x int) (int, error) {
		return x + 1, nil
	}, stage.Workers(4)), 0, func(acc, x int) int { return acc + x })
	fmt.Println(sum, err)
	// Output: 60 <nil>
}

// Run is the primitive sinks are written with: here a sink that keeps the
// largest value and counts the forwarded errors.
func ExampleRun() {
	ctx := context.Background()
	checked := stage.Map(source.Slice([]int{4, -1, 9, 2}), func(_ context.Context, n int) (int, error) {
		if n < 0 {
			return 0, errors.New("negative")
		}
		return n, nil
	}, stage.OnError(stage.Forward))

	largest, failed := 0, 0
	err := stage.Run(ctx, checked, func(_ context.Context, n int, err error) error {
		if err != nil {
			failed++
			return nil
		}
		largest = max(largest, n)
		return nil
	})
	fmt.Println(largest, failed, err)
	// Output: 9 1 <nil>
}

// Indexed makes a source of items known by position: here the squares of
// 0..4, computed as the workers claim them.
func ExampleIndexed() {
	squares := stage.Indexed(5, func(i int) int { return i * i })
	got, err := sink.Slice(context.Background(), stage.Map(squares, func(_ context.Context, n int) (int, error) {
		return n + 1, nil
	}, stage.Workers(2), stage.Ordered()))
	fmt.Println(got, err)
	// Output: [1 2 5 10 17] <nil>
}
