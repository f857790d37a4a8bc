package stage_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Batch groups items for bulk writes; the last batch may be partial.
func ExampleBatch() {
	ctx := context.Background()
	batches := stage.Batch(source.Slice([]int{1, 2, 3, 4, 5, 6, 7}), 3, time.Second)
	err := sink.ForEach(ctx, batches, func(_ context.Context, b []int) error {
		fmt.Println("insert", b)
		return nil
	})
	fmt.Println(err)
	// Output:
	// insert [1 2 3]
	// insert [4 5 6]
	// insert [7]
	// <nil>
}

func ExampleUnbatch() {
	ctx := context.Background()
	got, err := sink.Slice(ctx, stage.Unbatch(source.Slice([][]string{{"a", "b"}, {}, {"c"}})))
	fmt.Println(got, err)
	// Output: [a b c] <nil>
}

// Graceful drain: when stop is done (a shutdown signal, in a service), the
// source takes nothing new, what it took goes through, the partial batch is
// flushed, and the sink returns nil.
func ExampleUntil() {
	ctx := context.Background()
	stop, shutdown := context.WithCancel(context.Background())
	queue := make(chan int)
	go func() { // a producer that never ends
		for i := 1; ; i++ {
			select {
			case queue <- i:
			case <-stop.Done():
				return
			}
		}
	}()
	batches := stage.Batch(stage.Until(source.Chan(queue), stop), 4, 0)
	total, last := 0, 0
	err := sink.ForEach(ctx, batches, func(_ context.Context, b []int) error {
		total, last = total+len(b), b[len(b)-1]
		if total >= 8 {
			shutdown() // as SIGTERM would
		}
		return nil
	})
	// Items 1..last arrived, none missing: what the source took was delivered.
	fmt.Println("drained:", err == nil, "none lost:", total == last)
	// Output: drained: true none lost: true
}

// Tee: every branch sees every item; one sink runs the branches, merged
// again after each has done its part.
func ExampleTee() {
	ctx := context.Background()
	b := stage.Tee(source.Slice([]int{1, 2, 3}), 2)
	sum := 0
	count := stage.Map(b[0], func(_ context.Context, v int) (string, error) { return "counted", nil })
	add := stage.Map(b[1], func(_ context.Context, v int) (string, error) { sum += v; return "added", nil }, stage.Workers(1))
	got, err := sink.Slice(ctx, stage.Merge(count, add))
	fmt.Println(len(got), sum, err)
	// Output: 6 6 <nil>
}
