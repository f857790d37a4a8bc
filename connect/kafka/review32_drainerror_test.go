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
	"github.com/sluicedev/sluice/stage"
)

// kafka.Source: "A record that decode rejects goes to the DeadLetter topic
// at once (without one, the run fails with a *stage.SourceError)". The
// run is drained (stage.Until's stop is done) while decode rejects the
// first record, and no DeadLetter is set: stage.Source's "an error next
// returns once stop is done ends the stream quietly" swallows the error
// next returns, so the failure must come from the member's stop (its
// panic with a *stage.SourceError), not from next. (Passes: a guard.)
func TestReview32KafkaDecodeRejectionWithoutDeadLetterDuringADrainFails(t *testing.T) {
	_, addrs := newCluster(t, 1, "t")
	r14Produce(t, addrs, "t", r14Values(3)...)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var calls atomic.Int64
	decode := func(*kgo.Record) (int, error) {
		calls.Add(1)
		drain() // the service shuts down while the record is rejected
		return 0, errors.New("undecodable")
	}
	src := kafka.Source(memberOpts(addrs, "g", "t"), decode, kafka.CommitInterval(time.Hour))
	var got atomic.Int64
	err := waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(context.Context, kafka.Record[int]) error {
			got.Add(1)
			return nil
		})
	}))
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("run: %v (decode called %d times, %d records delivered), want a *stage.SourceError: a rejected record without a dead-letter topic", err, calls.Load(), got.Load())
	}
}
