package main

// Review 13: the README's Kafka snippet, as written, run against kfake:
// every order that decodes is stored, the record that does not reaches the
// dead-letter topic with its headers, per-key order holds, and the group's
// offsets end committed to the end.

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r13KafkaSnippet is the README's snippet; the rest is its scaffolding.
func r13KafkaSnippet(ctx, stop context.Context, brokers []string,
	decode func(*kgo.Record) (Order, error),
	transform func(context.Context, kafka.Record[Order]) (Order, error),
	upsert func(context.Context, []Order) error) error {
	kopts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumerGroup("loaders"), kgo.ConsumeTopics("orders")}
	orders := kafka.Source(kopts, decode, kafka.DeadLetter("orders.dlq"))
	rows := stage.Map(stage.Until(orders, stop), transform,
		stage.Workers(32), stage.KeyBy(kafka.ByKey[Order]), stage.Buffer(1000))
	err := sink.ForEach(ctx, stage.Batch(rows, 100, 20*time.Millisecond), upsert)
	return err
}

func TestReview13ReadmeKafkaSnippet(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "orders", "orders.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang watchdog
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n, customers, bad = 400, 7, 123
	for i := range n {
		v, _ := json.Marshal(Order{ID: i, Customer: i % customers, Cents: i})
		if i == bad {
			v = []byte("not json")
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: fmt.Appendf(nil, "customer-%d", i%customers), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	stop, drain := context.WithCancel(ctx)
	defer drain()
	var mu sync.Mutex
	stored := map[int]int{}
	lastOf := map[int]int{} // customer -> last order id transformed
	running := map[int]bool{}
	var problems []string
	decode := func(r *kgo.Record) (Order, error) {
		var o Order
		return o, json.Unmarshal(r.Value, &o)
	}
	transform := func(_ context.Context, r kafka.Record[Order]) (Order, error) {
		o := r.Value
		mu.Lock()
		if running[o.Customer] {
			problems = append(problems, fmt.Sprintf("customer %d: two at once", o.Customer))
		}
		if l, ok := lastOf[o.Customer]; ok && l > o.ID {
			problems = append(problems, fmt.Sprintf("customer %d: order %d after %d", o.Customer, o.ID, l))
		}
		running[o.Customer], lastOf[o.Customer] = true, o.ID
		mu.Unlock()
		runtime.Gosched()
		mu.Lock()
		running[o.Customer] = false
		mu.Unlock()
		return o, nil
	}
	upsert := func(_ context.Context, os []Order) error {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range os {
			stored[o.ID]++
		}
		if len(stored) == n-1 {
			drain()
		}
		return nil
	}
	if err := r13KafkaSnippet(ctx, stop, brokers, decode, transform, upsert); err != nil {
		t.Fatalf("the snippet returned %v", err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	for id := range n {
		if c := stored[id]; (id == bad) != (c == 0) || c > 1 {
			t.Errorf("order %d stored %d times", id, c)
		}
	}
	// The dead letter and its headers.
	dl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("orders.dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	fs := dl.PollFetches(ctx)
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	recs := fs.Records()
	if len(recs) != 1 || string(recs[0].Value) != "not json" {
		t.Fatalf("dead letters %d, want the one that does not decode", len(recs))
	}
	headers := map[string]bool{}
	for _, h := range recs[0].Headers {
		headers[h.Key] = true
	}
	for _, h := range []string{"sluice-reason", "sluice-topic", "sluice-partition", "sluice-offset"} {
		if !headers[h] {
			t.Errorf("dead letter lacks header %s: %v", h, recs[0].Headers)
		}
	}
	// Offsets committed to the end when the run stops.
	adm, closeAdm, err := admin(brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAdm()
	ends, err := adm.ListEndOffsets(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, "loaders")
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(e kadm.ListedOffset) {
		if got, ok := committed.Lookup(e.Topic, e.Partition); (ok || e.Offset != 0) && got.At != e.Offset { // an empty partition needs no commit
			t.Errorf("partition %d: committed %v, end %d", e.Partition, got.At, e.Offset)
		}
	})
}
