package kafka_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// doc.go, Guarantees: "Per-key order holds within one ownership of a
// partition; across a rebalance, even one that gives the partition back to
// the same member, the new ownership may process a key's record while the
// old one still finishes an earlier one." (Found by review39 against the
// doc as it was, which said "within one member".)
//
// One member (eager balancer) owns jobs/0, whose records 0..3 share key k.
// Record 0 is slow; 1..3 wait behind it for their key. A second member
// joins the group for another topic: jobs/0 is revoked and handed back to
// the same member, which takes 0..3 again from the watermark (0). No
// record failed. The stage function sees key k's records in the order
// 0 1 2 3 0 1 2 3: each ownership's in offset order, the second's after
// the first's (its records queue behind the first's for their key).
func TestReview39KeyOrderWithinEachOwnership(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs", "other")
	produceOneKey(t, addrs, 4)
	eager := kgo.Balancers(kgo.RangeBalancer())
	ev := newR39Events()

	var mu sync.Mutex
	decoded := map[int64]int{}
	var order []int64
	takenAll, takenAgain := make(chan struct{}), make(chan struct{})
	decode := func(r *kgo.Record) (int, error) {
		mu.Lock()
		decoded[r.Offset]++
		if r.Offset == 3 && decoded[3] == 1 {
			close(takenAll)
		}
		if r.Offset == 0 && decoded[0] == 2 {
			close(takenAgain)
		}
		mu.Unlock()
		return decodeInt(r)
	}
	release := make(chan struct{})
	src := kafka.Source(append(memberOpts(addrs, "g", "jobs"), eager), decode, kafka.CommitInterval(5*time.Millisecond), kafka.OnEvent(ev.on))
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	first := true
	rows := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (int64, error) {
		mu.Lock()
		order = append(order, r.Offset)
		slow := first
		first = false
		mu.Unlock()
		if slow {
			select {
			case <-release:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return r.Offset, nil
	}, stage.Workers(4), stage.KeyBy(kafka.ByKey[int]), stage.Buffer(16))
	var doneMu sync.Mutex
	done := 0
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(context.Context, int64) error {
			doneMu.Lock()
			done++
			doneMu.Unlock()
			return nil
		})
	})
	wait := func(what string, ch chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case err := <-errc:
			t.Fatalf("the run ended (%v) before %s", err, what)
		case <-waitHung():
			t.Fatalf("hung: %s", what)
		}
	}
	wait("records 0..3 taken", takenAll)

	b, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("other"), eager,
		kgo.SessionTimeout(memberSession), kgo.HeartbeatInterval(200*time.Millisecond), kgo.RebalanceTimeout(10*time.Second), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	bctx, bstop := context.WithCancel(context.Background())
	bdone := make(chan struct{})
	go func() {
		defer close(bdone)
		for bctx.Err() == nil {
			b.PollFetches(bctx)
		}
	}()
	defer func() { bstop(); <-bdone; b.Close() }()
	if err, ended := ev.wait(t, "jobs/0 revoked", errc, r39Revoked("jobs", 0)); ended {
		t.Fatalf("the run ended (%v) before jobs/0 was revoked", err)
	}
	wait("record 0 taken again", takenAgain)
	close(release)
	waitFor(t, "eight records at the sink", func() bool { doneMu.Lock(); defer doneMu.Unlock(); return done >= 8 })
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("key k's records at the stage function, in order: %v", order)
	descents := 0
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			descents++
		}
	}
	if len(order) != 8 || descents > 1 {
		t.Errorf("key k's records at the stage function: %v, want each of the two ownerships' 0..3 in offset order", order)
	}
}
