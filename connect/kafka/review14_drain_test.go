package kafka_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Offsets: "A record that fails while the run drains (stage.Until) is not
// tried again ... It stays uncommitted ... The source adds no error of its
// own for it: the run's result is what the sink makes of the failure (under
// stage.Forward, the sink's *sink.ForwardedError ...)".
func TestReview14KafkaFailureDuringADrain(t *testing.T) {
	_, addrs := newCluster(t, 1, "t", "dlq")
	r14Produce(t, addrs, "t", r14Values(5)...)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.Attempts(3), kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Millisecond))
	taken := make(chan struct{})
	var once sync.Once
	work := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (int, error) {
		if r.Offset == 1 {
			once.Do(func() { close(taken) })
			<-stop.Done()
			return 0, errors.New("fails during the drain")
		}
		return r.Value, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	errc := goRun(func() error { return sink.ForEach(ctx, work, func(context.Context, int) error { return nil }) })
	<-taken
	drain()
	err := waitErr(t, "the run", errc)
	fe, only := err.(*sink.ForwardedError)
	if !only {
		t.Fatalf("err = %v (%T), want the sink's *sink.ForwardedError alone", err, err)
	}
	t.Logf("forwarded %d", fe.Count)
	if got := r14Committed(t, addrs, "g", "t", 0); got != 1 {
		t.Fatalf("committed %d, want 1: the failed record stays uncommitted", got)
	}
	// Nothing went to the dead-letter topic (it was not tried 3 times).
	if info := r14EndOffset(t, addrs, "dlq"); info != 0 {
		t.Fatalf("%d dead letters for a record tried once", info)
	}
}

// MaxPending: "how many records of one partition may be held and not settled
// at once (taken by the pipeline, waiting to be tried again, or polled and
// not taken yet)". Every record fails its first try and waits forever on its
// second: the records ever taken stay within MaxPending.
func TestReview14KafkaMaxPendingCountsRecordsWaitingForARetry(t *testing.T) {
	_, addrs := newCluster(t, 1, "t")
	r14Produce(t, addrs, "t", r14Values(40)...)
	const maxPending = 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	distinct := map[int64]bool{}
	second := make(chan struct{}, 64)
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.MaxPending(maxPending), kafka.Attempts(5))
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (int, error) {
		mu.Lock()
		distinct[r.Offset] = true
		mu.Unlock()
		if r.Attempts == 1 {
			return 0, errors.New("first try fails")
		}
		second <- struct{}{}
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.OnError(stage.Forward), stage.Workers(8), stage.Buffer(8))
	errc := goRun(func() error { return sink.ForEach(ctx, work, func(context.Context, int) error { return nil }) })
	for range maxPending {
		select {
		case <-second:
		case <-waitHung():
			t.Fatal("no retries")
		}
	}
	// Give a violation time to show; the verdict does not depend on it.
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	n := len(distinct)
	mu.Unlock()
	cancel()
	waitErr(t, "the run", errc)
	if n > maxPending {
		t.Fatalf("%d distinct records taken with MaxPending %d and none settled", n, maxPending)
	}
}
