package source

import (
	"context"
	"fmt"
	"io"
	"iter"
	"runtime"

	"github.com/sluicedev/sluice/stage"
)

// Seq returns a stream of the values of seq. The iterator advances one step
// each time a stage is ready for an item; when the run ends, early or not,
// the iterator is stopped (its deferred calls run) before the sink returns.
// Each run ranges over seq again. A panic in seq becomes a *stage.PanicError
// in a *stage.SourceError. A nil seq panics.
//
// seq may wait between items (it is a waiting source), for instance an
// iterator over a channel or a paged API. If it never waits, wrap the
// stream in [stage.NeverWaits] for the faster path. A step of seq cannot be
// abandoned: an iterator that waits should end when what it waits on does.
//
// Seq steps seq with iter.Pull, whose coroutine the runtime lets resume
// only from goroutines locked to an OS thread as the one that made it was
// (it ends the process otherwise: "coro: OS thread locking must match
// locking at coroutine creation"). A run's workers are not locked, so do
// not run a sink over Seq from a goroutine locked to its thread
// (runtime.LockOSThread, a cgo callback): run it from a goroutine of its
// own there, or use [Func]. Nor may a function of the run leave its
// goroutine locked (a LockOSThread without its Unlock).
func Seq[T any](seq iter.Seq[T]) stage.Stream[T] {
	if seq == nil {
		panic("sluice: source.Seq: nil iterator")
	}
	return stage.Source(func(context.Context) (func(context.Context) (T, error), func()) {
		var nilPanic bool
		next, stop := iter.Pull(func(yield func(T) bool) { nilPanic = panickedNil(func() { seq(yield) }) })
		return func(context.Context) (T, error) {
			v, ok := next()
			if !ok {
				raiseNilPanic(nilPanic)
				return v, io.EOF
			}
			return v, nil
		}, stop
	})
}

// Seq2 returns a stream of the values of seq, which yields (value, nil) for
// an item and (anything, err) for a failure. The first error ends the run
// with a *stage.SourceError after the items before it went through; the
// iterator is not advanced after it. Otherwise Seq2 behaves as [Seq] (a
// waiting source, see there; and, like Seq, not from a goroutine locked to
// its OS thread). A nil seq panics.
func Seq2[T any](seq iter.Seq2[T, error]) stage.Stream[T] {
	if seq == nil {
		panic("sluice: source.Seq2: nil iterator")
	}
	return stage.Source(func(context.Context) (func(context.Context) (T, error), func()) {
		var nilPanic bool
		next, stop := iter.Pull2(func(yield func(T, error) bool) { nilPanic = panickedNil(func() { seq(yield) }) })
		return func(context.Context) (T, error) {
			v, err, ok := next()
			if !ok {
				raiseNilPanic(nilPanic)
				return v, io.EOF
			}
			if err == io.EOF { // an error like any other here, not the end
				err = fmt.Errorf("source.Seq2: the iterator yielded %w", err)
			}
			return v, err
		}, stop
	})
}

// panickedNil runs f, an iterator, in iter.Pull's coroutine, and reports
// whether it panicked with a nil value under GODEBUG=panicnil=1, which
// recover cannot tell from runtime.Goexit (both read nil), so that
// iter.Pull would pass it on as a Goexit of the goroutine that steps the
// iterator. It stops that panic here, where the difference shows: a
// recovered panic lets panickedNil return, a Goexit goes on. Any other
// panic goes on as before (iter.Pull raises it where next was called).
func panickedNil(f func()) (nilPanic bool) {
	returned := false
	defer func() {
		if !returned {
			if v := recover(); v != nil {
				panic(v)
			}
			nilPanic = true // seen only if this was a panic, not a Goexit
		}
	}()
	f()
	returned = true
	return false
}

// raiseNilPanic raises, in next, the panic(nil) that panickedNil stopped
// in the iterator, as the *runtime.PanicNilError that panic(nil) is
// without GODEBUG=panicnil=1, for the run to make a *stage.PanicError of.
func raiseNilPanic(nilPanic bool) {
	if nilPanic {
		panic(new(runtime.PanicNilError))
	}
}
