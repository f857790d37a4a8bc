package stage

import (
	"context"
	"fmt"
	"time"
)

// Batch groups the items of in into slices of up to size items, in input
// order. A batch leaves when it is full, when timeout has passed since its
// first item arrived (timeout 0: only when full), or when the input ends,
// whether exhausted or drained by [Until]: the last, partial batch is never
// lost. A forwarded error is a batch boundary: the batch before it leaves
// first, then the error, in order. A FailFast error or a cancelled run
// drops the partial batch, as it drops every item in flight.
//
// Batch runs two goroutines: one pulls from in, one fills the batches and
// keeps the timer. It holds at most size+1 items of in, plus one finished
// batch that waits for its consumer. Each batch is a new slice that the
// consumer may keep; its capacity follows the batches' sizes (it starts
// small and grows), so a large size costs memory only when batches fill
// up. Batch panics if in is the zero Stream, size < 1 or timeout < 0.
func Batch[T any](in Stream[T], size int, timeout time.Duration) Stream[[]T] {
	in.check("stage.Batch")
	if size < 1 {
		panic(fmt.Sprintf("sluice: stage.Batch: size = %d, want 1 or more", size))
	}
	if timeout < 0 {
		panic(fmt.Sprintf("sluice: stage.Batch: negative timeout %v", timeout))
	}
	return Stream[[]T]{
		// The number of batches depends on timing: the total is unknown.
		n: &node{kind: "batch", inputs: []*node{in.n}, waits: in.n.waits, batches: true},
		open: openFunc[[]T](func(r *run) puller[[]T] {
			b := &batcher[T]{r: r, size: size, timeout: timeout, in: in.openFor(r, 1).next(), items: make(chan item[T])}
			b.out = newQueue[[]T](r, 1, 1)
			r.goroutine(b.read)
			r.goroutine(b.fill)
			return b.out
		}),
	}
}

type batcher[T any] struct {
	r       *run
	size    int
	timeout time.Duration
	in      puller[T]
	items   chan item[T] // read → fill; read closes it
	out     *queue[[]T]
	batch   []T
	acks    []*ackNode // the batch's items' acknowledgements, one per item; nil while none has one
	last    int        // the length of the last batch, for the next one's capacity
}

// read moves the input's items to fill.
func (b *batcher[T]) read() {
	defer close(b.items)
	done := b.r.ctx.Done()
	for {
		it, _, ok := b.in.pull()
		if !ok {
			return
		}
		select {
		case b.items <- it:
		case <-done:
			return
		}
	}
}

// fill makes the batches.
func (b *batcher[T]) fill() {
	defer b.out.closeWriter()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var expired <-chan time.Time // timer.C while a batch waits for more
	done := b.r.ctx.Done()
	for {
		select {
		case it, ok := <-b.items:
			switch {
			case !ok: // the input ended: flush the last batch
				if !b.r.cancelled() {
					b.flush()
				}
				return
			case it.err != nil: // passes with its acknowledgement
				if !b.flush() || !b.send(item[[]T]{err: it.err, ack: it.ack}) {
					return
				}
				expired = nil
				continue
			}
			if len(b.batch) == 0 {
				b.batch = make([]T, 0, min(b.size, max(b.last, 16)))
				if b.timeout > 0 {
					timer.Reset(b.timeout)
					expired = timer.C
				}
			}
			if it.ack != nil && b.acks == nil {
				b.acks = make([]*ackNode, len(b.batch), cap(b.batch))
			}
			if b.acks != nil {
				b.acks = append(b.acks, it.ack)
			}
			if b.batch = append(b.batch, it.v); len(b.batch) == b.size {
				timer.Stop()
				expired = nil
				if !b.flush() {
					return
				}
			}
		case <-expired:
			expired = nil
			if !b.flush() {
				return
			}
		case <-done:
			return
		}
	}
}

// flush sends the current batch, if any; false means the run was cancelled.
func (b *batcher[T]) flush() bool {
	if len(b.batch) == 0 {
		return true
	}
	it := item[[]T]{v: b.batch}
	if b.acks != nil { // settled when the batch is (or, by Unbatch, one by one)
		it.ack = newGroup(b.r, b.acks)
	}
	b.last = len(b.batch)
	b.batch, b.acks = nil, nil
	return b.send(it)
}

// send waits for room and queues it; false means the run was cancelled.
func (b *batcher[T]) send(it item[[]T]) bool {
	if !b.out.acquire() {
		return false
	}
	it.flags |= tok
	b.out.push(it)
	return true
}

// Unbatch flattens a stream of slices into their elements, in order; it is
// the inverse of [Batch]. Forwarded errors pass through. It is a stage of
// one worker that holds one slice at a time; as its calls are cheap, it
// soon runs in its consumer's goroutine (see [Workers]), and at once over
// an input known to hold one item (its [Stream.Len] is 1). Straight after a Batch, each element takes back its own item's
// acknowledgement (see [Ack]), so that elements are settled one by one;
// elsewhere they share their slice's. Unbatch panics if in is the zero
// Stream.
func Unbatch[T any](in Stream[[]T]) Stream[T] {
	in.check("stage.Unbatch")
	opts := []Option{Workers(1)}
	if in.n.batches {
		// Element i of a Batch's slice is the batch's item i.
		opts = append(opts, Option{apply: func(c *config, _ int) { c.split = true }})
	}
	return apply("stage.Unbatch", "unbatch", in, func(_ context.Context, batch []T, e emitter[T]) error {
		for _, v := range batch {
			if !e.emit(v) {
				return nil
			}
		}
		return nil
	}, opts, emitsAfter)
}
