package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// refuse answers a produce request with a non-retriable error for every
// partition.
func refuse(req *kmsg.ProduceRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.SetVersion(req.GetVersion())
	for _, pt := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = pt.Topic, pt.TopicID
		for _, pp := range pt.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = pp.Partition
			rp.ErrorCode = kerr.TopicAuthorizationFailed.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// Offsets: "A dead letter is written with a synchronous produce ... waiting
// up to 30 s for the broker, even when the run is aborted meanwhile: a run
// ends only once its dead letters in flight were confirmed or gave up."
// The broker holds the dead letter's produce; the run is cancelled: the sink
// must not return while the produce is held. Once it is answered, the dead
// letter is in its topic.
func TestReview14KafkaCancelWaitsForTheDeadLetterInFlight(t *testing.T) {
	c, addrs := newCluster(t, 1, "t", "dlq")
	r14Produce(t, addrs, "t", r14Values(3)...)
	g := newR14Gate()
	g.holdProduce(c, "dlq", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.Attempts(1), kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Hour))
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (int, error) {
		if r.Offset == 1 {
			return 0, errors.New("poison")
		}
		return r.Value, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	errc := goRun(func() error { return sink.ForEach(ctx, work, func(context.Context, int) error { return nil }) })
	select {
	case <-g.entered:
	case err := <-errc:
		close(g.open)
		t.Fatalf("the run ended (%v) before its dead letter was produced", err)
	case <-waitHung():
		t.Fatal("no dead letter was produced")
	}
	cancel()
	select {
	case err := <-errc:
		held := g.holding()
		close(g.open)
		if held > 0 {
			t.Fatalf("the run returned (%v) while its dead letter was still held by the broker", err)
		}
	case <-time.After(3 * time.Second): // the run waits, as promised; let the broker answer
		close(g.open)
		err := waitErr(t, "the run", errc)
		t.Logf("run: %v", err)
	}
	dl := r14ReadTopic(t, addrs, "dlq", 1)[0]
	if r14Header(dl, "sluice-offset") != "1" {
		t.Fatalf("dead letter headers %v", dl.Headers)
	}
	t.Logf("committed after the run: %d", r14Committed(t, addrs, "g", "t", 0))
}

// Offsets: a dead letter "that gives up (... the broker refused it) fails the
// run (unless the run was cut short first: a cancellation, an early stop),
// and its record is not committed". A drain (stage.Until) is neither a
// cancellation nor an early stop: a refusal that comes during the drain
// still fails the run.
func TestReview14KafkaDeadLetterRefusedDuringADrainFailsTheRun(t *testing.T) {
	c, addrs := newCluster(t, 1, "t", "dlq")
	r14Produce(t, addrs, "t", r14Values(3)...)
	g := newR14Gate()
	g.holdProduce(c, "dlq", refuse)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.Attempts(1), kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Hour))
	work := stage.Map(stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) (int, error) {
		if r.Offset == 1 {
			return 0, errors.New("poison")
		}
		return r.Value, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	errc := goRun(func() error { return sink.ForEach(ctx, work, func(context.Context, int) error { return nil }) })
	select {
	case <-g.entered:
	case err := <-errc:
		close(g.open)
		t.Fatalf("the run ended (%v) before its dead letter was produced", err)
	case <-waitHung():
		t.Fatal("no dead letter was produced")
	}
	drain()
	close(g.open)
	err := waitErr(t, "the run", errc)
	// Under Forward the sink reports the forwarded failure in any case; the
	// refused dead letter must fail the run beyond it.
	if _, only := err.(*sink.ForwardedError); only || err == nil {
		t.Fatalf("the run reports only the forwarded failure, not the refused dead letter of record 1: %v", err)
	}
	t.Logf("run: %v", err)
	if got := r14Committed(t, addrs, "g", "t", 0); got > 1 {
		t.Fatalf("committed %d, past the record whose dead letter was refused", got)
	}
}

// The same refusal when the run was not cut short at all: the run fails and
// the record is not committed.
func TestReview14KafkaDeadLetterRefusedFailsTheRun(t *testing.T) {
	c, addrs := newCluster(t, 1, "t", "dlq")
	r14Produce(t, addrs, "t", r14Values(3)...)
	g := newR14Gate()
	close(g.open)
	g.holdProduce(c, "dlq", refuse)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.Attempts(1), kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Millisecond))
	var n int
	work := stage.Map(stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) (int, error) {
		if r.Offset == 1 {
			return 0, errors.New("poison")
		}
		return r.Value, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	err := sink.ForEach(ctx, work, func(context.Context, int) error {
		n++
		return nil
	})
	if _, only := err.(*sink.ForwardedError); only || err == nil {
		t.Fatalf("the run reports only the forwarded failure, not the refused dead letter: %v", err)
	}
	t.Logf("run: %v (sink saw %d)", err, n)
	if got := r14Committed(t, addrs, "g", "t", 0); got > 1 {
		t.Fatalf("committed %d, past the record whose dead letter was refused", got)
	}
}
