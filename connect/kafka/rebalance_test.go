package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
)

// A third member joins while records are in flight. A checker in the
// cluster sees every commit as it arrives and proves that no committed
// offset ever passed a record of its partition that was not stored yet,
// and that no member committed for a partition it did not own.
func TestRebalanceNeverCommitsPastUnsettled(t *testing.T) {
	const n = 20_000
	c, addrs := newCluster(t, 8, "jobs")
	st := newStore()

	var mu sync.Mutex
	owner := map[int32]string{} // partition -> its member, by the members' own events
	var violations []string
	commits := 0
	onEvent := kafka.OnEvent(func(e kafka.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range e.Partitions["jobs"] {
			switch e.Kind {
			case kafka.Assigned:
				owner[p] = e.Member
			case kafka.Revoked, kafka.Lost:
				if owner[p] == e.Member {
					delete(owner, p)
				}
			}
		}
	})
	c.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.OffsetCommitRequest)
		mu.Lock()
		defer mu.Unlock()
		for _, topic := range req.Topics {
			for _, p := range topic.Partitions {
				commits++
				if missing, ok := st.has(p.Partition, p.Offset); !ok {
					violations = append(violations, fmt.Sprintf("member %s committed %d/%d, but %d/%d was not stored", req.MemberID, p.Partition, p.Offset, p.Partition, missing))
				}
				if owner[p.Partition] != req.MemberID {
					violations = append(violations, fmt.Sprintf("member %s committed %d/%d, owned by %q", req.MemberID, p.Partition, p.Offset, owner[p.Partition]))
				}
			}
		}
		return nil, nil, false // observed; the cluster handles it
	})

	produce(t, addrs, "jobs", n, keyOf)
	work := func(kafka.Record[int]) { time.Sleep(500 * time.Microsecond) }
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	start := func(i int) {
		wg.Go(func() {
			errs[i] = member(context.Background(), stop, addrs, "g", "jobs", st.put, work, onEvent, kafka.CommitInterval(50*time.Millisecond))
		})
	}
	start(0)
	start(1)
	waitFor(t, "a quarter of the records stored", func() bool { return st.len() >= n/4 })
	start(2) // joins while records are in flight
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	drain()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	checkCommitted(t, addrs, "g", "jobs")
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Fatalf("%d of %d commits broke the rules, first: %s", len(violations), commits, violations[0])
	}
	if commits == 0 {
		t.Fatal("the checker saw no commit")
	}
	t.Logf("%d commits checked, %d duplicates absorbed", commits, st.dups)
}
