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
	// Checked first so that no item is taken once the run is cancelled,
	// even when the channel has one ready.
	select {
	case <-p.done:
		return item[T]{}, 0, false
	default:
	}
	var it item[T]
	var ok bool
	select {
	case it, ok = <-p.ch: // fast path: locks only ch, not the shared done
	default:
		select {
		case it, ok = <-p.ch:
		case <-p.done:
			return item[T]{}, 0, false
		}
	}
	if !ok {
		return it, 0, false
	}
	if p.seqd {
		return it, it.seq, true
	}
	return it, int(p.n.Add(1) - 1), true
}

// send sends it on out unless done is closed first; it reports whether it
// sent. A first attempt without done avoids locking the done channel, which
// every goroutine of the run shares, when out is ready.
func send[T any](out chan<- item[T], it item[T], done <-chan struct{}) bool {
	select {
	case out <- it:
		return true
	default:
	}
	select {
	case out <- it:
		return true
	case <-done:
		return false
	}
}
