package stage

import "context"

// Apply is the primitive every stage is written with ([Map], [Filter],
// [FlatMap] and [Concurrent] are a few lines over it). It calls f once per
// input item, under the stage's options; f passes zero or more outputs to
// emit, in order, and returns nil, or an error that the stage's error policy
// handles (an *[Error] with the item's index and input). Outputs emitted
// before an error still go downstream.
//
// emit queues an output for the stage's consumer and returns true. Call it
// from f's goroutine and before f returns: it is not safe for concurrent
// use, and an output emitted after f returned may reach the consumer after
// the item was acknowledged. The
// first output of an item never waits: it takes the read-ahead place the
// item took from upstream. Each further output waits while the stage's
// queue holds as many outputs as its read-ahead bound (workers + buffer;
// with [Ordered], its window's 2×workers + buffer), until the consumer
// takes some (outputs the consumer has taken but not
// finished with do not count). emit returns false, and drops the output, once
// the run is cancelled; f should then return. With [Ordered], an item's
// outputs wait in memory until the items before it have left, and a further
// output waits while the window holds 2×workers + buffer further outputs
// (of any of its items) waiting so, not before (an f must then not wait
// for a later item of its stage: that item may wait for it); the moment
// they have, the outputs waiting go to the queue,
// even while f still runs, and from then on emit queues them directly, so
// an item may emit without end once its turn has come, and may wait for
// its own outputs to be consumed. The outputs waiting go to the queue
// beyond its bound, so an Ordered Apply holds at most 4×(2×workers +
// buffer) outputs its consumer has not taken, plus one per item in its
// window: memory stays bounded.
//
// When f returns nil, the item counts as fully processed: an item from an
// [AckSource] is acknowledged once its outputs are committed. An f that
// stops early because its ctx is done should return ctx.Err(), so that the
// item is left unacknowledged.
//
// Forwarded errors from upstream pass through without a call of f. Workers,
// ordering, policy, name and buffer come from opts (see [Option]); the
// default name is "apply" and its position (see [Name]). Apply panics if in
// is the zero Stream or f is nil.
func Apply[In, Out any](in Stream[In], f func(ctx context.Context, v In, emit func(Out) bool) error, opts ...Option) Stream[Out] {
	checkFunc(f == nil, "stage.Apply", "function")
	return apply("stage.Apply", "apply", in, func(ctx context.Context, v In, e emitter[Out]) error {
		return f(ctx, v, e.emitFunc())
	}, opts, emitsWhileRunning)
}

// shape is what the engine may assume of a stage's function.
type shape uint8

const (
	// emitsWhileRunning: f emits any number of outputs while it runs
	// (Apply): the stage never runs in its consumer's goroutines.
	emitsWhileRunning shape = iota
	// emitsAfter: f emits a bounded number of outputs once the user's
	// function has returned (FlatMap, Unbatch): the stage may run in its
	// consumer's goroutine, when its consumer has one (see fuseRun).
	emitsAfter
	// emitsOne: as emitsAfter, and at most one output (Map, Filter,
	// Concurrent): the output takes over the item's acknowledgement
	// reference instead of adding one.
	emitsOne
)

// apply builds a stage whose function has the given shape.
func apply[In, Out any](fn, kind string, in Stream[In], f func(context.Context, In, emitter[Out]) error, opts []Option, sh shape) Stream[Out] {
	in.check(fn)
	checkFunc(f == nil, fn, "function")
	d := &applyStage[In, Out]{in: in, f: f}
	cfg := &d.cfg
	cfg.set(fn, kind, opts)
	checkKey[In](cfg, fn)
	cfg.eager = sh == emitsWhileRunning // its outputs may come while f runs, without bound
	cfg.single = sh == emitsOne
	d.inputs[0] = in.n
	d.node = node{kind: kind, inputs: d.inputs[:], waits: in.n.waits}
	st := Stream[Out]{n: &d.node, open: d}
	// Over a source that may wait, only if its next can be asked for an
	// item that is ready (Interruptible): a consumer goroutine must never
	// wait in it. Ordered, only over a source that never waits (see
	// fuseRun).
	if d.fusable() && cfg.workers > 1 && cfg.buffer == 0 && (!in.n.waits || in.n.tries) && (!cfg.ordered || !in.n.waits) {
		st.fuseConsumers = cfg.workers
		if !cfg.single || cfg.ordered {
			// A handle holding a place hands its item's outputs to its own
			// goroutine only: with many outputs, the consumer's other
			// goroutines would go without (they end once the places are
			// with handles and the queue ends), and a function of the
			// consumer that waits for its peers would wait for ever.
			// Ordered: a handle's outputs go through the reorder window
			// and the queue like the goroutines', and a consumer of one
			// goroutine takes them in order (see fuseHandle.pullOrdered).
			st.fuseConsumers = 1
		}
		st.fuse = d
	}
	return st
}

// applyStage is a stage as built: one allocation for its configuration,
// its node and its input, whatever the stage's kind. Its size is part of
// the cost of a short run.
type applyStage[In, Out any] struct {
	cfg    config
	in     Stream[In]
	f      func(context.Context, In, emitter[Out]) error
	node   node
	inputs [1]*node
}

// fusable reports whether the stage may run in its consumer's goroutines:
// its function emits once it returned, it is not keyed (see fuseRun), and
// it has no rate limit: a consumer goroutine waiting for a token would
// hold the outputs that other workers finished meanwhile (for as long as
// the bucket takes to give one), where a worker of the stage's own holds
// only its place.
func (d *applyStage[In, Out]) fusable() bool {
	return !d.cfg.eager && d.cfg.key == nil && !d.cfg.rateLimited()
}

// open opens the stage for a consumer that pulls from any number of
// goroutines.
func (d *applyStage[In, Out]) open(r *run) puller[Out] {
	// Upstream first, so that observers meet the stages in order.
	serial := d.fusable() && d.cfg.workers == 1 && d.cfg.buffer == 0
	goroutines := d.cfg.goroutines(d.in.n.expected())
	in := d.in.openFor(r, min(d.cfg.consumers(serial), goroutines))
	p := newProcessor(r, d.cfg.forRun(r, d.in.n), d.f)
	if serial {
		// The sequential path: consumers take turns calling f.
		return &serialHandle[In, Out]{h: newFuseRun(p, in, d.in.n.expected(), false).handle()}
	}
	return newApplier(p, goroutines).start(in)
}

// fuse opens the stage for a consumer whose goroutines may take its worker
// places (see fuseRun).
func (d *applyStage[In, Out]) fuse(r *run) handles[Out] {
	// Its places take input handles: over a source that never waits, no
	// more than the input's known items (see startIdle), as in open, so
	// that an input that fuses only for fewer consumers (an Ordered stage,
	// for one) does over a short input; over one that may wait, one per
	// worker (see newFuseRunWaiting).
	consumers := d.cfg.workers
	if !d.in.n.waits {
		consumers = d.cfg.goroutines(d.in.n.expected())
	}
	in := d.in.openFor(r, consumers)
	p := newProcessor(r, d.cfg.forRun(r, d.in.n), d.f)
	var fr *fuseRun[In, Out]
	if d.in.n.waits {
		fr = newFuseRunWaiting(p, in)
	} else {
		fr = newFuseRun(p, in, d.in.n.expected(), d.cfg.ordered)
	}
	return handles[Out]{fused: fr}
}
