package kafka_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review91: a partition assigned while every partition the member owns is
// full is read at once, and within MaxPending.

// Doc (package, Offsets): "Each partition holds at most [MaxPending]
// records ...; when it is full, its fetches pause until the watermark
// moves"; (Ordering) "until [MaxPending] records of its partition have
// passed it (then the partition waits for it)"; (Rebalances) "A partition
// newly assigned starts from its committed offset." A full partition holds
// back its own fetches, not the member's: a partition newly assigned is
// read while the member's other partitions stay full, and it too holds at
// most MaxPending records.
//
// Member B owns both partitions alone and holds their first records.
// Member A (MaxPending(1)) joins, gets one partition from B, and holds its
// first record: every partition A owns is full, and A waits for a
// settlement. Then B is cancelled and leaves; A is assigned B's other
// partition, and must take its first record while the one it holds is
// still held (no settlement happens in A until then). Both partitions are
// full now: once A's first record settles, A's next take is the next
// record of that partition, not a second record of the new one.
func TestReview91AssignedWhileEveryPartitionIsFull(t *testing.T) {
	_, addrs := newCluster(t, 2, "jobs")
	const perPart = 3
	produceTo(t, addrs, "jobs", 0, 0, perPart)
	produceTo(t, addrs, "jobs", 1, perPart, perPart)
	kopts := memberOpts(addrs, "g", "jobs")

	// Member B: holds every record it takes until its run is cancelled.
	var bMu sync.Mutex
	bHeld := map[int32]bool{}
	bCtx, cancelB := context.WithCancel(context.Background())
	defer cancelB()
	srcB := kafka.Source(kopts, decodeInt, kafka.MaxPending(1))
	holdB := stage.Map(srcB, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		bMu.Lock()
		bHeld[r.Partition] = true
		bMu.Unlock()
		<-ctx.Done()
		return r, ctx.Err()
	}, stage.Workers(4))
	errB := goRun(func() error {
		return sink.ForEach(bCtx, holdB, func(context.Context, kafka.Record[int]) error { return nil })
	})
	waitFor(t, "member B to hold a record of each partition", func() bool {
		bMu.Lock()
		defer bMu.Unlock()
		return bHeld[0] && bHeld[1]
	})

	// Member A: holds its first record until releaseFirst opens, every
	// other until release opens; reports each take.
	releaseFirst, release := newR63Gate(), newR63Gate()
	defer releaseFirst.open()
	defer release.open()
	var aMu sync.Mutex
	var aTaken []kafka.Record[int]
	aTake := make(chan struct{}, 4*perPart)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	srcA := kafka.Source(kopts, decodeInt, kafka.MaxPending(1), kafka.CommitInterval(10*time.Millisecond))
	holdA := stage.Map(stage.Until(srcA, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		aMu.Lock()
		aTaken = append(aTaken, r)
		isFirst := len(aTaken) == 1
		aMu.Unlock()
		aTake <- struct{}{}
		if isFirst {
			return r, releaseFirst.wait(ctx)
		}
		return r, release.wait(ctx)
	}, stage.Workers(4))
	done := 0
	errA := goRun(func() error {
		return sink.ForEach(context.Background(), holdA, func(context.Context, kafka.Record[int]) error {
			if done++; done == 2*perPart {
				drain()
			}
			return nil
		})
	})
	// nth waits for A's nth take and returns what A had taken by then.
	nth := func(n int, what string) []kafka.Record[int] {
		t.Helper()
		select {
		case <-aTake:
		case <-waitHung():
			aMu.Lock()
			defer aMu.Unlock()
			t.Fatalf("hung: %s (member A took %v)", what, aTaken)
		}
		aMu.Lock()
		defer aMu.Unlock()
		if len(aTaken) != n {
			t.Fatalf("member A took %v; want its take %d just now", aTaken, n)
		}
		return slices.Clone(aTaken)
	}
	first := nth(1, "member A took no record after joining")[0]

	// B leaves: A is assigned the other partition and takes its first
	// record, while it holds the first of the partition it had.
	cancelB()
	if err := waitErr(t, "member B", errB); !errors.Is(err, context.Canceled) {
		t.Fatalf("member B returned %v, want context.Canceled", err)
	}
	second := nth(2, "member A, its only partition full, never took a record of the partition it was assigned when B left")[1]
	if second.Partition == first.Partition {
		t.Fatalf("member A took %d/%d while it held %d/%d: more than MaxPending(1) of one partition", second.Partition, second.Offset, first.Partition, first.Offset)
	}
	// Both partitions are full now. Settling the first record makes room
	// in its partition only: A's next take is that partition's next record,
	// never a second record of the new partition, whose first is held.
	releaseFirst.open()
	took := nth(3, "member A took nothing after its first record settled")
	if third := took[2]; third.Partition != first.Partition || third.Offset != first.Offset+1 {
		t.Fatalf("member A took %v: after %d/%d settled, want %d/%d next (partition %d holds MaxPending(1) already)",
			took, first.Partition, first.Offset, first.Partition, first.Offset+1, second.Partition)
	}

	release.open()
	if err := waitErr(t, "member A", errA); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, addrs, "g", "jobs")
}
