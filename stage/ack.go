package stage

import (
	"context"
	"sync/atomic"
)

// Ack is how a source with acknowledgements (see [AckSource]) learns the
// fate of an item it produced: the basis of at-least-once delivery from a
// broker.
//
// Done is called at most once per item, when the item's way through the
// pipeline has ended:
//
//   - err == nil: the sink committed it (its callback returned nil), or
//     every output it led to was committed; or it was dropped on purpose: a
//     [Filter] that did not keep it, a FlatMap or Apply call with no output,
//     a [Handle] policy that accepted its failure. An item that fans out
//     ([FlatMap], [Tee]) is done when all its outputs are; an item in a
//     [Batch] is done when its batch is; an [Unbatch] straight after a
//     Batch gives each element its item's acknowledgement back, so that
//     each is settled on its own.
//   - err != nil: the first error on its way: a forwarded *[Error] that
//     reached the sink, or the error of the sink callback that got it (the
//     commit failed).
//
// Done is not called when the run ended before the item's fate was known: a
// [FailFast] error, a cancelled context, a sink that stopped early. The
// source then leaves the item unacknowledged, and a broker redelivers it.
// Done is called from the goroutine that settled the item (a worker, or the
// sink's) and must be safe for that; it should not block for long.
type Ack interface {
	Done(err error)
}

// AckSource is [Source] for a source whose items carry an [Ack]: next
// returns the item and its acknowledgement (nil: none for this item). The
// rest is as in Source (next may wait). Acknowledgements cost a source without them
// nothing: the engine only looks at a pointer that is nil.
//
// Cost: one small allocation per item that has an Ack, and an atomic add
// per output and per settlement.
func AckSource[T any](open func(ctx context.Context) (next func(ctx context.Context) (T, Ack, error), stop func())) Stream[T] {
	checkFunc(open == nil, "stage.AckSource", "open function")
	return sourceStream("stage.AckSource", true, func(p *sourcePuller[T]) { p.nextAck, p.stop = open(p.ctx) })
}

// ackNode tracks one acknowledgement through the pipeline: the references
// to it that are still on their way (the item held by a worker, each of
// its outputs), and the first error. When the last reference is settled, it
// calls the source's Ack (or, for a batch, settles its members).
type ackNode struct {
	ack     Ack
	members []*ackNode // a Batch's: settled together with the batch
	refs    atomic.Int32
	err     atomic.Pointer[error]
}

func newAckNode(a Ack) *ackNode {
	n := &ackNode{ack: a}
	n.refs.Store(1)
	return n
}

// split takes the members of a batch's acknowledgement, for Unbatch to
// hand one to each element, if the caller holds the only reference to n
// (a Tee may share a batch with a branch that keeps it whole); else nil.
func (n *ackNode) split() []*ackNode {
	if n == nil || len(n.members) == 0 || n.refs.Load() != 1 {
		return nil
	}
	m := n.members
	n.members = nil
	return m
}

// next returns the acknowledgement of the next output: the next member of
// a split batch (its reference moves to the output), or a new reference to
// n.
func nextAck(n *ackNode, split []*ackNode, i *int) error {
	if split != nil {
		if *i < len(split) {
			a := split[*i]
			*i++
			return withAck(nil, a)
		}
		return nil
	}
	return n.carry()
}

// Error makes an ackNode fit in an item's err field (see item); it never
// reaches the user.
func (n *ackNode) Error() string { return "sluice: acknowledgement" }

// ref adds a reference for a new output and returns n; nil stays nil.
func (n *ackNode) ref() *ackNode {
	if n != nil {
		n.refs.Add(1)
	}
	return n
}

// carry adds a reference for a new value output and returns its err field.
func (n *ackNode) carry() error {
	if n == nil {
		return nil
	}
	n.refs.Add(1)
	return n
}

// settle drops one reference, recording err if it is the first error.
func (n *ackNode) settle(err error) {
	if n != nil {
		n.drop(err)
	}
}

// fail records err if it is the first error. (Apart from settle, so that
// only a failure moves its error to the heap.)
func (n *ackNode) fail(err error) { n.err.CompareAndSwap(nil, &err) }

func (n *ackNode) drop(err error) {
	if err != nil {
		n.fail(err)
	}
	if n.refs.Add(-1) != 0 {
		return
	}
	var first error
	if p := n.err.Load(); p != nil {
		first = *p
	}
	if n.ack != nil {
		n.ack.Done(first)
	}
	for _, m := range n.members {
		m.settle(first)
	}
}
