package kafka_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review91: a record whose partition was revoked while decode ran changes
// nothing when decode rejects it.

// Doc (package, Rebalances): "When a partition is revoked, the source
// takes no more of its records, commits its watermark, and never commits
// for it again: acknowledgements of its records still in flight are
// ignored (the records may still finish; the new owner gets them again
// from the watermark)"; (Source) "A record that decode rejects goes to the
// [DeadLetter] topic at once (without one, the run fails ...)". A record
// that decode rejects after its partition was revoked belongs to the
// partition's next owner, which decodes it again: the old ownership's
// rejection fails nothing.
//
// Partition 0 starts with "x". Decode blocks on its first call for "x"
// until the member's partition was revoked (an eager balancer: a second
// member joins the group for another topic, and the group revokes every
// partition and gives jobs/0 back), then rejects it. The source has no
// dead-letter topic; the run must go on: the new ownership takes "x" again
// (decode accepts it now) and the record after it, and everything is
// committed.
func TestReview91RevokedDuringDecodeRejectionChangesNothing(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs", "in")
	produceRecs(t, addrs,
		&kgo.Record{Topic: "jobs", Value: []byte("x")},
		&kgo.Record{Topic: "jobs", Value: []byte("1")})
	eager := kgo.Balancers(kgo.RangeBalancer())

	decoding := make(chan struct{})
	afterRevoke := newR63Gate()
	defer afterRevoke.open()
	var xCalls atomic.Int32
	errReject := errors.New("review91: rejected")
	decode := func(r *kgo.Record) (int, error) {
		if string(r.Value) != "x" {
			return decodeInt(r)
		}
		if xCalls.Add(1) > 1 {
			return -1, nil // the new ownership's try
		}
		close(decoding)
		<-afterRevoke.c
		return 0, errReject
	}
	revoked := make(chan struct{})
	var revokedOnce sync.Once
	srcA := kafka.Source(append(memberOpts(addrs, "g", "jobs"), eager), decode, kafka.OnEvent(func(e kafka.Event) {
		if e.Kind == kafka.Revoked && slices.Contains(e.Partitions["jobs"], 0) {
			revokedOnce.Do(func() { close(revoked) })
		}
	}))
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	stored := map[int64]bool{}
	errA := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(srcA, stopA), func(_ context.Context, r kafka.Record[int]) error {
			if stored[r.Offset] = true; len(stored) == 2 {
				drainA()
			}
			return nil
		})
	})
	select {
	case <-decoding:
	case <-waitHung():
		t.Fatal("hung: decode was never called for x")
	}

	// Member B joins for another topic: the eager rebalance revokes jobs/0.
	srcB := kafka.Source(append(memberOpts(addrs, "g", "in"), eager), decodeInt)
	stopB, drainB := context.WithCancel(context.Background())
	defer drainB()
	errB := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(srcB, stopB), func(context.Context, kafka.Record[int]) error { return nil })
	})
	select {
	case <-revoked:
	case <-waitHung():
		t.Fatal("hung: jobs/0 was never revoked from member A")
	}
	afterRevoke.open() // decode rejects x now, its partition revoked

	if err := waitErr(t, "member A", errA); err != nil {
		t.Errorf("member A returned %v; a rejection of a record whose partition was revoked must change nothing", err)
	}
	drainB()
	if err := waitErr(t, "member B", errB); err != nil {
		t.Errorf("member B returned %v", err)
	}
	if t.Failed() {
		return
	}
	if n := xCalls.Load(); n < 2 {
		t.Errorf("decode was called %d times for x; want it tried again by the new ownership", n)
	}
	checkCommitted(t, addrs, "g", "jobs")
}
