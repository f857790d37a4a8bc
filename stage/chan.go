package stage

import "sync/atomic"

// chanPuller reads a stage's output channel. Several goroutines may pull at
// once. When the producer is sequenced (one goroutine at a time sends, in a
// meaningful order) each item carries its index; otherwise the index is the
// order in which pulls received items.
type chanPuller[T any] struct {
	ch   <-chan item[T]
	done <-chan struct{}
	seqd bool
	n    atomic.Int64
}

func (p *chanPuller[T]) pull() (item[T], int, bool) {
	if p.cancelled() {
		return item[T]{}, 0, false
	}
	// A plain receive: if the run is cancelled meanwhile, the producer
	// closes ch once its goroutines are done.
	it, ok := <-p.ch
	if !ok || p.cancelled() {
		return item[T]{}, 0, false // no item starts once the run is cancelled
	}
	if p.seqd {
		return it, it.seq, true
	}
	return it, int(p.n.Add(1) - 1), true
}

func (p *chanPuller[T]) drain() {
	for range p.ch {
	}
}

func (p *chanPuller[T]) cancelled() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// send sends it on out and reports whether the run is still live. The send
// does not select on the run's done channel: after cancellation, the
// consumer drains out (see puller), so the send cannot block for good.
func send[T any](out chan<- item[T], it item[T], done <-chan struct{}) bool {
	out <- it
	select {
	case <-done:
		return false
	default:
		return true
	}
}
