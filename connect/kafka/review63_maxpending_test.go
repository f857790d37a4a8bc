package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/connect/kafka"
)

// TestReview63MaxPendingSpanFromTheWatermark attacks MaxPending as the
// docs define it: a window from the watermark, not a count of records in
// flight. Offset 0 of partition 0 is held in the stage's function (a gate
// the test controls); the records after it go through the mixed workload
// (retried, dead-lettered, dropped by a Filter and by a Handle policy,
// stored), so they settle behind the held one but still count.
//
// Doc sentences attacked:
//   - MaxPending: "MaxPending sets how many records of one partition may be
//     held at once, from its watermark on: taken by the pipeline, waiting to
//     be tried again, polled and not taken yet, or settled behind one that
//     is not. A full partition's fetches pause until its oldest record is
//     settled": while offset 0 is held, no record at offset MaxPending or
//     beyond ever reaches the stage, even after partition 1's records (which
//     the source polls meanwhile) all went through; in general, a record
//     taken at offset o never has o - watermark + 1 > MaxPending;
//   - "Ordering", ByKey: "one slow record holds back only its key, until
//     MaxPending records of its partition have passed it (then the partition
//     waits for it)": the records of other keys within the window all
//     finish while offset 0 is held (without KeyBy, all of them);
//   - "no KeyBy: no order at all; the most parallel" (no order asserted);
//     ByKey and ByPartition: one call per key at a time, first tries in
//     offset order;
//   - once the held record is released, everything is committed.
//
// With MaxPending(1) the partition is processed one record at a time even
// with Workers(8) and no KeyBy.
func TestReview63MaxPendingSpanFromTheWatermark(t *testing.T) {
	for _, mode := range []string{"none", "key", "partition"} {
		for _, k := range []int{1, 6} {
			t.Run(fmt.Sprintf("%s/MaxPending(%d)", mode, k), func(t *testing.T) { r63MaxPendingSpan(t, mode, k) })
		}
	}
}

func r63MaxPendingSpan(t *testing.T, mode string, k int) {
	const n0, n1 = 40, 20
	c, addrs := newCluster(t, 2, "jobs", "dlq")
	b := newR63Book(c)
	produceTo(t, addrs, "jobs", 0, 0, n0)

	release := newR63Gate()
	defer release.open()
	var mu sync.Mutex
	maxTaken := int64(-1) // partition 0's highest offset that reached the stage
	inFlight0, maxInFlight0 := 0, 0
	var spans []string
	hook := func(ctx context.Context, r kafka.Record[int]) error {
		if r.Partition != 0 {
			return nil
		}
		wm := b.watermark("jobs", 0)
		mu.Lock()
		if span := r.Offset - wm + 1; span > int64(k) && len(spans) < 5 {
			spans = append(spans, fmt.Sprintf("offset %d (attempt %d) taken while the watermark was %d: %d records from the watermark on, MaxPending(%d)", r.Offset, r.Attempts, wm, span, k))
		}
		maxTaken = max(maxTaken, r.Offset)
		inFlight0++
		maxInFlight0 = max(maxInFlight0, inFlight0)
		mu.Unlock()
		defer func() {
			mu.Lock()
			inFlight0--
			mu.Unlock()
		}()
		if r.Offset == 0 && r.Attempts == 1 {
			if err := release.wait(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	ord := newR63Order()
	drain, errc := r63RunMixed(b, addrs, mode, ord, hook, k)
	defer drain()

	// The window's other records finish while offset 0 is held: all of them
	// without KeyBy, those of other keys under ByKey.
	var want []int64
	for o := int64(1); o < int64(min(k, n0)); o++ {
		if mode == "none" || (mode == "key" && o%7 != 0) {
			want = append(want, o)
		}
	}
	waitFor(t, fmt.Sprintf("partition 0's records %v to settle while offset 0 is held", want), func() bool {
		for _, o := range want {
			if !b.isSettled("jobs", 0, o) {
				return false
			}
		}
		return true
	})
	// The source goes on polling: partition 1's records, produced now, all
	// go through while partition 0 is full.
	produceTo(t, addrs, "jobs", 1, 1000, n1)
	waitFor(t, "partition 1's records to settle", func() bool { return b.allSettled("jobs", 1, 0, n1) })
	mu.Lock()
	if maxTaken >= int64(k) {
		t.Errorf("MaxPending(%d), offset 0 held: offset %d of the full partition reached the stage", k, maxTaken)
	}
	if mode != "partition" && maxTaken != int64(k-1) && k <= n0 {
		t.Errorf("MaxPending(%d), offset 0 held: the highest offset of partition 0 that reached the stage is %d, want %d (the window is the partition's to use)", k, maxTaken, k-1)
	}
	mu.Unlock()
	if b.isSettled("jobs", 0, 0) {
		t.Errorf("offset 0 was settled while it was held")
	}

	release.open()
	waitFor(t, "partition 0's records to settle", func() bool { return b.allSettled("jobs", 0, 0, n0) })
	drain()
	if err := waitErr(t, "the run", errc); !r63OnlyForwarded(err) {
		t.Errorf("drained run: %v, want nil or a *sink.ForwardedError", err)
	}
	mu.Lock()
	for _, s := range spans {
		t.Error(s)
	}
	if k == 1 && maxInFlight0 > 1 {
		t.Errorf("MaxPending(1): %d records of partition 0 in the stage at once", maxInFlight0)
	}
	mu.Unlock()
	ord.verify(t)
	checkCommitted(t, addrs, "g", "jobs")
	b.verify(t)
}
