// Package source makes streams from the places items come from: slices,
// channels, generator functions, iterators and readers.
//
// Every source is lazy: nothing is read until a sink runs the stream, and
// each run starts the source anew (for a slice, from its first item; for a
// channel, a reader or a one-shot iterator, from wherever the previous run
// left it). A source takes an item from the caller's world (a channel receive,
// a call of a generator, a step of an iterator, a line read) only when a
// stage, or the sink, is ready to work on it, and none after the run was
// cancelled but one already on its way: a goroutine of the run that looked
// at the run just before the cancellation may make its take just after it
// (the run then drops the item; see stage's Cancellation).
//
// A source's failure (an error other than io.EOF from [Func], an error from
// [Seq2], a read error in [Lines], or a panic in any of them) ends the run
// with a *stage.SourceError: the items produced before it still go through,
// then the sink returns the error.
//
// Every source here is written with [stage.Source] (or, for a slice,
// [stage.Indexed]), which user code can call to write its own. Each
// source's documentation says whether it may wait: a waiting source (a
// channel, a reader, a function or iterator that may block) is always
// safe; [stage.NeverWaits] declares one that never does, for speed.
package source
