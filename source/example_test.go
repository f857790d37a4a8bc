package source_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func ExampleSlice() {
	got, err := sink.Slice(context.Background(), source.Slice([]string{"a", "b", "c"}))
	fmt.Println(got, err)
	// Output: [a b c] <nil>
}

// A value is received only when a stage is ready for it: the rest stay in
// the channel.
func ExampleChan() {
	ch := make(chan int, 5)
	for i := range 5 {
		ch <- i
	}
	first, ok, err := sink.First(context.Background(), source.Chan(ch))
	fmt.Println(first, ok, err, len(ch))
	// Output: 0 true <nil> 4
}

func ExampleFunc() {
	a, b := 0, 1
	fib := source.Func(func(context.Context) (int, error) {
		if a > 50 {
			return 0, io.EOF
		}
		a, b = b, a+b
		return b - a, nil
	})
	got, err := sink.Slice(context.Background(), fib)
	fmt.Println(got, err)
	// Output: [0 1 1 2 3 5 8 13 21 34] <nil>
}

func ExampleSeq() {
	ages := map[string]int{"ada": 36, "alan": 41, "grace": 85}
	names := source.Seq(slices.Values(slices.Sorted(maps.Keys(ages))))
	upper := stage.Map(names, func(_ context.Context, s string) (string, error) {
		return strings.ToUpper(s), nil
	}, stage.Ordered())
	got, err := sink.Slice(context.Background(), upper)
	fmt.Println(got, err)
	// Output: [ADA ALAN GRACE] <nil>
}

// An error from the iterator ends the run after the items before it.
func ExampleSeq2() {
	rows := func(yield func(string, error) bool) {
		if !yield("row 1", nil) || !yield("row 2", nil) {
			return
		}
		yield("", errors.New("connection lost"))
	}
	got, err := sink.Slice(context.Background(), source.Seq2(rows))
	var se *stage.SourceError
	fmt.Println(got, errors.As(err, &se), err)
	// Output: [row 1 row 2] true sluice: source: connection lost
}

func ExampleLines() {
	text := "first\r\nsecond\nthird"
	n, err := sink.Count(context.Background(), source.Lines(strings.NewReader(text)))
	fmt.Println(n, err)
	// Output: 3 <nil>
}

// Hostile input: a line longer than the maximum ends the run with an error
// that names it, instead of filling memory.
func ExampleMaxLineLength() {
	in := strings.NewReader("ok\n" + strings.Repeat("x", 100) + "\nnever read\n")
	got, err := sink.Slice(context.Background(), source.Lines(in, source.MaxLineLength(10)))
	var tooLong *source.LineTooLongError
	fmt.Println(got, errors.As(err, &tooLong), tooLong.Line)
	// Output: [ok] true 2
}
