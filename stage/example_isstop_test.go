package stage_test

import (
	"context"
	"fmt"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// IsStop tells a callback's early stop from a failure: ErrStop, wrapped or
// not, ends a run early with nil; an ErrStop that a stage's function
// returned comes back inside an *Error, and is a failure.
func ExampleIsStop() {
	ctx := context.Background()
	wrapped := fmt.Errorf("enough: %w", stage.ErrStop)
	fmt.Println(stage.IsStop(wrapped))

	// A run whose callback stops after the first item returns nil.
	err := stage.Run(ctx, source.Slice([]int{1, 2, 3}), func(context.Context, int, error) error {
		return wrapped
	})
	fmt.Println(err)

	// A stage's function that returns ErrStop fails its item: the sink's
	// error holds an *Error, which is no stop.
	_, err = sink.Slice(ctx, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
		return 0, stage.ErrStop
	}))
	fmt.Println(err != nil, stage.IsStop(err))
	// Output:
	// true
	// <nil>
	// true false
}
