package kafka_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r39StuckRun runs a member of group "g" over "jobs" whose offset 0 is held
// until release is closed (or the run ends); every other record goes
// through at once and is stored.
func r39StuckRun(ctx, stop context.Context, addrs []string, st *store, release <-chan struct{}, held chan<- struct{}, opts ...kafka.Option) <-chan error {
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, opts...)
	rows := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Partition == 0 && r.Offset == 0 && held != nil {
			held <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
		return r, nil
	}, stage.Workers(-1))
	return goRun(func() error {
		return sink.ForEach(ctx, rows, func(_ context.Context, r kafka.Record[int]) error {
			st.put(r)
			return nil
		})
	})
}

// doc.go, Guarantees and limits: "Records after the watermark are
// processed again after a crash or a rebalance, so a slow or failing
// record makes the next owner repeat up to MaxPending records of its
// partition." (README: "After a crash or a rebalance, the records after
// the watermark are processed again (up to MaxPending per partition)".)
//
// MaxPending(5); offset 0 of partition 0 is slow (held); 99 records follow
// it. Once it is held, 50 records are produced to partition 1 and stored
// (the member polled on meanwhile). The run then ends (an abort, as a
// crash or a rebalance would end the ownership) and a next owner takes
// the partitions: it repeats every record it gets again that the first
// owner had stored. The doc bounds those repeats by MaxPending per
// partition.
func TestReview39NextOwnerRepeatsAtMostMaxPending(t *testing.T) {
	const n, m, maxPending = 100, 50, 5
	_, addrs := newCluster(t, 2, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, n)
	first := newStore()
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	ctx, abort := context.WithCancel(context.Background())
	defer abort()
	errc := r39StuckRun(ctx, context.Background(), addrs, first, release, held, kafka.MaxPending(maxPending), kafka.CommitInterval(5*time.Millisecond))
	select {
	case <-held:
	case err := <-errc:
		t.Fatalf("the run ended (%v) before offset 0 was taken", err)
	case <-waitHung():
		t.Fatal("hung: offset 0 never taken")
	}
	produceTo(t, addrs, "jobs", 1, 1000, m)
	waitFor(t, "partition 1 stored", func() bool { _, ok := first.has(1, m); return ok })
	abort()
	if err := waitErr(t, "the aborted run", errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("the aborted run returned %v", err)
	}
	committed := committedNow(t, addrs, "g", "jobs", 2)[0]

	// The next owner.
	next := newStore()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	errc = r39StuckRun(context.Background(), stop, addrs, next, nil, nil, kafka.CommitInterval(5*time.Millisecond))
	waitFor(t, "the next owner to store partition 0 from its committed offset", func() bool { return next.len() >= n-int(max(committed, 0)) })
	drain()
	if err := waitErr(t, "the next owner's run", errc); err != nil {
		t.Fatal(err)
	}
	repeats := 0
	first.mu.Lock()
	next.mu.Lock()
	for k := range next.seen {
		if _, ok := first.seen[k]; ok {
			repeats++
		}
	}
	next.mu.Unlock()
	first.mu.Unlock()
	if repeats > maxPending {
		t.Errorf("MaxPending(%d): the first owner stored %d records of partition 0 past its slow record (the watermark stayed at %d); the next owner repeated %d of them, not at most %d", maxPending, first.len()-m, committed, repeats, maxPending)
	}
}

// doc.go, Offsets: "Each partition holds at most MaxPending records that
// are not settled (...); when it is full, its fetches pause, so memory
// stays bounded however slow one record is."
//
// MaxPending(64); offset 0 of partition 0 is held; 1000 records of 32 KiB
// follow it (about 31 MiB). Once it is held, a clock of small records of
// partition 1 runs (see below). The heap is measured then, while offset 0
// is still held, and again once it was
// released and everything committed. If what a partition holds were
// bounded by MaxPending, the two would differ by about MaxPending records
// (a few hundred KiB), not by the records that went through.
func TestReview39MemoryBoundedWhileOneRecordIsSlow(t *testing.T) {
	const n, m, size, maxPending = 1001, 200, 32 << 10, 64
	_, addrs := newCluster(t, 2, "jobs")
	cl := client(t, addrs, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(2*size))
	for i := range n {
		v := make([]byte, size)
		copy(v, strconv.Itoa(i)+" ")
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "jobs", Partition: 0, Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	decode := func(r *kgo.Record) (int, error) { // partition 0: "i " and padding; 1: "i"
		for i, b := range r.Value {
			if b == ' ' {
				return strconv.Atoi(string(r.Value[:i]))
			}
		}
		return decodeInt(r)
	}
	var stored sync.Map
	count := func() int {
		k := 0
		stored.Range(func(any, any) bool { k++; return true })
		return k
	}
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decode, kafka.MaxPending(maxPending), kafka.CommitInterval(5*time.Millisecond))
	rows := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (string, error) {
		if r.Partition == 0 && r.Offset == 0 {
			held <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return place(r.Partition, r.Offset), nil // the value is not kept
	}, stage.Workers(-1))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, at string) error {
			stored.Store(at, true)
			return nil
		})
	})
	select {
	case <-held:
	case err := <-errc:
		t.Fatalf("the run ended (%v) before offset 0 was taken", err)
	case <-waitHung():
		t.Fatal("hung: offset 0 never taken")
	}
	// A clock: records produced to partition 1 one at a time, each once the
	// one before it was stored (the member polled on meanwhile), until
	// every record after offset 0 is stored or m rounds passed. A member
	// that bounds what partition 0 holds ends the rounds; one that does not
	// ends them early.
	p0 := func() int {
		k := 0
		for o := range int64(n) {
			if _, ok := stored.Load(place(0, o)); ok {
				k++
			}
		}
		return k
	}
	rounds := 0
	for ; rounds < m && p0() < n-1; rounds++ {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "jobs", Partition: 1, Value: []byte(strconv.Itoa(rounds))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the clock's record stored", func() bool { _, ok := stored.Load(place(1, int64(rounds))); return ok })
	}
	k := p0()
	whileHeld := heapNow()
	close(release)
	waitFor(t, "every record stored", func() bool { return count() == n+rounds })
	checkCommitted(t, addrs, "g", "jobs")
	afterRelease := heapNow()
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	grown := int64(whileHeld) - int64(afterRelease)
	t.Logf("%d records of partition 0 stored while offset 0 was held (%d clock rounds); heap then: %d KiB; after its release: %d KiB; difference %d KiB (the records after offset 0: %d KiB)", k, rounds, whileHeld>>10, afterRelease>>10, grown>>10, (n-1)*size>>10)
	if bound := int64(2*maxPending*size + 4<<20); grown > bound {
		t.Errorf("MaxPending(%d): while one record was slow the member kept %d KiB more than after it settled, far above what %d pending records take (%d KiB bound): the records settled after the slow one stay held", maxPending, grown>>10, maxPending, bound>>10)
	}
}

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
