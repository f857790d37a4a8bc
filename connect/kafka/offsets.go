package kafka

import "github.com/twmb/franz-go/pkg/kgo"

// tp names a partition.
type tp struct {
	topic     string
	partition int32
}

// part is a partition this member owns, in one ownership: the records it
// holds from its watermark on (settled or not), in offset order, and what
// it committed. A
// record of a partition that was revoked (or lost) refers to a part that is
// no longer the member's: its settlement changes nothing.
type part struct {
	tp        tp
	held      []*held // in offset order, from head on
	head      int     // the first entry not yet passed by the watermark
	next      int64   // one past the last record polled; -1: none yet
	committed int64   // the last offset committed in this ownership; -1: none
	paused    bool
	owned     bool // false once revoked or lost
}

// held is one record a partition holds: polled, taken by the pipeline or
// waiting to be tried again, until it is settled.
type held struct {
	rec      *kgo.Record
	part     *part
	settled  bool
	attempts int // tries handed to the pipeline so far
}

func newPart(t tp) *part { return &part{tp: t, next: -1, committed: -1, owned: true} }

// add holds a record just polled.
func (p *part) add(r *kgo.Record) *held {
	h := &held{rec: r, part: p}
	p.held = append(p.held, h)
	p.next = r.Offset + 1
	return h
}

// settle marks h settled and moves the watermark past every settled
// record at the front.
func (p *part) settle(h *held) {
	if h.settled {
		return
	}
	h.settled = true
	for p.head < len(p.held) && p.held[p.head].settled {
		p.held[p.head] = nil
		p.head++
	}
	if p.head > 64 && p.head*2 >= len(p.held) { // let the passed entries go
		p.held = append(p.held[:0], p.held[p.head:]...)
		p.head = 0
	}
}

// size is how many records the partition holds: every record from its
// watermark on, settled or not (MaxPending bounds it). A settled record
// behind one that is not stays counted until the watermark passes it:
// the next owner would process it again, and the member holds it.
func (p *part) size() int { return len(p.held) - p.head }

// watermark is the offset to commit: the oldest record not settled, or one
// past the last record polled when every record is settled; ok is false
// when nothing was polled in this ownership or the watermark did not move
// past the last commit.
func (p *part) watermark() (kgo.EpochOffset, bool) {
	off := p.next
	if p.head < len(p.held) {
		off = p.held[p.head].rec.Offset
	}
	if off < 0 || off <= p.committed {
		return kgo.EpochOffset{}, false
	}
	return kgo.EpochOffset{Epoch: -1, Offset: off}, true // -1: no truncation detection
}
