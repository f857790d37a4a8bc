// Package stage builds concurrent pipelines out of typed stages: the
// [Stream] type, the stages ([Map], [Filter], [FlatMap], [Concurrent],
// [Merge], [Apply]), their options, and the errors a run reports.
//
// A pipeline is a source (package source), any number of stages, and a sink
// (package sink):
//
//	s := source.Slice(urls)
//	pages := stage.Map(s, fetch, stage.Workers(8))
//	err := sink.ForEach(ctx, pages, store)
//
// # Lazy streams
//
// A [Stream] is a description, not a running thing. Building one starts no
// goroutine and calls no user function. A sink runs it: it derives the run's
// context from the caller's, opens the whole pipeline (observers meet every
// stage) and checks it, then starts every stage's goroutines, consumes the
// items, and returns once all of them have exited. Each sink call is a new
// run; a slice source yields its items again. Several sinks may run one
// stream at the same time, as far as its source allows (see [Stream]).
//
// Within one pipeline a stream feeds one consumer. Using a stream twice
// ([Merge] of a stream with itself, or with a stage built on it) panics when
// the pipeline is built.
//
// # Workers
//
// A stage runs at most [Workers](n) calls of its function at once: n worker
// goroutines, each taking the next item when it is free. The default is
// [DefaultWorkers], min(NumCPU+4, 32). Workers(-1) starts one goroutine per
// item with no limit. When calls are cheap and the source never waits (a
// slice, or a source marked with [NeverWaits]), the goroutines of a stage's
// consumer may take workers' places and call the function themselves rather
// than wait for an item (see [Workers]).
//
// Backpressure: a stage has workers+[Buffer] tokens; a worker takes one
// before it takes an item, and the token comes back only when the stage's
// consumer takes that item's output. So no stage pulls more than its workers
// plus its buffer ahead of its consumer, and a slow sink slows the whole
// pipeline down to the source. Sources take an item from the caller's world
// only when a stage is ready for it.
//
// # Ordering
//
// Outputs leave a stage in completion order. With one worker that is input
// order. With [Ordered] they leave in input order: finished items wait in a
// reorder window behind a slow one; the stage takes at most 2×workers+buffer
// items its consumer has not yet taken, then stops pulling, so memory
// is bounded by the configuration, never by the input size (Workers(-1)
// excepted).
//
// # Error policies
//
// When a stage's function returns an error (or panics) for an item, the
// stage wraps it in an *[Error] that names the stage, the item's index in
// the stage's input, and the input; a panic becomes a *[PanicError] inside
// it. The stage's [ErrorPolicy] decides what happens next:
//
//   - [FailFast] (default): the run's context is cancelled with the *Error
//     as its cause (see context.Cause); calls in flight see ctx.Done(), no
//     new item starts, outputs not yet delivered are dropped (which of the
//     items before the failed one reached the sink depends on timing), and
//     the sink returns the error after every goroutine has exited.
//   - [Forward]: the *Error takes the item's place downstream; later stages
//     pass it through without calling their function, and the sink reports
//     it. The run goes on.
//   - [Handle](h): h sees each failed item (a dead-letter queue, a log, a
//     count); if it returns nil the item is dropped and the run goes on, if
//     it returns an error the run fails with it. [Budget](n, h) fails the
//     run at the (n+1)th failed item.
//
// Before the policy sees a failure, [Retry] may call the function again
// (exponential backoff with jitter; [RetryIf] picks the retryable errors);
// [Timeout] bounds each call and [RateLimit] spaces them out ([SharedRateLimit]
// across runs).
//
// Stages are named by [Name], or by their kind and position in the run
// ("map#1", "filter#2", ...): errors and observers carry the name.
//
// A source that fails ends the run with a *[SourceError] whatever the
// policies: the source stops, the items it produced before still go through,
// then the sink returns the error.
//
// # Cancellation
//
// Every blocking step of a run (a wait for an item or for room between
// stages, a receive from a channel source) can be abandoned through the
// run's context. Cancelling the caller's ctx, a FailFast error, a failing
// sink callback, or a sink that stops early (sink.First, a break out of
// sink.All) cancels the run; the user functions see it through their ctx.
// Once the run is cancelled, no source's next (or Indexed's at) is called,
// no call of a stage's function starts and the sink delivers nothing more,
// but for a step already on its way: when another goroutine cancels the
// run, one of the run's that looked at the run just before may take its
// step just after (an item a source then takes is dropped; a call then
// begun sees its context done). A caller's ctx of a context type the context package cannot see into
// (its Done channel is not a standard context's) is watched from a
// goroutine of the run, so the functions' ctx ends a moment after it (if
// the sink returned first, a call still in flight sees the run's end as
// its context's cause, not the caller's); but from the moment its Done
// channel is closed the run takes no new step, as with a standard context,
// and a failure that comes after (a stage's, an observer's panic, a check
// of the opened pipeline, a panic in an [Ack]'s Done; not an error the
// sink's callback returns, which is the run's until the end reaches the
// run's context) is not the run's: the sink returns the caller's
// cancellation. (A next
// already waiting, as in a channel source, may still take an item until
// the functions' ctx ends; the run drops it, as it drops items in flight
// when it is cancelled.)
//
// # Leaks
//
// When a sink returns, no goroutine of the run is running: not on success,
// error, cancellation, early exit, or panic. Sources release what they hold
// (an iterator is stopped) before the sink returns. (If the caller's ctx, or
// the stop context of an [Until], is a context type of the caller's whose
// methods panic when the run calls them, the run is cancelled and the sink
// raises that panic again once the run is over, in place of its result. A
// function of the pipeline that calls them through its own ctx meets the
// panic as its own. Methods that call runtime.Goexit, as a fake context's
// t.FailNow does, end the goroutine that called them, as a Goexit in a
// stage's function does: see [ErrGoexit]. That goroutine may be one the
// run uses to watch such a context once it is done: a Goexit there cuts
// the run short as the caller's cancellation does, with
// context.Canceled, for the caller's ctx, and fails the run with
// ErrGoexit for a stop context.) A channel source never
// closes or drains the caller's channel, and a channel sink never closes the
// caller's channel.
//
// # Production pipelines
//
// [Batch] and [Unbatch] group items for bulk writes; [Tee] gives several
// branches every item; [KeyBy] keeps per-key order; [Until] drains a run
// gracefully on shutdown (cancelling ctx aborts it instead). [Observe]
// attaches an [Observer] to every stage of a run: [Stats] counts, [Logger]
// logs lifecycle and failures.
//
// # Writing your own
//
// Small primitives are what the built-in pieces are written with: [Source]
// for sources (opened once per run; next may wait, or is marked with
// [NeverWaits] when it never does), [AckSource] for sources whose items
// carry an [Ack], [Indexed] for sources whose items are known by position,
// [Apply] for stages (a function that gets each item and emits any number
// of outputs, under the usual options), and [Run] for sinks (a callback for
// each item that reaches the end).
package stage
