package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// With stage.KeyBy(kafka.ByKey), the records of one key are processed one
// at a time in offset order for the whole run, and a slow record holds back
// only its key: here the record at offset 100 (key k0) waits until every
// record of the other keys up to offset 900 was processed, which would
// never happen if it held back its partition. (The records of k0 that wait
// meanwhile hold read-ahead places: the stage's Buffer leaves room for
// them, as the package documentation advises.)
func TestKeyOrderAndASlowRecord(t *testing.T) {
	const n, keys, slow, past = 2000, 10, 100, 900
	_, addrs := newCluster(t, 1, "jobs")
	produce(t, addrs, "jobs", n, func(i int) string { return fmt.Sprintf("k%d", i%keys) })

	var mu sync.Mutex
	order := map[string][]int64{} // key -> offsets in the order they were processed
	others := 0                   // records of other keys below past, processed
	othersDone := make(chan struct{})
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt)
	done := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (int, error) {
		if r.Offset == slow {
			<-othersDone // hold this key until the others went far past it
		}
		mu.Lock()
		defer mu.Unlock()
		k := string(r.Key)
		order[k] = append(order[k], r.Offset)
		if k != "k0" && r.Offset < past {
			if others++; others == past-past/keys {
				close(othersDone)
			}
		}
		return r.Value, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]), stage.Buffer(1000))
	count := 0
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(context.Background(), done, func(context.Context, int) error {
			if count++; count == n {
				drain()
			}
			return nil
		})
	}()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-waitHung():
		t.Fatal("hung: the slow record held back more than its key")
	}
	for k, offs := range order {
		if !slices.IsSorted(offs) {
			t.Fatalf("key %s processed out of offset order: %v", k, offs)
		}
	}
	checkCommitted(t, addrs, "g", "jobs")
}

// A record that always fails (forwarded to the sink) is tried Attempts
// times and then goes to the dead-letter topic; a record that does not
// decode goes there at once; both with headers that say why and where
// from. Everything else is stored, and every offset is committed: nothing
// was skipped silently.
func TestPoisonAndUndecodableReachTheDeadLetterTopic(t *testing.T) {
	const n = 1000
	_, addrs := newCluster(t, 4, "jobs", "dlq")
	produce(t, addrs, "jobs", n, keyOf)
	// Undecodable: 20 more records.
	cl := client(t, addrs, kgo.DefaultProduceTopic("jobs"))
	for i := range 20 {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte(keyOf(i)), Value: []byte("garbage")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	poison := func(v int) bool { return v%50 == 7 }
	st := newStore()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(3), kafka.DeadLetter("dlq"))
	done := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if poison(r.Value) {
			return r, fmt.Errorf("poison %d", r.Value)
		}
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]), stage.OnError(stage.Forward))
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(context.Background(), done, func(_ context.Context, r kafka.Record[int]) error {
			st.put(r)
			return nil
		})
	}()
	wantPoison := n / 50
	dead := readDeadLetters(t, addrs, wantPoison+20)
	waitFor(t, "every good record stored", func() bool { return st.len() == n-wantPoison })
	drain()
	if err := <-errc; err != nil && !isForwarded(err) {
		t.Fatal(err)
	}
	attempts := map[string]int{}
	for _, r := range dead {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if h["sluice-topic"] != "jobs" || h["sluice-partition"] == "" || h["sluice-offset"] == "" || h["sluice-reason"] == "" {
			t.Fatalf("dead letter %q with headers %v", r.Value, h)
		}
		attempts[h["sluice-attempts"]]++
	}
	if attempts["3"] != wantPoison || attempts["1"] != 20 {
		t.Fatalf("dead letters by attempts %v, want %d after 3 and 20 after 1", attempts, wantPoison)
	}
	checkCommitted(t, addrs, "g", "jobs")
}

// readDeadLetters reads want records from the dead-letter topic.
func readDeadLetters(t *testing.T, addrs []string, want int) []*kgo.Record {
	t.Helper()
	cl := client(t, addrs, kgo.ConsumeTopics("dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []*kgo.Record
	waitFor(t, fmt.Sprintf("%d dead letters", want), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 100e6)
		defer cancel()
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
		return len(got) >= want
	})
	return got
}

func isForwarded(err error) bool {
	var fe *sink.ForwardedError
	return errors.As(err, &fe)
}
