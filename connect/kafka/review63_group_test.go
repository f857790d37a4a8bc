package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview63MemberJoinsMidRunMixedWorkload: member A runs the mixed
// workload (retries, dead letters, Filter and Handle drops) under
// KeyBy(ByKey) and Workers(8) with CommitInterval(time.Nanosecond) (a
// hostile value: it commits whenever a watermark moved) over four
// partitions; once it has stored a quarter of the records, member B joins
// with the same pipeline, and both run until every record is settled.
//
// Doc sentences attacked:
//   - "The source commits, per partition, the lowest offset whose record is
//     not settled yet": no commit the broker receives, from either member,
//     before, during or after the rebalance, passes a record not settled;
//   - "When a partition is revoked, the source ... commits its watermark"
//     and "A partition newly assigned starts from its committed offset":
//     whatever moves in the rebalance, no record is lost (every record is
//     settled in the end, and the group's offsets reach the end offsets);
//   - "(A record that fails its last attempt then goes to the dead-letter
//     topic ...)": every poison record is dead-lettered at least once;
//
// (Per-key order is not asserted here: "across a rebalance ... the new
// ownership may process a key's record while the old one still finishes an
// earlier one".)
func TestReview63MemberJoinsMidRunMixedWorkload(t *testing.T) {
	const parts, perPart = 4, 100
	c, addrs := newCluster(t, parts, "jobs", "dlq")
	b := newR63Book(c)
	r63Produce(t, addrs, parts, perPart)
	var stored atomic.Int64
	quarter := make(chan struct{})
	var once sync.Once
	evA, evB := &r14Events{}, &r14Events{}
	run := func(stop context.Context, ev *r14Events) <-chan error {
		src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(2), kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Nanosecond), kafka.OnEvent(ev.add))
		out := r63Mixed(b, stage.Until(src, stop), "key", nil, nil, nil, 16)
		return goRun(func() error {
			return sink.ForEach(context.Background(), out, func(_ context.Context, r kafka.Record[int]) error {
				b.settleRec(r)
				if stored.Add(1) == parts*perPart/4 {
					once.Do(func() { close(quarter) })
				}
				return nil
			})
		})
	}
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	stopB, drainB := context.WithCancel(context.Background())
	defer drainB()
	errA := run(stopA, evA)
	select {
	case <-quarter:
	case err := <-errA:
		t.Fatalf("member A ended early: %v", err)
	case <-time.After(r63Watchdog):
		t.Fatal("hung: member A did not store a quarter of the records")
	}
	errB := run(stopB, evB)
	waitFor(t, "member B to be assigned a partition", func() bool { return len(evB.assigned("jobs")) > 0 })
	waitFor(t, "every record to be settled", func() bool {
		for p := range int32(parts) {
			if !b.allSettled("jobs", p, 0, perPart) {
				return false
			}
		}
		return true
	})
	drainA()
	drainB()
	for name, errc := range map[string]<-chan error{"A": errA, "B": errB} {
		if err := waitErr(t, "member "+name, errc); !r63OnlyForwarded(err) {
			t.Errorf("member %s: %v, want nil or a *sink.ForwardedError", name, err)
		}
	}
	checkCommitted(t, addrs, "g", "jobs")
	b.verify(t)
	b.mu.Lock()
	for p := range int32(parts) {
		for o := range int64(perPart) {
			v := int(p)*perPart + int(o)
			if r63Kind(v) == "dead" && b.dead[tpart{"jobs", p}][o] == 0 {
				t.Errorf("poison record %d/%d (value %d) was never dead-lettered", p, o, v)
			}
		}
	}
	b.mu.Unlock()
	if t.Failed() {
		t.Logf("A events: %+v\nB events: %+v\ncommits:\n%s", evA.all(), evB.all(), b.dumpCommits())
	}
}

// TestReview63LeavingMemberHandsOverItsWatermark: member A owns both
// partitions; in each, offset 2 failed its first try and its second try is
// held in flight, every other record was stored. Member B joins and takes
// one partition. Then A's run ends, while it still owns the other
// partition K: cancelled ("cancel"); its held tries released and the sink
// failing the first record it then gets ("sinkerr"); or drained with
// stage.Until and its held tries released ("until").
//
// Doc sentences attacked:
//   - Source: "when the run ends, it commits what is settled, leaves the
//     group and closes the client": B, a live member, is given K and starts
//     it at exactly what A settled: offset 2 after "cancel" (the held try
//     was cut short) and after "sinkerr" ("a failed commit at the sink ...
//     holds the watermark"), offset 20 after "until" (everything settled:
//     B gets no record of K);
//   - "A partition newly assigned starts from its committed offset";
//   - the run's result: context.Canceled, the sink's *stage.Error, nil.
func TestReview63LeavingMemberHandsOverItsWatermark(t *testing.T) {
	for _, end := range []string{"cancel", "sinkerr", "until"} {
		t.Run(end, func(t *testing.T) { r63LeavingMember(t, end) })
	}
}

func r63LeavingMember(t *testing.T, end string) {
	const parts, perPart, failing = 2, 20, 2
	c, addrs := newCluster(t, parts, "jobs", "dlq")
	b := newR63Book(c)
	r63ProduceSolo(t, addrs, parts, perPart, failing)

	release := newR63Gate()
	defer release.open()
	evA, evB := &r14Events{}, &r14Events{}
	parentA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	srcA := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.Attempts(3), kafka.OnEvent(evA.add))
	work, settledAround := r63HoldSecondTries(b, stage.Until(srcA, stopA), release, parts, perPart, failing)
	var failed atomic.Bool
	errA := goRun(func() error {
		return sink.ForEach(parentA, work, func(_ context.Context, r kafka.Record[int]) error {
			if end == "sinkerr" && r.Offset == failing && failed.CompareAndSwap(false, true) {
				return errR63Trigger
			}
			b.settleRec(r)
			return nil
		})
	})
	waitFor(t, "member A to settle every record but offset 2, whose second tries are held", settledAround)

	mb := r63StartMemberB(b, memberOpts(addrs, "g", "jobs"), evB)
	defer mb.drain()
	waitFor(t, "member B to be assigned a partition", func() bool { return len(evB.assigned("jobs")) > 0 })
	moved := evB.assigned("jobs")[0]
	kept := 1 - moved
	waitFor(t, fmt.Sprintf("member B to process partition %d to its end", moved), func() bool { return mb.reached(moved, perPart-1) })
	if slices.Contains(evB.assigned("jobs"), kept) {
		t.Fatalf("member B was given both partitions while A was still a member: %+v", evB.all())
	}

	// A's run ends while it owns the kept partition.
	var errRun error
	want := int64(failing)
	switch end {
	case "cancel":
		cancelA()
		errRun = waitErr(t, "member A", errA)
		if !errors.Is(errRun, context.Canceled) {
			t.Errorf("cancelled member A: %v, want context.Canceled", errRun)
		}
	case "sinkerr":
		release.open()
		errRun = waitErr(t, "member A", errA)
		var se *stage.Error
		if !errors.Is(errRun, errR63Trigger) || !errors.As(errRun, &se) {
			t.Errorf("member A: %v, want the sink's *stage.Error", errRun)
		}
	case "until":
		drainA()
		release.open()
		errRun = waitErr(t, "member A", errA)
		if !r63OnlyForwarded(errRun) {
			t.Errorf("drained member A: %v, want nil or a *sink.ForwardedError", errRun)
		}
		want = perPart
	}
	if got := r63CommittedP(t, addrs, kept); got != want {
		t.Errorf("member A's run ended (%s: %v) owning partition %d: committed %d, want %d", end, errRun, kept, got, want)
	}
	if want < perPart {
		waitFor(t, fmt.Sprintf("member B to process partition %d to its end", kept), func() bool { return mb.reached(kept, perPart-1) })
		if s := mb.offsets(kept); s[0] != want {
			t.Errorf("member B started partition %d at offset %d, want %d (what A had settled)", kept, s[0], want)
		}
	} else {
		waitFor(t, fmt.Sprintf("member B to be assigned partition %d", kept), func() bool { return slices.Contains(evB.assigned("jobs"), kept) })
	}
	mb.drain()
	if err := waitErr(t, "member B", mb.errc); err != nil {
		t.Errorf("member B: %v", err)
	}
	if s := mb.offsets(kept); end == "until" && len(s) > 0 {
		t.Errorf("member B got records %v of partition %d, which member A had settled and committed to its end", s, kept)
	}
	checkCommitted(t, addrs, "g", "jobs")
	b.verify(t)
	if t.Failed() {
		t.Logf("A events: %+v\nB events: %+v\ncommits:\n%s", evA.all(), evB.all(), b.dumpCommits())
	}
}

// r63CommittedP is group "g"'s committed offset of jobs/p.
func r63CommittedP(t testing.TB, addrs []string, p int32) int64 {
	t.Helper()
	return r14Committed(t, addrs, "g", "jobs", p)
}
