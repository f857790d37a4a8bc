package natsjs_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

var rounds = flag.Int("rounds", 5, "interleaved rounds of BenchmarkJetStream")

// BenchmarkJetStream runs one in-process server and, interleaved in rounds
// (each round runs every contender once, in a new random order), sluice's
// natsjs.Source and three hand-written consumers over the same kind of
// work-queue stream: read, work on W workers, commit one at a time, and
// acknowledge after the commit. Every run checks that every message was
// committed exactly once and that the consumer was left drained. It reports
// the median of each contender (msgs/s, higher is better; for latency, the
// median time from publish to commit) and sluice's ratio to the best
// hand-written one.
//
//	go test -run '^$' -bench JetStream -benchtime 1x ./connect/natsjs
func BenchmarkJetStream(b *testing.B) {
	url := startServer(b)
	_, js := connect(b, url)
	workloads := []struct {
		name    string
		n       int
		workers int
		work    time.Duration
	}{
		{"noop/workers=4", 20_000, 4, 0},
		{"io200us/workers=32", 10_000, 32, 200 * time.Microsecond},
	}
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			for range b.N {
				results := map[string][]float64{}
				for round := range *rounds {
					for _, c := range shuffled(consumers) {
						d := runOnce(b, js, fmt.Sprintf("W%d_%d", round, rand.Int()), c, w.n, w.workers, w.work)
						results[c.name] = append(results[c.name], float64(w.n)/d.Seconds())
					}
				}
				report(b, results, "msgs/s", true)
			}
		})
	}
	b.Run("latency", func(b *testing.B) {
		for range b.N {
			results := map[string][]float64{}
			for round := range *rounds {
				for _, c := range shuffled(consumers) {
					d := latencyOnce(b, js, fmt.Sprintf("L%d_%d", round, rand.Int()), c)
					results[c.name] = append(results[c.name], float64(d.Microseconds()))
				}
			}
			report(b, results, "µs", false)
		}
	})
}

// consumer is a contender: it consumes until it has committed n messages
// (commit is called one message at a time, then the message is acked),
// calling work on workers goroutines at once, and returns once every
// goroutine it started has exited.
type consumer struct {
	name string
	run  func(ctx context.Context, cons jetstream.Consumer, n, workers int, work func(), commit func(id string) error) error
}

var consumers = []consumer{
	{"sluice", runSluice},
	{"hand-Messages", handWith(messagesReader)},
	{"hand-Fetch100", handWith(fetchReader)},
	{"hand-Next", handWith(nextReader)},
}

func shuffled(cs []consumer) []consumer {
	out := slices.Clone(cs)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func runSluice(ctx context.Context, cons jetstream.Consumer, n, workers int, work func(), commit func(string) error) error {
	stop, drain := context.WithCancel(ctx)
	defer drain()
	msgs := natsjs.Source(cons, func(b []byte) (string, error) { return string(b), nil })
	worked := stage.Map(stage.Until(msgs, stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		work()
		return m.Value, nil
	}, stage.Workers(workers))
	done := 0
	return sink.ForEach(ctx, worked, func(_ context.Context, id string) error {
		if err := commit(id); err != nil {
			return err
		}
		if done++; done == n {
			drain() // every message is in: take no more, finish
		}
		return nil
	})
}

// reader feeds out with the consumer's messages until ctx ends; it closes
// out.
type reader func(ctx context.Context, cons jetstream.Consumer, out chan<- jetstream.Msg)

// handWith is the hand-written pipeline a user would write around a reader:
// a reader goroutine, workers goroutines, the committer in the caller's
// goroutine, unbuffered channels between them.
func handWith(read reader) func(context.Context, jetstream.Consumer, int, int, func(), func(string) error) error {
	return func(ctx context.Context, cons jetstream.Consumer, n, workers int, work func(), commit func(string) error) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		jobs, results := make(chan jetstream.Msg), make(chan jetstream.Msg)
		var wg sync.WaitGroup
		wg.Go(func() { read(ctx, cons, jobs) })
		var workersWG sync.WaitGroup
		for range workers {
			workersWG.Go(func() {
				for m := range jobs {
					work()
					select {
					case results <- m:
					case <-ctx.Done():
						return
					}
				}
			})
		}
		go func() { workersWG.Wait(); close(results) }()
		var err error
		done := 0
		for m := range results {
			if err == nil && done < n {
				if err = commit(string(m.Data())); err == nil {
					err = m.Ack()
				}
				if done++; done == n || err != nil {
					cancel()
				}
			}
		}
		wg.Wait()
		return err
	}
}

func messagesReader(ctx context.Context, cons jetstream.Consumer, out chan<- jetstream.Msg) {
	defer close(out)
	it, err := cons.Messages(jetstream.PullMaxMessages(100))
	if err != nil {
		return
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return
		}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

func fetchReader(ctx context.Context, cons jetstream.Consumer, out chan<- jetstream.Msg) {
	defer close(out)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(100, jetstream.FetchContext(ctx))
		if err != nil {
			continue
		}
		for m := range batch.Messages() {
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}
}

func nextReader(ctx context.Context, cons jetstream.Consumer, out chan<- jetstream.Msg) {
	defer close(out)
	for ctx.Err() == nil {
		m, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			continue
		}
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// newWork makes a work-queue stream and its consumer for one run, with n
// messages published (their bodies are their ids).
func newWork(tb testing.TB, js jetstream.JetStream, name string, n int) jetstream.Consumer {
	return newWorkWait(tb, js, name, n, time.Minute)
}

// newWorkWait is newWork with the consumer's AckWait.
func newWorkWait(tb testing.TB, js jetstream.JetStream, name string, n int, ackWait time.Duration) jetstream.Consumer {
	tb.Helper()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		tb.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{
		Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxAckPending: 1000,
	})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if _, err := js.PublishAsync(name+".job", []byte(strconv.Itoa(i))); err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		tb.Fatal("publishing hung")
	}
	return cons
}

// runOnce runs one contender over a new stream of n messages and returns
// how long it took, after checking that every message was committed once
// and the consumer is drained.
func runOnce(tb testing.TB, js jetstream.JetStream, name string, c consumer, n, workers int, d time.Duration) time.Duration {
	tb.Helper()
	cons := newWork(tb, js, name, n)
	defer js.DeleteStream(context.Background(), name)
	work := func() {}
	if d > 0 {
		work = func() { time.Sleep(d) }
	}
	var mu sync.Mutex
	seen := make(map[string]int, n)
	commit := func(id string) error {
		mu.Lock()
		defer mu.Unlock()
		seen[id]++
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang watchdog
	defer cancel()
	start := time.Now()
	if err := c.run(ctx, cons, n, workers, work, commit); err != nil {
		tb.Fatalf("%s: %v", c.name, err)
	}
	took := time.Since(start)
	checkDrained(tb, c.name, cons, seen, n)
	return took
}

// checkDrained checks that each of the n messages was committed exactly
// once and that the consumer has nothing pending or unacknowledged (acks
// are sent without waiting for the server's reply: it waits for them).
func checkDrained(tb testing.TB, name string, cons jetstream.Consumer, seen map[string]int, n int) {
	tb.Helper()
	for id, k := range seen {
		if k != 1 {
			tb.Fatalf("%s: message %s committed %d times", name, id, k)
		}
	}
	checkAtLeastOnce(tb, name, cons, seen, n)
}

// checkAtLeastOnce checks that each of the n messages was committed (some
// perhaps more than once) and that the consumer is drained.
func checkAtLeastOnce(tb testing.TB, name string, cons jetstream.Consumer, seen map[string]int, n int) {
	tb.Helper()
	if len(seen) != n {
		tb.Fatalf("%s: %d distinct messages committed, want %d", name, len(seen), n)
	}
	deadline := time.Now().Add(30 * time.Second) // a hang watchdog
	for {
		info, err := cons.Info(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: the consumer is not drained: %d pending, %d unacknowledged", name, info.NumPending, info.NumAckPending)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// latencyOnce measures, on an idle consumer that the contender already
// waits on, the time from publishing one message to its commit (the
// median of 20).
func latencyOnce(tb testing.TB, js jetstream.JetStream, name string, c consumer) time.Duration {
	tb.Helper()
	const n = 20
	cons := newWork(tb, js, name, 0)
	defer js.DeleteStream(context.Background(), name)
	committed := make(chan string)
	seen := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- c.run(ctx, cons, n, 4, func() {}, func(id string) error {
			seen[id]++ // commits come one at a time
			select {
			case committed <- id:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	var lat []time.Duration
	for i := range n {
		start := time.Now()
		if _, err := js.Publish(ctx, name+".job", []byte(strconv.Itoa(i))); err != nil {
			tb.Fatal(err)
		}
		select {
		case <-committed:
		case <-ctx.Done():
			tb.Fatalf("%s: message %d never committed", c.name, i)
		}
		lat = append(lat, time.Since(start))
	}
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		tb.Fatalf("%s: %v", c.name, err)
	}
	checkDrained(tb, c.name, cons, seen, n)
	slices.Sort(lat)
	return lat[n/2]
}

// report prints each contender's median and sluice's ratio to the best
// hand-written one (higher is better when higherBetter).
func report(b *testing.B, results map[string][]float64, unit string, higherBetter bool) {
	med := map[string]float64{}
	for name, xs := range results {
		slices.Sort(xs)
		med[name] = xs[len(xs)/2]
	}
	best := 0.0
	for name, m := range med {
		if name == "sluice" {
			continue
		}
		if best == 0 || higherBetter && m > best || !higherBetter && m < best {
			best = m
		}
	}
	for _, c := range consumers {
		b.ReportMetric(med[c.name], c.name+"-"+unit)
	}
	b.ReportMetric(med["sluice"]/best, "sluice/best-hand")
	b.ReportMetric(med["sluice"]/med["hand-Messages"], "sluice/Messages")
	var line string
	for _, c := range consumers {
		line += fmt.Sprintf("  %s %.0f %s", c.name, med[c.name], unit)
	}
	b.Logf("medians:%s; sluice / best hand-written = %.2f, / Messages loop = %.2f", line, med["sluice"]/best, med["sluice"]/med["hand-Messages"])
}
