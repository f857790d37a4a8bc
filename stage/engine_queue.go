package stage

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// queue carries a stage's outputs to its consumer. It takes the place of a
// channel: a queue under one mutex, so that a consumer that is behind takes
// what is ready without a hand-off per item (the sink takes everything queued
// at once), and nobody parks while there is work to do.
//
// Backpressure is by tokens. A producer takes a token before it pulls an
// input item; the token travels with the item's first output (or its
// forwarded error) and comes back when the consumer takes that output. So the
// items a stage has taken from upstream and its consumer has not yet taken
// never exceed the queue's capacity. Further outputs of the same item
// (FlatMap, Apply) carry no token: they wait instead while the queue already
// holds capacity items. A capacity below zero means no bound (Workers(-1)).
//
// Every wait is a sync.Cond wait; cancellation of the run broadcasts to all
// of them. Tokens are an atomic counter, so taking one while some are free
// costs one compare-and-swap.
type queue[T any] struct {
	r         *run
	unbounded bool // capacity < 0: no tokens

	free     atomic.Int64 // tokens not taken
	tokWait  atomic.Int64 // producers waiting for a token
	mu       sync.Mutex
	capacity int       // guarded by mu; grows when a fused stage adds a worker
	ring     []item[T] // the queue: size items from head, len is a power of two
	head     int
	size     int
	ready    atomic.Int64 // size, readable without mu
	// slow: the producers' calls are slow (set by applier.loop from its
	// timed calls), so a token-carrying item pushed while a consumer waits
	// is handed to it at once (see push).
	slow    atomic.Bool
	waiting int // consumer goroutines waiting for an item (under mu)
	held    int // tokens travelling with the sink's current batch
	writers int // producers that may still push; the queue ends at 0
	taken   int // items taken so far: the index of the next one
	canPop  sync.Cond
	canTake sync.Cond
	canPush sync.Cond

	// first is the ring until it grows; last, away from the fields that
	// producers and consumers touch without mu (free, ready).
	first [8]item[T]
}

func newQueue[T any](r *run, capacity, writers int) *queue[T] {
	p := new(queue[T])
	p.init(r, capacity, writers)
	return p
}

// init makes p, a zero queue, a new queue (see newQueue) in place: a queue
// may live inside what owns it.
func (p *queue[T]) init(r *run, capacity, writers int) {
	p.r, p.unbounded, p.capacity, p.writers = r, capacity < 0, capacity, writers
	p.ring = p.first[:]
	p.free.Store(int64(capacity))
	p.canPop.L, p.canTake.L, p.canPush.L = &p.mu, &p.mu, &p.mu
	r.onCancel(p)
}

// wake wakes every waiter: the run is cancelled.
func (p *queue[T]) wake() {
	p.mu.Lock()
	p.canPop.Broadcast()
	p.canTake.Broadcast()
	p.canPush.Broadcast()
	p.mu.Unlock()
}

// acquire takes a token, waiting for one; false means the run was cancelled.
func (p *queue[T]) acquire() bool {
	if p.unbounded {
		return !p.r.cancelled()
	}
	for {
		if f := p.free.Load(); f > 0 {
			if p.free.CompareAndSwap(f, f-1) {
				return true
			}
			continue
		}
		// None free: register as a waiter, then look again before sleeping.
		// give adds tokens before it looks for waiters, so one of the two
		// sees the other.
		p.mu.Lock()
		p.tokWait.Add(1)
		p.r.armWake()                                // before the last look at the run (see armWake)
		for p.free.Load() <= 0 && !p.r.cancelled() { // below 0: retireWorker took a token that is out
			p.canTake.Wait()
		}
		p.tokWait.Add(-1)
		p.mu.Unlock()
		if p.r.cancelled() {
			return false
		}
	}
}

// tryAcquire takes a token if one is free, without waiting (a consumer's
// handle holding a place of a fused Ordered stage: see
// fuseHandle.ownStep).
func (p *queue[T]) tryAcquire() bool {
	if p.unbounded {
		return !p.r.cancelled()
	}
	for {
		f := p.free.Load()
		if f <= 0 {
			return false
		}
		if p.free.CompareAndSwap(f, f-1) {
			return true
		}
	}
}

// release gives back n tokens that found no item, or whose item had no
// output; mu must not be held.
func (p *queue[T]) release(n int) {
	if n == 0 || p.unbounded {
		return
	}
	p.free.Add(int64(n))
	if p.tokWait.Load() > 0 {
		// Under mu, so that a waiter between its look and its Wait cannot
		// miss the wake-up.
		p.mu.Lock()
		p.canTake.Broadcast()
		p.mu.Unlock()
	}
}

// give is release for a caller that holds mu.
func (p *queue[T]) give(n int) {
	if n == 0 || p.unbounded {
		return
	}
	p.free.Add(int64(n))
	if p.tokWait.Load() > 0 {
		p.canTake.Broadcast()
	}
}

// push queues an output that carries its item's token (tok), or one
// whose memory is already accounted for (an Ordered stage's parked outputs).
func (p *queue[T]) push(it item[T]) {
	p.mu.Lock()
	// Items are taken in order, and every waiting consumer takes one when
	// it wakes: the item is in a consumer's hands if fewer items are queued
	// ahead of it than consumers wait.
	handed := p.slow.Load() && it.is(tok) && p.size < p.waiting
	if handed {
		// A consumer waits for this item: it is in its hands now, as an
		// unbuffered send completes when a receiver waits, so the token goes
		// back and the producer goes on without waiting for the consumer to
		// wake, take it, and come back. The bound on what the stage runs
		// ahead holds with the item in the consumer's hands.
		it.flags = it.flags&^tok | owed
		p.give(1)
	}
	p.put(it)
	p.mu.Unlock()
	p.canPop.Signal()
	if handed {
		// Let the consumer run here now, rather than wait behind this
		// producer's next call (a woken goroutine waits on this processor).
		runtime.Gosched()
	}
}

// pushBatch queues items in order (an Ordered stage's emitter) and gives
// back release tokens of items that had no output.
func (p *queue[T]) pushBatch(items []item[T], release int) {
	p.mu.Lock()
	for _, it := range items {
		p.put(it)
	}
	p.give(release)
	p.mu.Unlock()
	if len(items) == 1 {
		p.canPop.Signal()
	} else if len(items) > 1 {
		p.canPop.Broadcast()
	}
}

// waitRoom waits while the queue holds capacity items or more (an Ordered
// stage's emitter, before it moves the outputs a running head parked); it
// returns at once when the run is cancelled.
func (p *queue[T]) waitRoom() {
	p.mu.Lock()
	for p.capacity > 0 && p.size >= p.capacity {
		p.r.armWake() // before the last look at the run (see armWake)
		if p.r.cancelled() {
			break
		}
		p.canPush.Wait()
	}
	p.mu.Unlock()
}

// pushExtra queues an output without a token, waiting while the queue is
// full; false means the run was cancelled.
func (p *queue[T]) pushExtra(it item[T]) bool {
	p.mu.Lock()
	for p.capacity > 0 && p.size >= p.capacity {
		p.r.armWake() // before the last look at the run (see armWake)
		if p.r.cancelled() {
			p.mu.Unlock()
			return false
		}
		p.canPush.Wait()
	}
	p.put(it)
	p.mu.Unlock()
	p.canPop.Signal()
	return true
}

// put appends it to the ring, growing it when full; called with mu held.
func (p *queue[T]) put(it item[T]) {
	if p.size == len(p.ring) {
		ring := make([]item[T], 2*len(p.ring))
		for i := range p.size {
			ring[i] = p.ring[(p.head+i)&(len(p.ring)-1)]
		}
		p.ring, p.head = ring, 0
	}
	p.ring[(p.head+p.size)&(len(p.ring)-1)] = it
	p.size++
	p.ready.Store(int64(p.size))
}

// closeWriter ends one producer; the queue ends when the last one has.
func (p *queue[T]) closeWriter() {
	p.mu.Lock()
	p.writers--
	if p.writers == 0 {
		p.canPop.Broadcast()
	}
	p.mu.Unlock()
}

// addWriter adds a producer (Workers(-1) starts one per item).
func (p *queue[T]) addWriter() {
	p.mu.Lock()
	p.writers++
	p.mu.Unlock()
}

// addWorker adds a worker goroutine and its token: a fused stage's consumer
// gave its place back (see fuseRun.spawn).
func (p *queue[T]) addWorker() {
	p.mu.Lock()
	p.writers++
	p.capacity++
	p.give(1)
	p.mu.Unlock()
}

// retireWorker takes a worker's token away (unless keep: an Ordered
// stage's tokens stay with its places, see fuseRun) and queues a
// baton, which wakes a consumer goroutine that may be waiting for a place
// (see fuseRun.retire). The token may be out with a queued item; free then
// stays below zero until that item is taken.
func (p *queue[T]) retireWorker(keep bool) {
	p.mu.Lock()
	if !keep {
		p.capacity--
		p.free.Add(-1)
	}
	p.put(item[T]{flags: baton})
	p.mu.Unlock()
	p.canPop.Signal()
}

// wait waits for an item; called with mu held. It reports false when the
// queue has ended or the run was cancelled.
func (p *queue[T]) wait() bool {
	for p.size == 0 {
		if p.writers == 0 { // ended: no sleep, so no need to arm (a small run ends here)
			return false
		}
		p.r.armWake() // before the last look at the run (see armWake)
		if p.r.cancelled() {
			return false
		}
		p.waiting++
		p.canPop.Wait()
		p.waiting--
	}
	return !p.r.cancelled() // no item starts once the run is cancelled
}

// pull takes the next item for a stage's worker. The item's token comes
// back: from now on the item counts against the consumer's own tokens.
func (p *queue[T]) pull() (item[T], int, bool) {
	p.mu.Lock()
	if !p.wait() {
		p.mu.Unlock()
		return item[T]{}, 0, false
	}
	it := p.ring[p.head]
	p.ring[p.head] = item[T]{}
	p.head = (p.head + 1) & (len(p.ring) - 1)
	p.size--
	p.ready.Store(int64(p.size))
	idx := p.taken
	if !it.is(baton) {
		p.taken++
	}
	if it.is(tok) {
		p.give(1)
	}
	p.mu.Unlock()
	p.canPush.Signal()
	return it, idx, true
}

// releaseHeld gives back the tokens of the sink's last batch, which it has
// consumed, and reports whether a producer was waiting for them.
func (p *queue[T]) releaseHeld() bool {
	if p.held == 0 { // only the sink's goroutine writes held
		return false
	}
	p.mu.Lock()
	woke := p.tokWait.Load() > 0
	p.give(p.held)
	p.held = 0
	p.mu.Unlock()
	return woke
}

// pullAll is pullBatch for a queue that carries no batons.
func (p *queue[T]) pullAll(dst []item[T]) ([]item[T], bool) {
	dst, _, ok := p.pullBatch(dst)
	return dst, ok
}

// pullBatch appends every queued item to dst, for the sink, and counts the
// batons among them (which it leaves out). The tokens of the batch come back
// on the next call, once the sink has consumed it, so the sink's batch counts
// as not yet consumed.
func (p *queue[T]) pullBatch(dst []item[T]) ([]item[T], int, bool) {
	p.mu.Lock()
	p.give(p.held)
	p.held = 0
	if !p.wait() {
		p.mu.Unlock()
		return dst, 0, false
	}
	batons := 0
	for range p.size {
		it := p.ring[p.head]
		p.ring[p.head] = item[T]{}
		p.head = (p.head + 1) & (len(p.ring) - 1)
		switch {
		case it.is(baton):
			batons++
			continue
		case it.is(tok):
			p.held++
		}
		dst = append(dst, it)
		p.taken++
	}
	p.size = 0
	p.ready.Store(0)
	p.mu.Unlock()
	p.canPush.Broadcast()
	return dst, batons, true
}
