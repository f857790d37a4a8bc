package kafka

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordAck is a record's acknowledgement (see stage.Ack).
type recordAck struct {
	m *member
	h *held
}

// Done settles the record (err == nil), or tries it again, or sends it to
// the dead-letter topic once it failed Attempts times. A record of a
// partition this member no longer owns changes nothing.
func (a *recordAck) Done(err error) {
	m, h := a.m, a.h
	switch {
	case !m.owns(h):
	case err == nil:
		m.settle(h)
	case h.attempts < m.cfg.attempts:
		m.retry(h)
	default:
		m.deadLetter(h, err)
	}
}

// deadLetterWait bounds the wait for the broker to confirm a dead letter
// (a variable for the tests).
var deadLetterWait = 30 * time.Second

// deadLetter sends h to the dead-letter topic and settles it, or, without
// one (or if the broker refuses it), fails the run with reason. A record
// of a partition this member no longer owns changes nothing (its new owner
// gets it again), even if its partition is revoked while the dead letter is
// on its way: a refused dead letter then does not fail the run.
func (m *member) deadLetter(h *held, reason error) {
	if !m.owns(h) {
		return
	}
	r := h.rec
	where := fmt.Sprintf("%s/%d@%d", r.Topic, r.Partition, r.Offset)
	if m.cfg.dlq == "" {
		m.fail(fmt.Errorf("kafka: record %s failed after %d attempts, and there is no dead-letter topic: %w", where, h.attempts, reason))
		return
	}
	headers := append(append([]kgo.RecordHeader(nil), r.Headers...),
		kgo.RecordHeader{Key: "sluice-reason", Value: []byte(reason.Error())},
		kgo.RecordHeader{Key: "sluice-topic", Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: "sluice-partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: "sluice-offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		kgo.RecordHeader{Key: "sluice-attempts", Value: []byte(strconv.Itoa(h.attempts))})
	dead := &kgo.Record{Topic: m.cfg.dlq, Key: r.Key, Value: r.Value, Headers: headers}
	// Not ProduceSync with a deadline: a client that produces idempotently
	// (the default) cannot fail a record it has sent, so the deadline
	// would not end the wait. The deadline still bounds Produce's wait for
	// room in the client's buffer. The promise may come after the give-up;
	// its channel has room for it.
	ctx, cancel := context.WithTimeout(context.Background(), deadLetterWait)
	defer cancel()
	confirmed := make(chan error, 1)
	m.cl.Produce(ctx, dead, func(_ *kgo.Record, err error) { confirmed <- err })
	var err error
	select {
	case err = <-confirmed:
	case <-ctx.Done():
		err = fmt.Errorf("not confirmed within %v: %w", deadLetterWait, context.DeadlineExceeded)
	}
	if err != nil {
		if m.owns(h) {
			m.fail(fmt.Errorf("kafka: dead-lettering record %s: %w", where, err))
		}
		return
	}
	m.settle(h)
}

// owns reports whether h's partition is still this member's, in the
// ownership h was taken in.
func (m *member) owns(h *held) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return h.part.owned
}
