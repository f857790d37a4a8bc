package kafka_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// member is the member id the events name ("" before any).
func (e *r14Events) member() string {
	for _, ev := range e.all() {
		if ev.Member != "" {
			return ev.Member
		}
	}
	return ""
}

// assigned lists the partitions of topic the member was assigned, in order.
func (e *r14Events) assigned(topic string) []int32 {
	var out []int32
	for _, ev := range e.all() {
		if ev.Kind == kafka.Assigned {
			out = append(out, ev.Partitions[topic]...)
		}
	}
	return out
}

// revokedAt is the index of the first Revoked (or Lost) event naming
// topic/p, or -1.
func (e *r14Events) revokedAt(topic string, p int32) (int, kafka.EventKind) {
	for i, ev := range e.all() {
		if (ev.Kind == kafka.Revoked || ev.Kind == kafka.Lost) && slices.Contains(ev.Partitions[topic], p) {
			return i, ev.Kind
		}
	}
	return -1, 0
}

// TestReview63RevokeCommitsTheExactWatermark: member A (Workers(8),
// KeyBy(ByKey), CommitInterval(math.MaxInt64): no periodic commit in the
// test's lifetime) owns both partitions. In each, offset 2 failed its first
// try and its second try is held in flight; offset 5 was dropped by a
// Filter; every other record was stored. Then member B joins: a partition
// R moves to B. Under the cooperative balancer (franz-go's default) and an
// eager one.
//
// Doc sentences attacked ("Rebalances", "Offsets"):
//   - "When a partition is revoked, the source takes no more of its
//     records, commits its watermark, and never commits for it again":
//     with no periodic commit, only the revoke can have committed R, and
//     B must start R exactly at offset 2 (at 0: no commit on revoke; past
//     2: a record tried again and not settled was passed);
//   - "A partition newly assigned starts from its committed offset";
//   - "acknowledgements of its records still in flight are ignored (the
//     records may still finish; the new owner gets them again from the
//     watermark)": once B finished R, A's held tries are released and
//     succeed; A sends no commit of R after that, and no Committed event of
//     A names R after its Revoked event;
//   - CommitInterval: "it also commits when a partition is revoked and when
//     the run stops", at the hostile value math.MaxInt64;
//   - at-least-once: in the end every record is settled and the group's
//     offsets are the end offsets.
func TestReview63RevokeCommitsTheExactWatermark(t *testing.T) {
	for _, balancer := range []string{"cooperative", "eager"} {
		t.Run(balancer, func(t *testing.T) { r63RevokeCommitsTheExactWatermark(t, balancer) })
	}
}

func r63RevokeCommitsTheExactWatermark(t *testing.T, balancer string) {
	const parts, perPart, failing, dropped = 2, 20, 2, 5
	c, addrs := newCluster(t, parts, "jobs", "dlq")
	b := newR63Book(c)
	r63ProduceSolo(t, addrs, parts, perPart, failing)
	kopts := memberOpts(addrs, "g", "jobs")
	if balancer == "eager" {
		kopts = append(kopts, kgo.Balancers(kgo.RangeBalancer()))
	}

	release := newR63Gate()
	defer release.open()
	evA, evB := &r14Events{}, &r14Events{}
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	srcA := kafka.Source(kopts, decodeInt, kafka.CommitInterval(math.MaxInt64), kafka.Attempts(3), kafka.OnEvent(evA.add))
	work, settledAround := r63HoldSecondTries(b, stage.Until(srcA, stopA), release, parts, perPart, failing)
	kept := stage.Filter(work, func(_ context.Context, r kafka.Record[int]) (bool, error) {
		if r.Offset == dropped {
			b.settleRec(r)
			return false, nil
		}
		return true, nil
	}, stage.Workers(8))
	errA := goRun(func() error {
		return sink.ForEach(context.Background(), kept, func(_ context.Context, r kafka.Record[int]) error {
			b.settleRec(r)
			return nil
		})
	})
	waitFor(t, "member A to settle every record but offset 2, whose second tries are held", settledAround)
	memberA := evA.member()
	seqBeforeB := b.lastSeq()

	mb := r63StartMemberB(b, kopts, evB)
	defer mb.drain()
	waitFor(t, "member B to be assigned a partition of jobs", func() bool { return len(evB.assigned("jobs")) > 0 })
	moved := evB.assigned("jobs")[0]
	waitFor(t, fmt.Sprintf("member B to process partition %d to its end", moved), func() bool { return mb.reached(moved, perPart-1) })
	revIdx, kind := evA.revokedAt("jobs", moved)
	if revIdx < 0 {
		t.Fatalf("member B got partition %d but member A had no Revoked event for it: %+v", moved, evA.all())
	}
	if kind != kafka.Revoked {
		t.Logf("partition %d was lost rather than revoked (the test proves less)", moved)
	}
	first := mb.offsets(moved)[0]
	if kind == kafka.Revoked && first != failing {
		t.Errorf("member B started partition %d at offset %d, want %d: the watermark member A held when the partition was revoked (offset %d was not settled, every record before it was; no periodic commit under CommitInterval(MaxInt64))", moved, first, failing, failing)
	}
	// A's commits of the moved partition since B started: the revoke's.
	for _, cm := range b.commitsBy(memberA, "jobs", moved, seqBeforeB) {
		if cm.off != failing {
			t.Errorf("member A committed partition %d at %d around the revoke, want %d", moved, cm.off, failing)
		}
	}

	// A's held tries now succeed; for the moved partition they are ignored.
	seqRelease := b.lastSeq()
	release.open()
	waitFor(t, "member A's held records to be settled", func() bool {
		for p := range int32(parts) {
			if !b.isSettled("jobs", p, failing) {
				return false
			}
		}
		return true
	})
	// A leaves first (B still owns the moved partition, so it is not given
	// back to A), then B.
	drainA()
	if err := waitErr(t, "member A", errA); !r63OnlyForwarded(err) {
		t.Errorf("member A: %v", err)
	}
	mb.drain()
	if err := waitErr(t, "member B", mb.errc); err != nil {
		t.Errorf("member B: %v", err)
	}
	for _, cm := range b.commitsBy(memberA, "jobs", moved, seqRelease) {
		t.Errorf("member A committed partition %d at %d after it was revoked and its held record finished", moved, cm.off)
	}
	for _, ev := range evA.all()[revIdx+1:] {
		if ev.Kind == kafka.Assigned && slices.Contains(ev.Partitions["jobs"], moved) {
			break // assigned back to A: a new ownership may commit it
		}
		if ev.Kind == kafka.Committed {
			if o, ok := ev.Offsets["jobs"][moved]; ok {
				t.Errorf("member A reported a commit of partition %d at %d after its Revoked event", moved, o)
			}
		}
	}
	checkCommitted(t, addrs, "g", "jobs")
	b.verify(t)
	if t.Failed() {
		t.Logf("commits:\n%s", b.dumpCommits())
	}
}

// TestReview63ReassignedPartitionGoesOnWhileTheOldTryIsHeld: member A
// (eager balancer, no KeyBy, Workers(8), MaxPending(3)) owns jobs/0; its
// first copy of offset 2 is held in the stage's function and ignores the
// revoke. A second member joins the group for another topic: the eager
// rebalance revokes jobs/0 from A and gives it back to A.
//
// Doc sentences attacked ("Rebalances"):
//   - "When a partition is revoked, the source takes no more of its
//     records, commits its watermark ...: acknowledgements of its records
//     still in flight are ignored (the records may still finish; the new
//     owner gets them again from the watermark)" and "A partition newly
//     assigned starts from its committed offset": the new ownership gets
//     offset 2 again and goes on to the end of the partition while the old
//     ownership's copy of offset 2 is still held; its MaxPending window is
//     its own (the old ownership's held record is not the new one's);
//   - Guarantees: "the new ownership may process a key's record while the
//     old one still finishes an earlier one";
//   - the group's offset reaches the end while the old copy is still held,
//     and stays there once it finishes (its acknowledgement is ignored).
func TestReview63ReassignedPartitionGoesOnWhileTheOldTryIsHeld(t *testing.T) {
	const n, heldOff = 12, 2
	c, addrs := newCluster(t, 1, "jobs", "in", "dlq")
	b := newR63Book(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	produceTo(t, addrs, "in", 0, 0, 1)
	eager := kgo.Balancers(kgo.RangeBalancer())
	release := newR63Gate()
	defer release.open()
	var mu sync.Mutex
	copies := 0
	heldIn := make(chan struct{})
	evA := &r14Events{}
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	srcA := kafka.Source(append(memberOpts(addrs, "g", "jobs"), eager), decodeInt, kafka.MaxPending(3), kafka.CommitInterval(10*time.Millisecond), kafka.OnEvent(evA.add))
	work := stage.Map(stage.Until(srcA, stopA), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == heldOff {
			mu.Lock()
			copies++
			first := copies == 1
			mu.Unlock()
			if first {
				close(heldIn)
				<-release.c // ignores ctx and the revoke: it finishes late
				return r, nil
			}
		}
		b.settleRec(r)
		return r, nil
	}, stage.Workers(8))
	errA := goRun(func() error {
		return sink.ForEach(context.Background(), work, func(context.Context, kafka.Record[int]) error { return nil })
	})
	select {
	case <-heldIn:
	case <-time.After(r63Watchdog):
		t.Fatal("hung: offset 2 never reached the stage")
	}
	waitFor(t, "offsets 0 and 1 to settle", func() bool { return b.allSettled("jobs", 0, 0, heldOff) })

	stopB, drainB := context.WithCancel(context.Background())
	defer drainB()
	srcB := kafka.Source(append(memberOpts(addrs, "g", "in"), eager), decodeInt, kafka.CommitInterval(10*time.Millisecond))
	errB := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(srcB, stopB), func(_ context.Context, r kafka.Record[int]) error {
			b.settleRec(r)
			return nil
		})
	})
	waitFor(t, "member A to have jobs/0 revoked and assigned again", func() bool {
		revoked := false
		for _, ev := range evA.all() {
			if ev.Kind == kafka.Revoked && slices.Contains(ev.Partitions["jobs"], 0) {
				revoked = true
			}
			if revoked && ev.Kind == kafka.Assigned && slices.Contains(ev.Partitions["jobs"], 0) {
				return true
			}
		}
		return false
	})
	waitFor(t, "the new ownership to process jobs/0 to its end while the old copy of offset 2 is held", func() bool {
		return b.allSettled("jobs", 0, 0, n)
	})
	waitFor(t, "the group's offset to reach the end", func() bool { return r14Committed(t, addrs, "g", "jobs", 0) == n })
	seq := b.lastSeq()
	release.open()
	drainB()
	if err := waitErr(t, "member B", errB); err != nil {
		t.Errorf("member B: %v", err)
	}
	drainA()
	if err := waitErr(t, "member A", errA); err != nil {
		t.Errorf("member A: %v", err)
	}
	for _, cm := range b.commitsBy(evA.member(), "jobs", 0, seq) {
		if cm.off != n {
			t.Errorf("member A committed jobs/0 at %d after its old copy of offset 2 finished, want %d", cm.off, n)
		}
	}
	if got := r14Committed(t, addrs, "g", "jobs", 0); got != n {
		t.Errorf("committed %d at the end, want %d", got, n)
	}
	b.verify(t)
}
