package kafka_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
)

// A record whose next returned after the run was cancelled (decode, called
// inside next, holds it until the cancellation) is not taken: its Ack is
// never told. It must be neither committed nor dead-lettered (Attempts(1):
// a failure told would dead-letter it at once).
func TestReview31KafkaRecordReturnedAfterCancelIsNotCommitted(t *testing.T) {
	_, addrs := newCluster(t, 1, "t", "dlq")
	r14Produce(t, addrs, "t", r14Values(3)...)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	decode := func(r *kgo.Record) (int, error) {
		if r.Offset == 1 {
			once.Do(func() { close(entered) })
			<-release
		}
		return strconv.Atoi(string(r.Value))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := kafka.Source(memberOpts(addrs, "g", "t"), decode, kafka.Attempts(1), kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Hour))
	var mu sync.Mutex
	var got []int64
	errc := goRun(func() error {
		return sink.ForEach(ctx, src, func(_ context.Context, r kafka.Record[int]) error {
			mu.Lock()
			got = append(got, r.Offset)
			mu.Unlock()
			return nil
		})
	})
	select {
	case <-entered:
	case err := <-errc:
		t.Fatalf("the run ended (%v) before decoding offset 1", err)
	case <-waitHung():
		t.Fatal("hung: offset 1 was never decoded")
	}
	cancel()
	close(release)
	t.Logf("run: %v", waitErr(t, "the run", errc))
	mu.Lock()
	defer mu.Unlock()
	for _, o := range got {
		if o >= 1 {
			t.Errorf("the sink got offset %d, returned by next after the cancellation", o)
		}
	}
	if c := r14Committed(t, addrs, "g", "t", 0); c > 1 {
		t.Errorf("committed %d: offset 1, never taken, was committed", c)
	}
	if n := r14EndOffset(t, addrs, "dlq"); n != 0 {
		t.Errorf("%d dead letters: a record never taken was told a failure", n)
	}
}
