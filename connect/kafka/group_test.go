package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/connect/kafka"
)

func keyOf(i int) string { return fmt.Sprintf("k%d", i%500) }

// Two members of one group share 8 partitions and commit 20,000 records
// into an idempotent sink: every record is stored, and the committed
// offsets are the end offsets.
func TestTwoMembersCommitEverything(t *testing.T) {
	const n = 20_000
	_, addrs := newCluster(t, 8, "jobs")
	st := newStore()
	ctx := context.Background()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	var mu sync.Mutex
	owners := map[string]int{} // member -> partitions it owns
	onEvent := kafka.OnEvent(func(e kafka.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch e.Kind {
		case kafka.Assigned: // (cooperative rebalancing: the partitions added)
			owners[e.Member] += len(e.Partitions["jobs"])
		case kafka.Revoked, kafka.Lost:
			owners[e.Member] -= len(e.Partitions["jobs"])
		}
	})
	for i := range 2 {
		wg.Go(func() { errs[i] = member(ctx, stop, addrs, "g", "jobs", st.put, nil, onEvent) })
	}
	// Both members own partitions before the records come, so that both work.
	waitFor(t, "both members assigned", func() bool {
		mu.Lock()
		defer mu.Unlock()
		busy := 0
		for _, n := range owners {
			if n > 0 {
				busy++
			}
		}
		return busy == 2
	})
	produce(t, addrs, "jobs", n, keyOf)
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	drain()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	checkCommitted(t, addrs, "g", "jobs")
	t.Logf("%d records, %d duplicates absorbed", st.len(), st.dups)
}
