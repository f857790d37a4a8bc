// Package sink runs streams. A sink takes the caller's ctx, runs the whole
// pipeline in a context derived from it, consumes what reaches the end, and
// returns only when every goroutine of the run has exited: on success, on
// error, on an early exit (sink.First, a break out of sink.All), on
// cancellation of ctx, and when a user callback panics. (Exited as
// sync.WaitGroup means it: each has signalled its end and runs no code but
// its return, so runtime.NumGoroutine may count it for an instant.)
//
// # Errors
//
// A sink returns the error that ended the run: the first *stage.Error of a
// stage with the FailFast policy, the error of a sink callback (wrapped in a
// *stage.Error), or, when ctx was cancelled, an error for which
// errors.Is(err, context.Canceled) (or context.DeadlineExceeded) holds; or,
// once everything a failed source produced was delivered, the
// *stage.SourceError. A sink never reports success for a run that failed,
// and its result is a function of the items and errors it saw, never of
// timing (see stage.Run).
//
// Errors forwarded by stages with the Forward policy do not end the run.
// [All] yields each one in its place; [First] returns it when it is the first
// item; the other sinks go on and return what succeeded together with a
// *[ForwardedError]: how many were forwarded and the first [SampleSize] of
// them, so that memory stays bounded however many items fail (joined with
// the error that ended the run, if any).
//
// Every sink here is written with [stage.Run], which user code can call to
// write its own; [All] is the simplest way to consume a stream by hand.
package sink
