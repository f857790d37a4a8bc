package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/stage"
)

// Review91: a record tried again comes back before the records the stage
// had not taken yet.

// Doc (package, Ordering): "A record tried again after a failure comes
// back after the records taken meanwhile, so it is the one exception to
// the order: which of its key's later records pass it depends on how far
// the stage had read ahead when it failed". Only the stage's read-ahead
// passes it: records polled but not taken yet come after it.
//
// Twenty records of one key in one partition, all polled by the first
// poll; the stage (one worker, no buffer: a read-ahead of one record)
// fails offset 0's first try. Its second try must come before every record
// the stage could not have taken when it failed: at most one record (the
// read-ahead's) runs between the two tries. Every record is committed once
// it succeeded.
func TestReview91RetryComesBeforeRecordsNotTaken(t *testing.T) {
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	const n = 20
	produceOneKey(t, addrs, n)

	var mu sync.Mutex
	var calls []string
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(2), kafka.CommitInterval(10*time.Millisecond), l.option())
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	work := stage.Map(stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		mu.Lock()
		calls = append(calls, fmt.Sprintf("%d#%d", r.Offset, r.Attempts))
		mu.Unlock()
		if r.Offset == 0 && r.Attempts == 1 {
			return r, errors.New("review91: first try fails")
		}
		return r, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	wantForwarded(t, settleUntil(t, l, work, n, drain), 1)
	mu.Lock()
	got := slices.Clone(calls)
	mu.Unlock()
	retry := slices.Index(got, "0#2")
	if len(got) != n+1 || got[0] != "0#1" || retry < 0 || retry > 2 {
		t.Fatalf("calls %v: want 0#1, at most one record taken before the failure was known, then 0#2 (not after the records polled but not taken)", got)
	}
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}
