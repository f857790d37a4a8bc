package kafka_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// BenchmarkParallelConsumer is Confluent parallel-consumer's headline
// experiment on kfake (an in-process stand-in for a broker, not a
// performance reference: its figures say how the consumers compare, not
// how fast Kafka is): 10,000 records on one partition, each taking 0–5 ms
// of work (a sleep, the same for every contender), 32 workers, in partition
// order, in key order (1,000 keys) and unordered, beside a hand-written
// franz-go consumer that processes a partition's records one at a time and
// commits after each poll. Every contender must commit every offset.
//
//	go test -run '^$' -bench ParallelConsumer -benchtime 1x ./connect/kafka
func BenchmarkParallelConsumer(b *testing.B) {
	const n, keys, workers = 10_000, 1000, 32
	work := make([]time.Duration, n)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range work {
		work[i] = time.Duration(rng.IntN(5001)) * time.Microsecond
	}
	modes := []struct {
		name string
		opts []stage.Option
	}{
		{"partition-order", []stage.Option{stage.KeyBy(kafka.ByPartition[int])}},
		{"key-order", []stage.Option{stage.KeyBy(kafka.ByKey[int]), stage.Buffer(1000)}},
		{"unordered", nil},
	}
	secs := map[string]float64{}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			for range b.N {
				_, addrs := newCluster(b, 1, "jobs")
				produce(b, addrs, "jobs", n, func(i int) string { return strconv.Itoa(i % keys) })
				start := time.Now()
				runSluice(b, addrs, n, workers, work, m.opts)
				secs[m.name] = time.Since(start).Seconds()
				b.ReportMetric(secs[m.name], "s")
				checkCommitted(b, addrs, "g", "jobs")
			}
		})
	}
	b.Run("hand-written", func(b *testing.B) {
		for range b.N {
			_, addrs := newCluster(b, 1, "jobs")
			produce(b, addrs, "jobs", n, func(i int) string { return strconv.Itoa(i % keys) })
			start := time.Now()
			runHand(b, addrs, n, work)
			secs["hand-written"] = time.Since(start).Seconds()
			b.ReportMetric(secs["hand-written"], "s")
			checkCommitted(b, addrs, "g", "jobs")
		}
	})
	if u := secs["unordered"]; u > 0 {
		b.Logf("key order / unordered = %.2f; partition order / key order = %.1f; hand-written / key order = %.1f; hand-written / unordered = %.1f",
			secs["key-order"]/u, secs["partition-order"]/secs["key-order"], secs["hand-written"]/secs["key-order"], secs["hand-written"]/u)
	}
}

// runSluice consumes n records with a sluice member until all are stored.
func runSluice(b *testing.B, addrs []string, n, workers int, work []time.Duration, opts []stage.Option) {
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(100*time.Millisecond))
	done := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (int, error) {
		time.Sleep(work[r.Value])
		return r.Value, nil
	}, append([]stage.Option{stage.Workers(workers)}, opts...)...)
	stored := 0
	err := sink.ForEach(context.Background(), done, func(context.Context, int) error {
		if stored++; stored == n {
			drain()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// runHand is the hand-written consumer: poll, process each record of the
// poll one at a time, commit the poll's offsets, repeat.
func runHand(b *testing.B, addrs []string, n int, work []time.Duration) {
	cl := client(b, addrs, append(memberOpts(addrs, "g", "jobs"), kgo.DisableAutoCommit())...)
	var stored atomic.Int64
	for stored.Load() < int64(n) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fetches := cl.PollFetches(ctx)
		cancel()
		fetches.EachRecord(func(r *kgo.Record) {
			v, _ := strconv.Atoi(string(r.Value))
			time.Sleep(work[v])
			stored.Add(1)
		})
		if err := cl.CommitUncommittedOffsets(context.Background()); err != nil {
			b.Fatal(fmt.Errorf("commit: %w", err))
		}
	}
}
