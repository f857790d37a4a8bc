package sink_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func ExampleSlice() {
	upper := stage.Map(source.Slice([]string{"a", "b"}), func(_ context.Context, s string) (string, error) {
		return strings.ToUpper(s), nil
	}, stage.Ordered())
	got, err := sink.Slice(context.Background(), upper)
	fmt.Println(got, err)
	// Output: [A B] <nil>
}

// ForEach calls f one item at a time; an error from f ends the run.
func ExampleForEach() {
	err := sink.ForEach(context.Background(), source.Slice([]int{1, 2, 3, 4}), func(_ context.Context, n int) error {
		if n == 3 {
			return errors.New("three is too many")
		}
		fmt.Println("got", n)
		return nil
	})
	var se *stage.Error
	fmt.Println(errors.As(err, &se), se.Stage, se.Index)
	// Output:
	// got 1
	// got 2
	// true foreach 2
}

func ExampleReduce() {
	words := source.Slice([]string{"lazy", "typed", "pipelines"})
	total, err := sink.Reduce(context.Background(), words, 0, func(acc int, w string) int { return acc + len(w) })
	fmt.Println(total, err)
	// Output: 18 <nil>
}

// Breaking out of the loop stops the run; the loop ends once every
// goroutine of the run has exited.
func ExampleAll() {
	squares := stage.Map(source.Slice([]int{1, 2, 3, 4, 5}), func(_ context.Context, n int) (int, error) {
		return n * n, nil
	}, stage.Ordered())
	for sq, err := range sink.All(context.Background(), squares) {
		if err != nil {
			fmt.Println(err)
			break
		}
		if sq > 10 {
			break
		}
		fmt.Println(sq)
	}
	// Output:
	// 1
	// 4
	// 9
}

// Chan sends the values on a channel the caller owns; it never closes it.
func ExampleChan() {
	out := make(chan string, 3)
	err := sink.Chan(context.Background(), source.Slice([]string{"x", "y", "z"}), out)
	close(out) // ours to close
	for s := range out {
		fmt.Print(s)
	}
	fmt.Println("", err)
	// Output: xyz <nil>
}

func ExampleFirst() {
	big := stage.Filter(source.Slice([]int{3, 14, 15, 92}), func(_ context.Context, n int) (bool, error) {
		return n > 10, nil
	}, stage.Workers(1))
	n, ok, err := sink.First(context.Background(), big)
	fmt.Println(n, ok, err)
	// Output: 14 true <nil>
}

func ExampleCount() {
	n, err := sink.Count(context.Background(), source.Lines(strings.NewReader("a\nb\nc\n")))
	fmt.Println(n, err)
	// Output: 3 <nil>
}
