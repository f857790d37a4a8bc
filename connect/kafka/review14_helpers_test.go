package kafka_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r14Produce writes the values given, in order, to partition 0 of topic.
func r14Produce(t testing.TB, addrs []string, topic string, recs ...*kgo.Record) {
	t.Helper()
	cl := client(t, addrs, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, r := range recs {
		r.Topic = topic
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func r14Values(n int) []*kgo.Record {
	var out []*kgo.Record
	for i := range n {
		out = append(out, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	return out
}

// r14Committed is the group's committed offset of topic/partition (-1: none).
func r14Committed(t testing.TB, addrs []string, group, topic string, p int32) int64 {
	t.Helper()
	adm := kadm.NewClient(client(t, addrs))
	offs, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs.Lookup(topic, p)
	if !ok {
		return -1
	}
	return o.At
}

// r14FirstOffset runs src until its first record and returns its offset
// (committing it, as the sink's ErrStop does).
func r14FirstOffset(t testing.TB, src stage.Stream[kafka.Record[int]]) (int64, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var off int64 = -1
	var attempts int
	err := sink.ForEach(ctx, src, func(_ context.Context, r kafka.Record[int]) error {
		off, attempts = r.Offset, r.Attempts
		return stage.ErrStop
	})
	if err != nil {
		t.Fatal(err)
	}
	return off, attempts
}

// r14ReadTopic reads every record of topic's partition 0 up to n records.
func r14ReadTopic(t testing.TB, addrs []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := client(t, addrs, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(out), n, topic)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func r14Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// r14IsTopic reports whether a produce request's topic is name.
func r14IsTopic(c *kfake.Cluster, pt kmsg.ProduceRequestTopic, name string) bool {
	if pt.Topic == name {
		return true
	}
	info := c.TopicInfo(name)
	return info != nil && pt.TopicID == info.TopicID
}

// r14Gate holds the produce requests to a topic while closed.
type r14Gate struct {
	mu      sync.Mutex
	entered chan struct{}
	once    sync.Once
	open    chan struct{}
	held    int
}

func newR14Gate() *r14Gate {
	return &r14Gate{entered: make(chan struct{}), open: make(chan struct{})}
}

func (g *r14Gate) holding() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// holdProduce sleeps every produce request to topic until the gate opens,
// then lets reply(req) answer it (nil: the cluster answers normally).
func (g *r14Gate) holdProduce(c *kfake.Cluster, topic string, reply func(*kmsg.ProduceRequest) kmsg.Response) {
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		hit := false
		for _, pt := range req.Topics {
			if r14IsTopic(c, pt, topic) {
				hit = true
			}
		}
		if !hit {
			return nil, nil, false
		}
		g.mu.Lock()
		g.held++
		g.mu.Unlock()
		g.once.Do(func() { close(g.entered) })
		c.SleepControl(func() { <-g.open })
		g.mu.Lock()
		g.held--
		g.mu.Unlock()
		if reply != nil {
			if resp := reply(req); resp != nil {
				return resp, nil, true
			}
		}
		return nil, nil, false
	})
}

// r14EndOffset is the end offset of partition 0 of topic.
func r14EndOffset(t testing.TB, addrs []string, topic string) int64 {
	t.Helper()
	adm := kadm.NewClient(client(t, addrs))
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := ends.Lookup(topic, 0)
	if !ok {
		t.Fatalf("no end offset for %s", topic)
	}
	return o.Offset
}
