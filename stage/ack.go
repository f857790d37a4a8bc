package stage

import "context"

// Ack is how a source with acknowledgements (see [AckSource]) learns the
// fate of an item it produced: the basis of at-least-once delivery from a
// broker.
//
// Done is called at most once per item:
//
//   - Done(nil) when the item's way through the pipeline has ended well:
//     the sink committed it (its callback returned nil or [ErrStop]; the
//     item sink.First returns, or the one before a break out of sink.All,
//     counts), or every output it led to was committed; or it was dropped
//     on purpose: a
//     [Filter] that did not keep it, a FlatMap or Apply call with no output,
//     a [Handle] policy that accepted its failure. An item that fans out
//     ([FlatMap], [Tee]) is done when all its outputs are; an item in a
//     [Batch] is done when its batch is; an [Unbatch] straight after a
//     Batch gives each element its item's acknowledgement back, so that
//     each is settled on its own.
//   - Done(err) as soon as its way failed, with the first error: a
//     forwarded *[Error] it led to reached the sink, the sink callback that
//     got it (or an output of it) returned err (the commit failed), or its
//     stage's policy ended the run at it ([FailFast], a Handle or [Budget]
//     error). Outputs of it still on their way do not change its fate.
//
// Done is not called when the run ended before the item's fate was known:
// a [FailFast] error at another item, a cancelled context, a sink that
// stopped early, an item whose function was cut short, or whose Handle or
// Budget handler or sink callback, once the run was ending, returned an
// error that says so (the context's error or the run's cause, not a panic
// of any value; see [Run]): the handler, or the commit, was cut short, as
// sink.Chan's wait for room, or a write that saw the context end (an item
// that reached the sink as a forwarded error is still told it). Such a
// handler error does not end the run: the run was ending already. The
// source then leaves the item unacknowledged, and a broker redelivers it.
// Whatever ends the run, an item whose outputs were all committed is told
// nil (unless it shares the fate of a batch, see above, whose other items
// failed), and one whose commit failed otherwise is told its error.
//
// Done is called from the goroutine that settled the item (a worker, or
// the sink's) and must be safe for that; it should not block for long. A
// panic in Done ends the run with a *[SourceError], which the sink returns
// unless its own result was decided first (its callback returned an error,
// or ErrStop: see [Run]), or the run had ended otherwise (it failed, or the
// caller's ctx ended it: see Cancellation in the package doc).
type Ack interface {
	Done(err error)
}

// AckSource is [Source] for a source whose items carry an [Ack]: next
// returns the item and its acknowledgement (nil: none for this item). The
// rest is as in Source (next may wait). Acknowledgements cost a source
// without them nothing: the engine only looks at a pointer that is nil.
//
// Cost: a small node per item that has an Ack (the source allocates them 64
// at a time), and an atomic add per output and per settlement.
func AckSource[T any](open func(ctx context.Context) (next func(ctx context.Context) (T, Ack, error), stop func())) Stream[T] {
	checkFunc(open == nil, "stage.AckSource", "open function")
	return sourceStream("stage.AckSource", func(p *sourcePuller[T]) { p.nextAck, p.stop = open(p.ctx) })
}
