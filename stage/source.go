package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sluicedev/sluice/internal/guard"
)

// Source is the primitive every source is written with. Each run calls open
// once, when the run is opened, with the run's context; open returns next,
// which produces the items, and stop (may be nil), which releases what open
// took.
//
// The run calls next only when a stage (or the sink) is ready to work on an
// item, never concurrently, and never once the run is cancelled or its input
// has ended. The ctx given to open and next is the run's context; it also
// ends when another source of the run fails, and under [Until] when the
// stop context is done (a moment after: it is cancelled from a goroutine
// of the run's): an error next returns once stop is done ends the stream
// quietly, whether or not its context has ended yet. next returns io.EOF
// (itself, not an error wrapping it) to end the stream, and the item
// returned with an error is not delivered; any other error (or a panic in
// open, next or stop) becomes a *[SourceError] that ends the run: items
// produced before it still go through, then the sink returns it. stop is called once every goroutine of the run has
// exited, whether the run succeeded, failed or stopped early. A source that
// finds a failure after its last item (a connector whose acknowledgements
// fail during a drain, when next is no longer called) reports it by
// panicking in stop with a *SourceError: the run fails with that error as
// it is, unless its result was decided first (a failure, a cancellation, an
// early stop).
//
// next may wait for outside events (a channel, a socket, a queue) as long as
// it likes: a stage of more than one worker calls it from goroutines of its
// own, so that no consumer waits in next while outputs wait for it. Two
// consumers call it from their own goroutine, where nothing else can be
// waiting for them: a stage of one worker without a Buffer, once its calls
// prove cheap or when its input holds one item (the sequential path, see
// [Workers]), and a sink that reads the source directly. If next never waits (a counter, an iterator over
// memory), [NeverWaits] lets a cheap stage over it run in its consumer's
// goroutines, which is faster.
//
// Cost: one uncontended mutex per item, plus next.
func Source[T any](open func(ctx context.Context) (next func(ctx context.Context) (T, error), stop func())) Stream[T] {
	checkFunc(open == nil, "stage.Source", "open function")
	return sourceStream("stage.Source", func(p *sourcePuller[T]) { p.next, p.stop = open(p.ctx) })
}

// NeverWaits returns s marked as a source whose next never waits for
// outside events: it computes the next item from what it has in hand (a
// counter, a slice, an iterator over memory, a parser of data already
// read). Then a cheap unordered stage over it may run in the goroutines of
// its consumer instead of its own (see [Workers]), which saves a hand-off
// between goroutines per item.
//
// The claim is yours to keep: if next does wait (for a channel, a reply, a
// lock held elsewhere), a consumer goroutine that called it sits in the
// wait while outputs the stage's other workers have finished wait behind
// it, until the next input arrives. Without NeverWaits every source is
// treated as one that may wait, which is always safe.
//
// NeverWaits panics if s is not a stream made by [Source] or [AckSource]
// (or a source of package source written with them, such as source.Func
// or source.Seq).
func NeverWaits[T any](s Stream[T]) Stream[T] {
	return markSource("stage.NeverWaits", s, func(n *node) { n.waits = false })
}

// Interruptible returns s marked as a source whose next, called with a
// context that is already done, returns at once: an item if one is ready
// without waiting, else the context's error (source.Chan's next and a
// select on a queue and ctx.Done() do; a next that blocks in a read does
// not). Then a cheap unordered stage over it may run partly in its
// consumer's goroutines, as over a source that never waits (see
// [Workers]): a consumer goroutine asks next for an item that is ready,
// and leaves the waiting to the stage's own workers, at least one of which
// stays a goroutine of the stage (a stage of one worker is the exception
// that [Source] describes: its calls, and next, may all run in its
// consumer's goroutine, whatever the source). This saves the hand-off
// between goroutines for every item that is ready when the consumer asks. A
// consumer goroutine that found nothing ready waits for the stage's next
// output with its place, so after the source was empty fewer than n calls
// may run (as few as the stage's own goroutines, one or more) until
// outputs come: a function that waits for other calls of its stage needs
// Buffer(1) (see [Workers]). So that a consumer goroutine that finds
// another call of next in progress can tell an empty source from one
// taking a ready item (it then waits for that call), the stage's own
// goroutines also ask with a done context first, and call next with the
// run's context only when that found nothing ready: over an empty source
// each wait costs one more call of next, and one more when a consumer
// goroutine asks at that moment (the stage's goroutine then lets it go
// first and asks again).
//
// The claim is yours to keep: a next that waits although its context is
// done would hold a consumer goroutine, and with it the outputs the stage's
// other workers have finished; and one that answers a done context with an
// error other than the context's fails the run (io.EOF ends it) the first
// time it is asked while nothing is ready. Interruptible panics if s is
// not a stream made by [Source] or [AckSource].
func Interruptible[T any](s Stream[T]) Stream[T] {
	return markSource("stage.Interruptible", s, func(n *node) { n.tries = true })
}

// markSource returns s with a copy of its node changed by mark, whose input
// is s's node, so that s and the marked stream count as one; fn names
// the caller, which panics unless s is a source made by Source or
// AckSource.
func markSource[T any](fn string, s Stream[T], mark func(*node)) Stream[T] {
	s.check(fn)
	if !s.n.source {
		panic("sluice: " + fn + ": the stream is not a source made by stage.Source or stage.AckSource")
	}
	n := *s.n
	n.inputs = []*node{s.n} // the same source: a pipeline may not use both (see checkDisjoint)
	mark(&n)
	s.n = &n
	return s
}

// sourceStream is a source primitive's stream: open sets the puller's next
// (or nextAck) and stop, once per run; fn names the primitive.
func sourceStream[T any](fn string, open func(p *sourcePuller[T])) Stream[T] {
	return Stream[T]{
		n: &node{kind: "source", waits: true, source: true},
		open: openFunc[T](func(r *run) puller[T] {
			p := &sourcePuller[T]{r: r, scope: r.scope, ctx: r.scope.context(r)}
			rec := guard.Call(func() { open(p) })
			switch {
			case rec != nil:
				p.fail(panicError(rec))
			case p.next == nil && p.nextAck == nil:
				p.fail(fmt.Errorf("sluice: %s: open returned a nil next function", fn))
			}
			if p.stop != nil {
				r.onFinish(p.stop)
			}
			return p
		}),
	}
}

type sourcePuller[T any] struct {
	r     *run
	scope *drainScope     // nil unless under Until
	ctx   context.Context // the run's, or the scope's
	// nextAck replaces next for an AckSource.
	nextAck func(context.Context) (T, Ack, error)
	next    func(context.Context) (T, error)
	stop    func()

	mu     sync.Mutex
	tryCtx context.Context // done from the start: the context of a try (see tryPull)
	// tried: consumer handles try the source (see willTry); set before
	// any goroutine pulls it.
	tried bool
	// waiting: a pull waits in next with the live context, after a try
	// under the same lock found nothing ready; contenders: tries that
	// found the lock held and are deciding whether to wait for it (see
	// tryPull and pullAfterTry).
	waiting    atomic.Bool
	contenders atomic.Int32
	n          int       // items produced
	ended      bool      // next returned an error or panicked
	slab       []ackNode // acknowledgement nodes not handed out yet (see newAck)
}

// ackSlab is how many acknowledgement nodes a source allocates at once:
// one allocation per 64 items instead of one per item. A slab stays in
// memory while any of its nodes is in use; the read-ahead bounds them.
const ackSlab = 64

// newAck returns a new node for a, taken from the puller's slab; called
// with mu held.
func (p *sourcePuller[T]) newAck(a Ack) *ackNode {
	if len(p.slab) == 0 {
		p.slab = make([]ackNode, ackSlab)
	}
	n := &p.slab[0]
	p.slab = p.slab[1:]
	n.r, n.ack = p.r, a
	n.refs.Store(1)
	return n
}

func (p *sourcePuller[T]) pull() (item[T], int, bool) {
	if p.tried {
		return p.pullAfterTry()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	it, idx, ok, _ := p.take(p.ctx)
	return it, idx, ok
}

// willTry says that consumer handles will try the source (see tryPull);
// called before any goroutine pulls it.
func (p *sourcePuller[T]) willTry() { p.tried = true }

// tryPull is pull for a goroutine that must not wait (see tryPuller): it
// takes an item only if the source has one ready, asking next with a
// context that is already done (Interruptible promises that next then
// returns at once). ready is false when it took nothing and the stream
// has not ended.
//
// The source's lock held by someone else is no answer: the holder may be
// taking a ready item, and a handle that took that for "nothing ready"
// would wait for an output with its place while items are ready (fewer
// than n calls over a source that was never empty). So a try waits for
// the lock unless its holder waits in next because the source was empty
// (waiting, which only pullAfterTry sets, after a try of its own found
// nothing); every other holder is in a try, which returns at once. The
// handshake: a try counts itself in contenders, then looks at waiting; a
// pull sets waiting, then looks at contenders, and if it sees one it does
// not wait in next but lets the lock go until no try is deciding. So a try
// that saw waiting unset waits only for a holder that will not wait in
// next (sequentially consistent atomics: at least one of the two sees the
// other's write).
func (p *sourcePuller[T]) tryPull() (it item[T], idx int, ok, ready bool) {
	if !p.mu.TryLock() {
		p.contenders.Add(1)
		if p.waiting.Load() {
			p.contenders.Add(-1)
			return item[T]{}, 0, false, false // the source was empty: someone waits in next
		}
		p.mu.Lock()
		p.contenders.Add(-1)
	}
	defer p.mu.Unlock()
	return p.take(p.tryContext())
}

// tryContext is the context of a try: done from the start; called with mu
// held.
func (p *sourcePuller[T]) tryContext() context.Context {
	if p.tryCtx == nil {
		ctx, cancel := context.WithCancelCause(p.ctx)
		cancel(errNotReady)
		p.tryCtx = ctx
	}
	return p.tryCtx
}

// pullAfterTry is pull for a source that consumer handles try (see
// tryPull): it takes a ready item as a try does, and waits in next with
// the live context only after a try found none, with waiting set, and
// only while no try is deciding whether to wait for the lock.
func (p *sourcePuller[T]) pullAfterTry() (item[T], int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		// While a try is deciding (it may have seen waiting unset and wait
		// for the lock), let it have the lock: first, so that the stage's
		// goroutines queued on the lock do not each call next meanwhile,
		// and again if one came between this try and the wait.
		if p.contenders.Load() == 0 {
			it, idx, ok, ready := p.take(p.tryContext())
			if ready {
				return it, idx, ok
			}
			p.waiting.Store(true)
			if p.contenders.Load() == 0 {
				break
			}
			p.waiting.Store(false)
		}
		p.mu.Unlock()
		for p.contenders.Load() > 0 {
			runtime.Gosched()
		}
		p.mu.Lock()
	}
	defer p.waiting.Store(false)
	it, idx, ok, _ := p.take(p.ctx)
	return it, idx, ok
}

// errNotReady is the cause of the context of a try (see tryPull).
var errNotReady = errors.New("sluice: no item ready")

// take calls next with ctx and numbers the item; called with mu held.
// Under a try (ctx is p.tryCtx), an error that ctx's end explains means
// that no item was ready: ready is false.
func (p *sourcePuller[T]) take(ctx context.Context) (it item[T], idx int, ok, ready bool) {
	if p.ended || p.r.halted() || p.scope.stopped() {
		return item[T]{}, 0, false, true
	}
	var v T
	var a Ack
	var err error
	notReady := false
	rec := guard.Call(func() {
		if p.nextAck != nil {
			v, a, err = p.nextAck(ctx)
		} else {
			v, err = p.next(ctx)
		}
		// A try's context is done from the start: next returning its
		// error means nothing was ready. Asking calls err's own methods
		// (Is, Unwrap), which are user code: under the guard too.
		notReady = err != nil && ctx == p.tryCtx && (errors.Is(err, errNotReady) || errors.Is(err, context.Canceled))
	})
	if rec != nil {
		// A panic is a failure, whatever its value (panic(ctx.Err())
		// too), and so is one in err's methods.
		err, notReady = panicError(rec), false
	}
	if err != nil {
		if notReady && p.ctx.Err() == nil {
			return item[T]{}, 0, false, false
		}
		// At the end of its input, or drained: an error next returns once
		// Until's stop is done ends the stream quietly, as Source promises
		// (stop itself is looked at: the scope's context ends a moment
		// later, from a goroutine of its own, and a drain followed by a
		// close of what next waits on must not fail the run by timing);
		// so does one once another source failed, when the source's
		// context ended: its error is a consequence, not a failure.
		// io.EOF itself ends the stream, as io.Reader's contract has it;
		// an error that wraps it, or a panic with it, is a failure.
		// A panic is no error next returned: it fails the run whenever it
		// comes.
		if rec != nil || err != io.EOF && !p.scope.stopped() && !(p.r.draining.Load() && p.ctx.Err() != nil) {
			p.fail(err)
		}
		p.ended = true
		return item[T]{}, 0, false, true
	}
	if p.r.ending() {
		// next returned after the run was cancelled (it may wait, and it is
		// user code; or its parent's end is on its way: see ending): no new
		// item starts, so this one is not taken (its Ack
		// is never told; the source's stop gives it back).
		return item[T]{}, 0, false, true
	}
	i := p.n
	p.n++
	it = item[T]{v: v}
	if a != nil {
		it.ack = p.newAck(a)
	}
	return it, i, true, true
}

func (p *sourcePuller[T]) fail(err error) {
	p.ended = true
	p.r.sourceFailed(&SourceError{Err: err})
}
