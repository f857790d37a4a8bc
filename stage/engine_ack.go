package stage

import (
	"sync/atomic"

	"github.com/sluicedev/sluice/internal/guard"
)

// ackNode tracks one acknowledgement through a run (see "The life of an
// item" in engine.go): the references to it still on their way, whether
// one was abandoned, and whether its fate was told. A Batch's node has no
// Ack of its own but members, the nodes of its items, each holding one
// reference owned by the batch.
type ackNode struct {
	r     *run
	ack   Ack    // nil for a Batch's node
	group *group // a Batch's node: its members
	refs  atomic.Int32
	state atomic.Uint32 // told | abandoned
}

// group is the members of a Batch's node, apart so that an item's node
// stays small (there is one per item: see sourcePuller.newAck).
type group struct{ members []*ackNode }

const (
	told      = 1 << iota // Done was called (or, for a batch, its members told)
	abandoned             // a reference was abandoned: never Done(nil)
)

// newGroup is a Batch's node over its items' nodes, whose references it
// takes over.
func newGroup(r *run, members []*ackNode) *ackNode {
	n := &ackNode{r: r, group: &group{members}}
	n.refs.Store(1)
	return n
}

// ref adds a reference for a new output and returns n; nil stays nil.
func (n *ackNode) ref() *ackNode {
	if n != nil {
		n.refs.Add(1)
	}
	return n
}

// release lets go of one reference: its output was committed or dropped on
// purpose (err == nil), or its way ended with err.
func (n *ackNode) release(err error) {
	if n != nil { // inlined: an item without acknowledgement costs a comparison
		n.drop(err)
	}
}

func (n *ackNode) drop(err error) {
	if err != nil {
		n.fail(err)
	}
	if n.refs.Add(-1) == 0 {
		n.last()
	}
}

// abandon lets go of one reference whose fate is unknown: the item is
// never acknowledged as done.
func (n *ackNode) abandon() {
	if n == nil {
		return
	}
	n.state.Or(abandoned)
	if n.refs.Add(-1) == 0 {
		n.last()
	}
}

// fail tells the item's failure at once, if nothing was told yet. (A
// batch's member is nil for an item without acknowledgement.)
func (n *ackNode) fail(err error) {
	if n == nil || err == nil || n.state.Or(told)&told != 0 {
		return
	}
	n.tell(err)
	if n.group != nil {
		for _, m := range n.group.members {
			m.fail(err)
		}
	}
}

// last runs when the last reference is gone: the batch lets go of its
// members' references, and the item is done unless one was abandoned or
// its failure was told.
func (n *ackNode) last() {
	gone := n.state.Load()&abandoned != 0
	if n.group != nil {
		for _, m := range n.group.members {
			if gone {
				m.abandon()
			} else {
				m.release(nil)
			}
		}
	}
	if !gone && n.state.Or(told)&told == 0 {
		n.tell(nil)
	}
}

// tell calls the source's Ack. A panic in Done fails the run with a
// *SourceError: the source's bookkeeping can no longer be trusted.
func (n *ackNode) tell(err error) {
	if n.ack == nil {
		return
	}
	if rec := guard.Call(func() { n.ack.Done(err) }); rec != nil {
		n.r.fail(&SourceError{Err: panicError(rec)})
	}
}

// split takes the members of a Batch's node, so that each element of the
// batch takes its item's reference back (Unbatch straight after Batch). It
// returns nil unless the caller holds the only reference.
func (n *ackNode) split() []*ackNode {
	if n == nil || n.group == nil || len(n.group.members) == 0 || n.refs.Load() != 1 {
		return nil
	}
	m := n.group.members
	n.group.members = nil
	return m
}
