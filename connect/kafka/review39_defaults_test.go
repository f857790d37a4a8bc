package kafka_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Attempts: "The default is 3." A record that always fails (forwarded) is
// handed to the pipeline three times, Attempts 1, 2, 3, then dead-lettered
// with sluice-attempts 3; the run goes on and commits to the end.
func TestReview39DefaultAttemptsIsThree(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs", "dlq")
	produceTo(t, addrs, "jobs", 0, 0, 5)
	var mu sync.Mutex
	var tries []int
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.DeadLetter("dlq"), kafka.CommitInterval(5*time.Millisecond))
	work := stage.Map(stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) (int, error) {
		if r.Offset == 2 {
			mu.Lock()
			tries = append(tries, r.Attempts)
			mu.Unlock()
			return 0, errors.New("poison")
		}
		return r.Value, nil
	}, stage.OnError(stage.Forward), stage.Workers(2))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), work, func(context.Context, int) error { return nil })
	})
	dl := r14ReadTopic(t, addrs, "dlq", 1)[0]
	checkCommitted(t, addrs, "g", "jobs")
	drain()
	err := waitErr(t, "the run", errc)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) {
		t.Errorf("run returned %v, want the forwarded failures in a *sink.ForwardedError", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tries) != 3 || tries[0] != 1 || tries[1] != 2 || tries[2] != 3 {
		t.Errorf("the failing record was tried with Attempts %v, want [1 2 3] (default Attempts 3)", tries)
	}
	if got := r14Header(dl, "sluice-attempts"); got != "3" {
		t.Errorf("dead letter's sluice-attempts = %q, want 3", got)
	}
}

// MaxPending: "The default is 1000." Partition 0 holds 1200 records and
// the pipeline (unbounded workers) holds every record of it: exactly 1000
// are handed out. Partition 1's records, produced once partition 0 is
// full, all go through (so the source polled on meanwhile), and still no
// more than 1000 of partition 0 were handed out.
func TestReview39DefaultMaxPendingIsAThousand(t *testing.T) {
	const def, n = 1000, 1200
	_, addrs := newCluster(t, 2, "jobs")
	cl := client(t, addrs, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(2*n))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "jobs", Partition: 0, Value: []byte("1")}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var mu sync.Mutex
	taken := map[int64]bool{}
	full := make(chan struct{})
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour))
	rows := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Partition == 0 {
			mu.Lock()
			taken[r.Offset] = true
			if len(taken) == def {
				close(full)
			}
			mu.Unlock()
			select {
			case <-release:
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
		return r, nil
	}, stage.Workers(-1))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			st.put(r)
			return nil
		})
	})
	select {
	case <-full:
	case err := <-errc:
		t.Fatalf("the run ended (%v) before %d records of partition 0 were taken", err, def)
	case <-waitHung():
		mu.Lock()
		got := len(taken)
		mu.Unlock()
		close(release)
		t.Fatalf("hung: %d records of partition 0 were taken, want the default MaxPending %d", got, def)
	}
	produceTo(t, addrs, "jobs", 1, 0, 50)
	waitFor(t, "partition 1 stored", func() bool { return st.len() == 50 })
	mu.Lock()
	if len(taken) != def {
		t.Errorf("default MaxPending: %d records of the held partition were handed out, want %d", len(taken), def)
	}
	mu.Unlock()
	close(release)
	waitFor(t, "everything stored", func() bool { return st.len() == n+50 })
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, addrs, "g", "jobs")
}
