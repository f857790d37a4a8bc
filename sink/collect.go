package sink

import (
	"context"
	"unsafe"

	"github.com/sluicedev/sluice/stage"
)

// Slice runs s and returns its values in arrival order. With forwarded
// errors it returns every value that succeeded and a *[ForwardedError]
// (their count and the first few). When the run fails it returns the values
// received before it ended and the error (joined with the forwarded ones).
// When s knows its length ([stage.Stream.Len]), the slice is made with room
// for that many values before the run (at most 4096 values and 64 KiB).
// Without any value it returns a nil slice.
func Slice[T any](ctx context.Context, s stage.Stream[T]) ([]T, error) {
	var out []T
	if n := s.Len(); n > 0 {
		// A hint: a huge n, or huge values, must not allocate before a run.
		var zero T
		out = make([]T, 0, min(n, maxPresize, max(maxPresizeBytes/int(max(unsafe.Sizeof(zero), 1)), 1)))
	}
	var fwd forwarded
	err := stage.Run(ctx, s, func(_ context.Context, v T, err error) error {
		if err != nil {
			fwd.add(err)
		} else {
			out = append(out, v)
		}
		return nil
	})
	if len(out) == 0 {
		out = nil // no value: nil, as without the room made before the run
	}
	return out, fwd.result(err)
}

// maxPresize and maxPresizeBytes bound the room Slice makes before a run,
// from Stream.Len.
const (
	maxPresize      = 4096
	maxPresizeBytes = 64 << 10
)

// Count runs s and returns how many values reached the end (forwarded errors
// are not counted but returned in a *[ForwardedError]).
func Count[T any](ctx context.Context, s stage.Stream[T]) (int, error) {
	n := 0
	var fwd forwarded
	err := stage.Run(ctx, s, func(_ context.Context, _ T, err error) error {
		if err != nil {
			fwd.add(err)
		} else {
			n++
		}
		return nil
	})
	return n, fwd.result(err)
}

// Reduce runs s and folds its values into an accumulator, starting from
// init, in arrival order: acc = f(acc, v). f is called one value at a time.
// A panic in f ends the run with a *stage.Error (Stage "reduce") wrapping a
// *stage.PanicError. Reduce returns the accumulator as it stands when the run
// ends, with the error that ended it and a *[ForwardedError], joined. A nil
// f panics.
func Reduce[T, R any](ctx context.Context, s stage.Stream[T], init R, f func(acc R, v T) R) (R, error) {
	if f == nil {
		panic("sluice: sink.Reduce: nil function")
	}
	acc := init
	var fwd forwarded
	err := runCalls(ctx, s, "reduce", &fwd, func(_ context.Context, v T) error { acc = f(acc, v); return nil })
	return acc, fwd.result(err)
}

// ForEach runs s and calls f for each value, one call at a time, in arrival
// order, with the run's context. An error returned by f (or a panic in f)
// ends the run as a FailFast error does: the run's context is cancelled with
// a *stage.Error (Stage "foreach") as its cause, and ForEach returns that
// error once every goroutine has exited. f may return stage.ErrStop (or an error
// wrapping it: see stage.IsStop) to end the run early without an error:
// ForEach then returns nil (or the
// *[ForwardedError] of what was forwarded before). Forwarded errors do not
// reach f; they are returned in a *[ForwardedError]. A nil f panics.
func ForEach[T any](ctx context.Context, s stage.Stream[T], f func(ctx context.Context, v T) error) error {
	if f == nil {
		panic("sluice: sink.ForEach: nil function")
	}
	var fwd forwarded
	return fwd.result(runCalls(ctx, s, "foreach", &fwd, f))
}
