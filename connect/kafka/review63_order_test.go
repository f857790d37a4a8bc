package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview63ByKeyIsPerTopicAndPartition: every record of two topics
// ("jobs" and "in", two partitions each) has the same key, "k". Offset 0 of
// jobs/0 is held in the stage's function; MaxPending(3).
//
// Doc sentences attacked:
//   - "stage.KeyBy(kafka.ByKey[T]): records of one key (within a
//     partition) one at a time, in offset order; different keys in
//     parallel" and RecordKey: "the key of a record within its partition,
//     the unit of ByKey order" (Topic, Partition, Key): the key "k" of
//     jobs/1, in/0 and in/1 are other keys than jobs/0's, so all their
//     records go through while jobs/0's offset 0 is held; no other record
//     of jobs/0 enters the function meanwhile;
//   - "Each partition holds at most MaxPending records from its watermark
//     on ... when it is full, its fetches pause until the watermark moves":
//     a full jobs/0 pauses only itself, not in/0 (the same partition number
//     of another topic);
//   - once released, every record is committed, one call per key at a time,
//     first tries in offset order.
func TestReview63ByKeyIsPerTopicAndPartition(t *testing.T) {
	const per = 6
	c, addrs := newCluster(t, 2, "jobs", "in", "dlq")
	b := newR63Book(c)
	var recs []*kgo.Record
	for _, topic := range []string{"jobs", "in"} {
		for p := range int32(2) {
			for i := range per {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte("k"), Value: []byte(fmt.Sprint(i))})
			}
		}
	}
	produceRecs(t, addrs, recs...)

	release := newR63Gate()
	defer release.open()
	var mu sync.Mutex
	var heldEntered bool
	var othersOfHeld []int64 // jobs/0's records that entered the function while 0 was held
	ord := newR63Order()
	kopts := []kgo.Opt{
		kgo.SeedBrokers(addrs...),
		kgo.ConsumerGroup("g"),
		kgo.ConsumeTopics("jobs", "in"),
		kgo.SessionTimeout(memberSession),
		kgo.HeartbeatInterval(200 * time.Millisecond),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(kopts, decodeInt, kafka.MaxPending(3), kafka.CommitInterval(10*time.Millisecond))
	work := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		k := kafka.ByKey(r)
		ord.enter(k, r)
		defer ord.leave(k)
		if r.Topic == "jobs" && r.Partition == 0 {
			mu.Lock()
			if r.Offset == 0 {
				heldEntered = true
			} else {
				if !release.isOpen() {
					othersOfHeld = append(othersOfHeld, r.Offset)
				}
			}
			mu.Unlock()
			if r.Offset == 0 {
				if err := release.wait(ctx); err != nil {
					return r, err
				}
			}
		}
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]), stage.Buffer(8))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), work, func(_ context.Context, r kafka.Record[int]) error {
			b.settleRec(r)
			return nil
		})
	})
	waitFor(t, "every record of jobs/1, in/0 and in/1 to settle while jobs/0's offset 0 is held", func() bool {
		return b.allSettled("jobs", 1, 0, per) && b.allSettled("in", 0, 0, per) && b.allSettled("in", 1, 0, per)
	})
	mu.Lock()
	if !heldEntered {
		t.Errorf("jobs/0's offset 0 never entered the function")
	}
	if len(othersOfHeld) > 0 {
		t.Errorf("records %v of jobs/0 (key k) entered the function while its offset 0 (key k) was held", othersOfHeld)
	}
	mu.Unlock()
	release.open()
	waitFor(t, "jobs/0 to settle", func() bool { return b.allSettled("jobs", 0, 0, per) })
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Errorf("drained run: %v", err)
	}
	ord.verify(t)
	checkCommitted(t, addrs, "g", "jobs")
	checkCommitted(t, addrs, "g", "in")
	b.verify(t)
}
