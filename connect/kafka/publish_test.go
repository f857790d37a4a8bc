package kafka_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/stage"
)

// Records go from one topic to another through Publish, keyed; every
// source record is committed only once its result was confirmed, so the
// committed offsets reach the end and every result is in the output topic.
func TestPublishCommitsAfterTheWrite(t *testing.T) {
	const n = 2000
	_, addrs := newCluster(t, 4, "in", "out")
	produce(t, addrs, "in", n, keyOf)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt)
	squares := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		r.Value *= r.Value
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]))
	var counts kafka.Published
	cl := client(t, addrs)
	errc := make(chan error, 1)
	go func() {
		errc <- kafka.Publish(context.Background(), cl, squares, func(r kafka.Record[int]) (*kgo.Record, error) {
			return &kgo.Record{Topic: "out", Key: r.Key, Value: []byte(strconv.Itoa(r.Value))}, nil
		}, &counts)
	}()
	waitFor(t, "every result published", func() bool { return counts.Records.Load() >= n })
	drain()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, addrs, "g", "in")
	out := client(t, addrs, kgo.ConsumeTopics("out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	seen := map[string]bool{}
	waitFor(t, "every result read back", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 100e6)
		defer cancel()
		out.PollFetches(ctx).EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
		return len(seen) == n
	})
	for i := range n {
		if !seen[strconv.Itoa(i*i)] {
			t.Fatalf("result %d missing", i*i)
		}
	}
}
