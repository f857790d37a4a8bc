package kafka_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Doc (package, Offsets): "the first commit of a partition it owns is its
// watermark as it stands, even if nothing was settled yet, once a record
// of it was polled: nothing is committed for a partition before". Two
// partitions, records in partition 0 only: every commit of the run (the
// periodic ones, every few ms, and the stop's) names partition 0 alone,
// and the group holds no offset for partition 1.
func TestReview91NoCommitForAPartitionNothingWasPolledFrom(t *testing.T) {
	_, addrs := newCluster(t, 2, "jobs")
	const n = 5
	produceTo(t, addrs, "jobs", 0, 0, n)
	var mu sync.Mutex
	var named1, committed0 int
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
		if e.Kind != kafka.Committed || e.Err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, ok := e.Offsets["jobs"][1]; ok {
			named1++
		}
		if _, ok := e.Offsets["jobs"][0]; ok {
			committed0++
		}
	}))
	got := 0
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(context.Context, kafka.Record[int]) error {
			if got++; got == n {
				drain()
			}
			return nil
		})
	})
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if committed0 == 0 {
		t.Fatal("no commit named partition 0: the test saw no commit at all")
	}
	if named1 > 0 {
		t.Errorf("%d commits named partition 1, from which nothing was polled; want none", named1)
	}
	if off := r14Committed(t, addrs, "g", "jobs", 1); off >= 0 {
		t.Errorf("the group holds offset %d for partition 1; want none", off)
	}
	if off := r14Committed(t, addrs, "g", "jobs", 0); off != n {
		t.Errorf("partition 0 committed at %d; want %d", off, n)
	}
}
