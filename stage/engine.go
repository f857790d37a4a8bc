package stage

// The engine: how a run moves items. Files engine_*.go hold it; run.go
// holds Run, the sink primitive, and run_*.go a run's lifecycle: its state
// and goroutines (run_state.go), cancellation and wake-ups
// (run_cancel.go), how it ends and what it returns (run_end.go), its
// finish (run_finish.go) and the caller's context (run_userctx.go). The
// rest of the package is the public vocabulary written over it.
//
// # The life of an item
//
// Opening. A sink calls Stream.open (or openFor) on the last stream; each
// stage opens its input first, so a whole pipeline is opened upstream
// first, from the sink's goroutine, before anything runs. Opening builds
// the run's queues, asks the observers for every stage, and registers the
// goroutines to start, but starts none. run.start then checks the opened
// pipeline (every Tee branch consumed) and only then starts the goroutines;
// a fused stage (engine_fuse.go) starts its own at its consumer's first
// pull, as many as its input has items for. So no goroutine takes an item
// from a pipeline that could not run.
//
// Taking. An item enters the run when a worker (or a consumer running a
// stage in its own goroutine) pulls it from a source's puller. A pull is
// the only way an item is taken from the caller's world, and every puller
// refuses once the run is halted: cancelled, its input failed, or (under
// Until) its stop context is done.
//
// Tokens bound the read-ahead. Every queue between a stage and its consumer
// has capacity tokens (workers + buffer, + workers again when Ordered;
// none with Workers(-1)). A worker takes a token before it pulls an input;
// the token travels with the item's first output (or its forwarded error)
// and goes back to the queue when the consumer takes that output, or at
// once when the item had no output. Further outputs of the same item carry
// no token and wait while the queue holds capacity items. So a stage never
// holds more than capacity items its consumer has not taken: items being
// worked on, waiting for their key (KeyBy), parked in the reorder window
// (Ordered), or queued.
//
// Processing. One function, stepper.process (engine_process.go), does
// everything a stage does to one item, whichever goroutine runs it: a
// forwarded error passes through; otherwise it reports the item to the
// observer, calls the user's function (with retry, timeout and rate limit,
// a panic recovered in each attempt), wraps a failure in an *Error, applies
// the stage's policy, queues the outputs through an outlet, and settles the
// item's acknowledgement. Outlets differ only in where outputs go: the
// stage's queue (unordered workers), the reorder window (Ordered), or a
// consumer's hands (a stage run in its consumer's goroutine, see
// engine_fuse.go).
//
// Acknowledgements. An item from an AckSource carries an *ackNode in
// item.ack; an item never carries one in any other field. The node counts
// references: the processor holds the input's reference while it works on
// it; each output takes a reference of its own (a Batch takes its items'
// references into its batch's node; an Unbatch straight after a Batch gives
// each element its item's reference back). A reference is let go of in
// exactly one of three ways: released (the output was committed by the
// sink, or the item was dropped on purpose), failed (released with the
// error that ended its way: a forwarded *Error or a failed commit reached
// the sink, or its policy ended the run), or abandoned (the run ended
// before its fate was known: its function or its commit at the sink was
// cut short, or an output was dropped). The source's Ack.Done(err) is called at the first failure;
// Done(nil) once every reference was released and none abandoned; never
// otherwise. A reference still held when the run ends (an output left in a
// queue) keeps its item unsettled, so that the source redelivers it. What
// becomes of a reference depends only on what happened to it, never on
// the run's state at the moment it is let go of: an item whose function
// returned nil with every output queued is released even if the run was
// cancelled meanwhile (its outputs decide), and an item is abandoned only
// when an output of it was really dropped or its call failed while the run
// was ending: a stage takes any error its function returns (a panic
// included) once the run is cancelled for a consequence of the end, as
// the Watcher doc says, while a handler's or the sink's callback's error is
// cut short only if it says so (see endedBy).
//
// User code. Every call of a function the user gave goes through
// guard.Call, so that its panic becomes an error and never unwinds a
// goroutine of the run: a stage's function (processor.attempt), RetryIf's
// predicate (retry.again), a KeyBy key, a Handle or Budget handler, an
// Indexed function, a source's open, next and stop, an Ack's Done, an
// observer and its watchers (guardedWatcher), and the sinks' callbacks. So
// do the methods of user values that the engine calls on its own: a KeyBy
// key's hash (mustHash, inside the key's guard: K = any may hold a slice),
// and an error's Is, As and Unwrap when the engine classifies it (IsStop; a
// try's "nothing ready" in sourcePuller.take; the cancel cause in
// run.result). A new kind of callback, or
// a new place that inspects a user's error or hashes a user's value, joins
// this list, and a child-process test of its panic (promises_crash_test.go,
// usercode_test.go, review15_*).
//
// User code may also end its goroutine with runtime.Goexit (t.Fatal),
// which no guard can stop: everything after the call in that goroutine is
// skipped, except deferred calls. So what must happen after user code
// whatever becomes of the goroutine is deferred: a run goroutine's end
// (run.exit, which fails the run with ErrGoexit), a watched call's
// Finished (stepper.callWatched), the later cleanups (run.cleanUp), the
// locks held around user code (the source's and a key's). Goexit on the
// sink's goroutine ends the sink, whose deferred finish still waits for
// the run. A test of each: goexit_test.go, goexit_precedence_test.go. The
// caller's context's methods are user code too, called where the run
// cancels its context: run_userctx.go says what is deferred around them
// (review47 and review48 test it).
//
// Ending. A queue ends when its last producer closes it; a stage's
// producers close when their input has ended. Cancellation of the run's
// context wakes every wait. The sink's Run returns after run.finish has
// waited for every goroutine of the run and run the sources' stop
// functions; its result is a function of what the sink saw (run.result).
// Invariant: apart from the ends by design (a drain: a source failed, or
// Until's stop came, and the sources take no new item, but what they made
// before still leaves: an index a source numbered and lost is a gap that
// an Ordered window closes, see puller), a producer stops before its input
// ended, or leaves items stranded (an Ordered window behind a lost item, a
// KeyBy gate behind a failed key), only once the run
// is cancelled, or its parent's end is on its way to the run's context (a
// stage failure then is not the run's: run.fail), or a Goexit ended
// it (run.goexit; recorded after its queue was closed, so possibly after
// the sink saw the end: see run.finishedAfterParent). So a stream end the
// sink sees proves the run complete only when none of these holds
// (run.sawEnd, run.result): a new way for a producer to stop early, or to
// strand items, must cancel the run or be one of them.

// item is what travels between stages: a value, or a forwarded error in its
// place, with the acknowledgement it carries and its flags. An item is
// copied at every step of its way, so it stays four words (item[int] is 32
// bytes): a forwarded error is always an *Error, so one pointer holds it.
type item[T any] struct {
	v     T
	err   *Error   // the forwarded error in the value's place, or nil
	ack   *ackNode // the acknowledgement, or nil
	flags flags
}

// failure is the forwarded error as an error (nil for a value: never a
// typed nil).
func (it item[T]) failure() error {
	if it.err == nil {
		return nil
	}
	return it.err
}

type flags uint8

const (
	// tok: the item carries its producer's backpressure token (see queue).
	tok flags = 1 << iota
	// baton: no item, a worker's place handed to the consumer (see fuseRun).
	baton
	// owed: handed to a consumer that was waiting for it; its token went
	// back at once (see queue.push).
	owed
	// gap: no item, and pull's ok is false: the puller had numbered this
	// index and lost it (an Indexed at panicked), so that an Ordered
	// stage's worker closes the index in its window (see puller).
	gap
)

func (it item[T]) is(f flags) bool { return it.flags&f != 0 }

func tokIf(b bool) flags {
	if b {
		return tok
	}
	return 0
}

// puller is a stream opened in one run. pull returns the next item and its
// 0-based index in the stream, or ok == false when the stream has ended:
// exhausted, stopped by a source error or a drain, or cancelled. pull is
// safe for concurrent use; it takes an item only when called, in the
// stream's order, and returns ok == false once the run is cancelled. That
// is how "no new item starts" holds for a cancelled run; so every path that
// gives a goroutine an item it did not pull (the items that waited for a
// KeyBy key, a fused handle's outputs in hand) looks at the run first, as
// pull does, and abandons what it holds. Any look must come after the user
// code it waits on: a source's next (or an Indexed at) may return after the
// cancel or cause it, a watcher's Finished may cancel between a put and a
// take, and a retry's backoff may end as the run does.
//
// Indexes are dense: a puller whose concurrent pulls number items before
// they are made (Indexed claims a position, then calls at outside any
// lock) and then loses one (at panicked: the source failed, a drain, not
// a cancellation) returns that index with ok == false and the gap flag,
// so that an Ordered stage's window, which emits index i only after every
// index before it, does not wait for it for ever with the later items
// stranded behind it (applier.loop closes it). Every other puller numbers
// an item once it holds it. Any other consumer may take a gap for the end,
// as each does today, because it either keeps no order (a fused handle,
// Batch, Tee, Merge, the sink) or pulls one at a time, so that no later
// index can have been claimed while at ran (KeyBy's workers pull under
// keyMu, Workers(-1) has one dispatcher). A new consumer that pulls
// concurrently and keeps an order must close gaps as applier.lost does.
type puller[T any] interface {
	pull() (it item[T], idx int, ok bool)
}

// tryPuller is a puller that can also take an item without waiting:
// tryPull returns ready == false, having taken nothing, when no item is
// ready and the stream has not ended (see Interruptible).
type tryPuller[T any] interface {
	puller[T]
	tryPull() (it item[T], idx int, ok, ready bool)
	// willTry says that tryPull will be called, before any pull: a pull
	// then waits in the source only after a try of its own found nothing,
	// so that a try that meets another's pull can tell a source that was
	// empty from a holder taking a ready item (see sourcePuller.tryPull).
	willTry()
}

// batchPuller is a puller from which the sink can take every ready item at
// once (see queue.pullAll).
type batchPuller[T any] interface {
	puller[T]
	pullAll(dst []item[T]) ([]item[T], bool)
}
