package kafka_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

type r14Events struct {
	mu  sync.Mutex
	evs []kafka.Event
}

func (e *r14Events) add(ev kafka.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

func (e *r14Events) all() []kafka.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]kafka.Event(nil), e.evs...)
}

// Rebalances: "When a partition is revoked, the source takes no more of its
// records, commits its watermark, and never commits for it again:
// acknowledgements of its records still in flight are ignored (the records
// may still finish; the new owner gets them again from the watermark)."
// Member A holds offset 2 of both partitions in flight; B joins and takes one
// partition; then A's records finish.
func TestReview14KafkaRevokedPartitionIsNeverCommittedAgain(t *testing.T) {
	_, addrs := newCluster(t, 2, "t")
	cl := client(t, addrs, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := range int32(2) {
		for i := range 10 {
			r := &kgo.Record{Topic: "t", Partition: p, Value: []byte(strconv.Itoa(int(p)*100 + i))}
			if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var hmu sync.Mutex
	high := map[int32]int64{}
	track := func(e kafka.Event) {
		if e.Kind != kafka.Committed || e.Err != nil {
			return
		}
		hmu.Lock()
		defer hmu.Unlock()
		for p, off := range e.Offsets["t"] {
			high[p] = max(high[p], off)
		}
		if high[0]+high[1] == 20 {
			drain()
		}
	}
	highAt := func(p int32) int64 {
		hmu.Lock()
		defer hmu.Unlock()
		return high[p]
	}

	var aEv, bEv r14Events
	gate := make(chan struct{})
	heldA := make(chan int32, 2)
	srcA := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.CommitInterval(5*time.Millisecond), kafka.OnEvent(func(e kafka.Event) { aEv.add(e); track(e) }))
	workA := stage.Map(stage.Until(srcA, stop), func(ctx context.Context, r kafka.Record[int]) (int, error) {
		if r.Offset == 2 && r.Attempts == 1 {
			heldA <- r.Partition
			select {
			case <-gate:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return r.Value, nil
	}, stage.Workers(4))
	errA := goRun(func() error { return sink.ForEach(ctx, workA, func(context.Context, int) error { return nil }) })
	for range 2 {
		select {
		case <-heldA:
		case <-waitHung():
			t.Fatal("A never held its records")
		}
	}
	waitFor(t, "A's watermarks to reach 2", func() bool { return highAt(0) == 2 && highAt(1) == 2 })

	var bmu sync.Mutex
	bFirst := map[int32]int64{}
	srcB := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.CommitInterval(5*time.Millisecond), kafka.OnEvent(func(e kafka.Event) { bEv.add(e); track(e) }))
	errB := goRun(func() error {
		return sink.ForEach(ctx, stage.Until(srcB, stop), func(_ context.Context, r kafka.Record[int]) error {
			bmu.Lock()
			defer bmu.Unlock()
			if _, ok := bFirst[r.Partition]; !ok {
				bFirst[r.Partition] = r.Offset
			}
			return nil
		})
	})
	var x int32 = -1
	waitFor(t, "B to be assigned a partition", func() bool {
		for _, e := range bEv.all() {
			if e.Kind == kafka.Assigned && len(e.Partitions["t"]) > 0 {
				x = e.Partitions["t"][0]
				return true
			}
		}
		return false
	})
	waitFor(t, "B to take a record of its partition", func() bool {
		bmu.Lock()
		defer bmu.Unlock()
		_, ok := bFirst[x]
		return ok
	})
	close(gate) // A's in-flight records finish now
	if err := waitErr(t, "A", errA); err != nil {
		t.Fatalf("A: %v", err)
	}
	if err := waitErr(t, "B", errB); err != nil {
		t.Fatalf("B: %v", err)
	}
	bmu.Lock()
	first := bFirst[x]
	bmu.Unlock()
	if first != 2 {
		t.Errorf("B started partition %d at offset %d, want the watermark 2", x, first)
	}
	revoked := false
	var log []string
	for _, e := range aEv.all() {
		log = append(log, fmt.Sprintf("%v %v %v", e.Kind, e.Partitions, e.Offsets))
		switch e.Kind {
		case kafka.Revoked, kafka.Lost:
			for _, p := range e.Partitions["t"] {
				if p == x {
					revoked = true
				}
			}
		case kafka.Committed:
			if off, ok := e.Offsets["t"][x]; ok && revoked {
				t.Errorf("A committed %d for partition %d after it was revoked", off, x)
			}
		}
	}
	if !revoked {
		t.Errorf("A never reported partition %d revoked", x)
	}
	if t.Failed() {
		t.Logf("A's events: %v", log)
	}
	checkCommitted(t, addrs, "g", "t")
}
