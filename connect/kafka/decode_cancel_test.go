package kafka_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
)

// A run cancelled while decode rejects a record takes no more records: the
// ones already polled are neither decoded nor dead-lettered, and no offset
// past the rejected record is committed.
func TestDecodeRejectionAfterCancelTakesNoMore(t *testing.T) {
	_, addrs := newCluster(t, 1, "t", "dlq")
	r14Produce(t, addrs, "t", r14Values(5)...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	decode := func(*kgo.Record) (int, error) {
		calls.Add(1)
		cancel() // the run ends while its first record is rejected
		return 0, errors.New("undecodable")
	}
	src := kafka.Source(memberOpts(addrs, "g", "t"), decode, kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Hour))
	err := waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(ctx, src, func(context.Context, kafka.Record[int]) error { return nil })
	}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want context.Canceled", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("decode called %d times, want 1: records were taken after the cancellation", n)
	}
	if n := r14EndOffset(t, addrs, "dlq"); n > 1 {
		t.Fatalf("%d dead letters, want at most the rejected record's", n)
	}
	if c := r14Committed(t, addrs, "g", "t", 0); c > 1 {
		t.Fatalf("committed %d: past the rejected record", c)
	}
}
