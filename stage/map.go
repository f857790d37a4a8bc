package stage

import "context"

// Map calls f for each item of in and emits its result. It runs up to
// Workers(n) calls at once ([DefaultWorkers] by default) and emits in
// completion order, or in input order with [Ordered]. A failed call is
// handled by the stage's [ErrorPolicy]; forwarded errors pass through
// without a call. Map panics if in is the zero Stream or f is nil.
//
// Each item costs one call of f and at most one hand-off to the consumer;
// none once cheap calls run in the consumer's goroutines (see [Workers]).
func Map[In, Out any](in Stream[In], f func(ctx context.Context, v In) (Out, error), opts ...Option) Stream[Out] {
	checkFunc(f == nil, "stage.Map", "function")
	return keepTotal(in, apply("stage.Map", "map", in, func(ctx context.Context, v In, e emitter[Out]) error {
		out, err := f(ctx, v)
		if err != nil {
			return err
		}
		e.emit(out)
		return nil
	}, opts, emitsOne))
}

// Filter calls keep for each item of in and emits the item when keep returns
// true. Workers, ordering and error policy are as in [Map]. Filter panics if
// in is the zero Stream or keep is nil.
func Filter[T any](in Stream[T], keep func(ctx context.Context, v T) (bool, error), opts ...Option) Stream[T] {
	checkFunc(keep == nil, "stage.Filter", "function")
	return apply("stage.Filter", "filter", in, func(ctx context.Context, v T, e emitter[T]) error {
		ok, err := keep(ctx, v)
		if err != nil {
			return err
		}
		if ok {
			e.emit(v)
		}
		return nil
	}, opts, emitsOne)
}

// FlatMap calls f for each item of in and emits the elements of the slice it
// returns, in slice order; with [Ordered], all outputs of one item leave
// before those of the next. Workers and error policy are as in [Map]. The
// returned slice is read after f returns, while its elements wait for room
// downstream: f must not change or reuse it (return a new slice each call).
// FlatMap panics if in is the zero Stream or f is nil.
func FlatMap[In, Out any](in Stream[In], f func(ctx context.Context, v In) ([]Out, error), opts ...Option) Stream[Out] {
	checkFunc(f == nil, "stage.FlatMap", "function")
	return apply("stage.FlatMap", "flatmap", in, func(ctx context.Context, v In, e emitter[Out]) error {
		outs, err := f(ctx, v)
		if err != nil {
			return err
		}
		for _, o := range outs {
			if !e.emit(o) {
				return nil
			}
		}
		return nil
	}, opts, emitsAfter)
}

// Concurrent runs tasks, at most Workers(n) at a time, and emits their
// results: in completion order, or in task order with [Ordered]. A task's
// error is handled by the stage's [ErrorPolicy]; a nil task is an item error
// wrapping [ErrNilTask]. This is the Python original's concurrent(): see the
// package documentation. Concurrent panics if tasks is the zero Stream.
func Concurrent[T any](tasks Stream[func(ctx context.Context) (T, error)], opts ...Option) Stream[T] {
	return keepTotal(tasks, apply("stage.Concurrent", "concurrent", tasks, func(ctx context.Context, task func(context.Context) (T, error), e emitter[T]) error {
		if task == nil {
			return ErrNilTask
		}
		v, err := task(ctx)
		if err != nil {
			return err
		}
		e.emit(v)
		return nil
	}, opts, emitsOne))
}
