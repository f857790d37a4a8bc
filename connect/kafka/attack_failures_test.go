package kafka_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// settleOnDeadLetter marks x settled when the broker receives its dead
// letter (before it confirms it: lenient).
func settleOnDeadLetter(c *kfake.Cluster, l *ledger, dlq string, topic string, p int32, x int64) {
	names := topicNames(c)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, tt := range kreq.(*kmsg.ProduceRequest).Topics {
			if names.of(tt.Topic, tt.TopicID) == dlq {
				l.settle(topic, p, x)
			}
		}
		return nil, nil, false
	})
}

// "tried again, up to Attempts times, then sent to the DeadLetter topic
// ... with its key, value and headers and these headers added". The
// record is tried exactly Attempts times, its dead letter carries its key,
// value, headers and the sluice-* headers, and the watermark passes it
// only after the dead letter was sent.
func TestAttackAttemptsThenDeadLetter(t *testing.T) {
	const n, x = 100, 37
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	l := newLedger()
	l.watch(c)
	settleOnDeadLetter(c, l, "dlq", "jobs", 0, x)
	produceTo(t, addrs, "jobs", 0, 0, x)
	produceRecs(t, addrs, &kgo.Record{Topic: "jobs", Key: []byte("poison-key"), Value: []byte(strconv.Itoa(x)),
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("abc")}}})
	produceTo(t, addrs, "jobs", 0, x+1, n-x-1)
	var mu sync.Mutex
	var tries []int
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(2), kafka.DeadLetter("dlq"), kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == x {
			mu.Lock()
			tries = append(tries, r.Attempts)
			mu.Unlock()
			return r, errors.New("poison")
		}
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]), stage.OnError(stage.Forward))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	dead := readDeadLetters(t, addrs, 1)
	waitFor(t, "every good record stored", func() bool { return st.len() == n-1 })
	checkCommitted(t, addrs, "g", "jobs")
	drain()
	if err := waitErr(t, "the run", errc); err != nil && !isForwarded(err) {
		t.Fatal(err)
	}
	mu.Lock()
	if !slices.Equal(tries, []int{1, 2}) {
		t.Errorf("poison tried with Attempts %v, want [1 2]", tries)
	}
	mu.Unlock()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters", len(dead))
	}
	d := dead[0]
	h := headerMap(d.Headers)
	if string(d.Key) != "poison-key" || string(d.Value) != strconv.Itoa(x) || h["trace"] != "abc" {
		t.Errorf("dead letter lost the record: key %q value %q headers %v", d.Key, d.Value, h)
	}
	want := map[string]string{"sluice-topic": "jobs", "sluice-partition": "0", "sluice-offset": strconv.Itoa(x), "sluice-attempts": "2"}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("dead letter header %s = %q, want %q (all: %v)", k, h[k], v, h)
		}
	}
	if !strings.Contains(h["sluice-reason"], "poison") {
		t.Errorf("sluice-reason %q does not say why", h["sluice-reason"])
	}
	l.verify(t)
}

// "without one, the run fails" with an error for which errors.As finds a
// *stage.SourceError, after exactly Attempts tries, and the record's offset
// is not committed (never passed, at the broker).
func TestAttackAttemptsWithoutDeadLetterFailTheRun(t *testing.T) {
	const n, x = 100, 37
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	var mu sync.Mutex
	var tries []int
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(2), kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(recs, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == x {
			mu.Lock()
			tries = append(tries, r.Attempts)
			mu.Unlock()
			return r, errors.New("poison")
		}
		return r, nil
	}, stage.Workers(8), stage.OnError(stage.Forward))
	err := waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			return nil
		})
	}))
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("run: %v, want a *stage.SourceError", err)
	}
	t.Logf("run failed with: %v", err)
	mu.Lock()
	if !slices.Equal(tries, []int{1, 2}) {
		t.Errorf("poison tried with Attempts %v, want [1 2]", tries)
	}
	mu.Unlock()
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
		t.Errorf("committed %d, past the failed record %d", got, x)
	}
	l.verify(t)
}

// Attempts(1): the first failure is final.
func TestAttackAttemptsOneFailsAtOnce(t *testing.T) {
	const n, x = 50, 10
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	var mu sync.Mutex
	var tries []int
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(1), kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(recs, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == x {
			mu.Lock()
			tries = append(tries, r.Attempts)
			mu.Unlock()
			return r, errors.New("poison")
		}
		return r, nil
	}, stage.Workers(8), stage.OnError(stage.Forward))
	err := waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			return nil
		})
	}))
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("run: %v, want a *stage.SourceError", err)
	}
	if !slices.Equal(tries, []int{1}) {
		t.Errorf("tried with Attempts %v, want [1]", tries)
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
		t.Errorf("committed %d, past the failed record %d", got, x)
	}
	l.verify(t)
}

// "The record is settled once the broker confirmed the dead letter; if
// that fails, the run fails and the record is not committed": the
// dead-letter topic does not exist (no auto-creation).
func TestAttackDeadLetterWriteFails(t *testing.T) {
	const n, x = 50, 10
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	opts := append(memberOpts(addrs, "g", "jobs"), kgo.UnknownTopicRetries(1))
	recs := kafka.Source(opts, decodeInt, kafka.Attempts(1), kafka.DeadLetter("missing-dlq"), kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(recs, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == x {
			return r, errors.New("poison")
		}
		return r, nil
	}, stage.Workers(8), stage.OnError(stage.Forward))
	err := waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			return nil
		})
	}))
	var se *stage.SourceError
	if err == nil || (isForwarded(err) && !errors.As(err, &se)) {
		t.Fatalf("run: %v; want a failure, since the dead letter could not be written", err)
	}
	t.Logf("run failed with: %v", err)
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
		t.Errorf("committed %d, past the record %d whose dead letter failed", got, x)
	}
	l.verify(t)
}

// "A record that does not decode goes to the dead-letter topic at once":
// with attempts 1, its key, value and headers, and the watermark passes it
// only after the dead letter was sent.
func TestAttackUndecodableToDeadLetter(t *testing.T) {
	const n, x = 60, 20
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	l := newLedger()
	l.watch(c)
	settleOnDeadLetter(c, l, "dlq", "jobs", 0, x)
	produceTo(t, addrs, "jobs", 0, 0, x)
	produceRecs(t, addrs, &kgo.Record{Topic: "jobs", Key: []byte("kg"), Value: []byte("garbage"), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}})
	produceTo(t, addrs, "jobs", 0, x+1, n-x-1)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var sawGarbage bool
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.DeadLetter("dlq"), kafka.CommitInterval(5*time.Millisecond), l.option())
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) error {
			if r.Offset == x {
				sawGarbage = true
			}
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	dead := readDeadLetters(t, addrs, 1)
	waitFor(t, "every good record stored", func() bool { return st.len() == n-1 })
	checkCommitted(t, addrs, "g", "jobs")
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	if sawGarbage {
		t.Error("the undecodable record reached the pipeline")
	}
	h := headerMap(dead[0].Headers)
	if string(dead[0].Key) != "kg" || string(dead[0].Value) != "garbage" || h["h"] != "v" || h["sluice-attempts"] != "1" ||
		h["sluice-offset"] != strconv.Itoa(x) || h["sluice-reason"] == "" {
		t.Errorf("dead letter key %q value %q headers %v", dead[0].Key, dead[0].Value, h)
	}
	l.verify(t)
}

// Without a dead-letter topic an undecodable record fails the run with a
// *stage.SourceError; the records before it still go through, and the
// commit at the end is exactly its offset.
func TestAttackUndecodableFailsTheRun(t *testing.T) {
	const n, x = 60, 20
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, x)
	produceRecs(t, addrs, &kgo.Record{Topic: "jobs", Value: []byte("garbage")})
	produceTo(t, addrs, "jobs", 0, x+1, n-x-1)
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour), l.option())
	st := newStore()
	err := waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(context.Background(), recs, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	}))
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("run: %v, want a *stage.SourceError", err)
	}
	if _, ok := st.has(0, x); !ok {
		t.Errorf("records before the undecodable one were not all delivered (%d stored)", st.len())
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
		t.Errorf("committed %d, past the undecodable record %d", got, x)
	} else if got != x {
		t.Errorf("committed %d at the end; want %d (every record before it was settled)", got, x)
	}
	l.verify(t)
}

// A panic in decode does not crash the process. Run in a child process:
// a crash fails this test instead of the whole package.
func TestAttackDecodePanicDoesNotCrash(t *testing.T) {
	for _, mode := range []string{"nodlq", "dlq"} {
		t.Run(mode, func(t *testing.T) { runcheck.InChildTest(t, func(t *testing.T) { attackDecodePanic(t, mode) }) })
	}
}

func attackDecodePanic(t *testing.T, mode string) {
	const n, x = 30, 10
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	l := newLedger()
	l.watch(c)
	if mode == "dlq" {
		settleOnDeadLetter(c, l, "dlq", "jobs", 0, x)
	}
	produceTo(t, addrs, "jobs", 0, 0, x)
	produceRecs(t, addrs, &kgo.Record{Topic: "jobs", Value: []byte("boom")})
	produceTo(t, addrs, "jobs", 0, x+1, n-x-1)
	decode := func(r *kgo.Record) (int, error) {
		if string(r.Value) == "boom" {
			panic("decode exploded")
		}
		return strconv.Atoi(string(r.Value))
	}
	opts := []kafka.Option{kafka.CommitInterval(5 * time.Millisecond), l.option()}
	if mode == "dlq" {
		opts = append(opts, kafka.DeadLetter("dlq"))
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decode, opts...)
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	if mode == "nodlq" {
		err := waitErr(t, "the run", errc)
		var se *stage.SourceError
		var pe *stage.PanicError
		t.Logf("nodlq run: %v", err)
		if !errors.As(err, &se) {
			t.Fatalf("run: %v, want a *stage.SourceError", err)
		}
		if !errors.As(err, &pe) {
			t.Logf("the error does not wrap a *stage.PanicError: %v", err)
		}
		if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
			t.Errorf("committed %d, past the record whose decode panicked (%d)", got, x)
		}
	} else {
		// Either outcome keeps the promise "nothing is skipped silently":
		// the record is dead-lettered (and the run goes on), or the run
		// fails without committing it. Neither (a stuck run) is a failure.
		dl := client(t, addrs, kgo.ConsumeTopics("dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		var dead []*kgo.Record
		var runErr error
		ended := false
		waitFor(t, "the record dead-lettered or the run ended", func() bool {
			select {
			case runErr = <-errc:
				ended = true
				return true
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			dl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { dead = append(dead, r) })
			return len(dead) > 0
		})
		if ended {
			t.Logf("dlq run ended without a dead letter: %v", runErr)
			var se *stage.SourceError
			if !errors.As(runErr, &se) {
				t.Errorf("run: %v, want a *stage.SourceError", runErr)
			}
			if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
				t.Errorf("committed %d, past the record whose decode panicked (%d)", got, x)
			}
		} else {
			h := headerMap(dead[0].Headers)
			t.Logf("dlq dead letter headers: %v", h)
			if h["sluice-offset"] != strconv.Itoa(x) {
				t.Errorf("dead letter headers %v", h)
			}
			waitFor(t, "every good record stored", func() bool { return st.len() == n-1 })
			checkCommitted(t, addrs, "g", "jobs")
			drain()
			if err := waitErr(t, "the run", errc); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.verify(t)
}

// "Each partition holds at most MaxPending records that are not settled":
// with MaxPending(k) and a pipeline that holds partition 0's records
// (Workers(-1): the stage would take everything), the source hands out at
// most k of them, while partition 1 goes on; released, partition 0 goes to
// the end, never more than k unsettled at once.
func TestAttackMaxPendingBoundsAPartition(t *testing.T) {
	const k, n = 5, 60
	c, addrs := newCluster(t, 2, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	release := make(chan struct{})
	var mu sync.Mutex
	taken := map[int64]bool{} // partition 0's records handed out
	outstanding, maxOutstanding := 0, 0
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.MaxPending(k), kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Partition == 0 {
			mu.Lock()
			taken[r.Offset] = true
			if outstanding++; outstanding > maxOutstanding {
				maxOutstanding = outstanding
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
			l.settleRec(r)
			st.put(r)
			if r.Partition == 0 {
				mu.Lock()
				outstanding--
				mu.Unlock()
			}
			return nil
		})
	})
	waitFor(t, "k records of partition 0 taken", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(taken) >= k
	})
	// Partition 1's records, produced now, all go through while partition 0 is full.
	produceTo(t, addrs, "jobs", 1, 1000, n)
	waitFor(t, "partition 1 stored", func() bool { return st.len() == n })
	mu.Lock()
	if len(taken) > k {
		t.Errorf("MaxPending(%d): %d records of the stuck partition were handed out", k, len(taken))
	}
	mu.Unlock()
	close(release)
	waitFor(t, "partition 0 stored", func() bool { return st.len() == 2*n })
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if maxOutstanding > k {
		t.Errorf("MaxPending(%d): %d records of partition 0 unsettled at once", k, maxOutstanding)
	}
	mu.Unlock()
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}

// MaxPending counts records "waiting to be tried again": with MaxPending(k)
// and k records that keep failing (and many attempts), the source hands out
// no record beyond them until they succeed.
func TestAttackMaxPendingCountsRetries(t *testing.T) {
	const k, n = 3, 40
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	var mu sync.Mutex
	maxOffset := int64(-1)
	maxAtHeal := int64(-1) // the highest offset handed out before any record could succeed
	failures := 0
	heal := make(chan struct{})
	healed := false
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.MaxPending(k), kafka.Attempts(1000), kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		mu.Lock()
		defer mu.Unlock()
		if r.Offset > maxOffset {
			maxOffset = r.Offset
		}
		select {
		case <-heal:
			return r, nil
		default:
		}
		if failures++; failures == 30 && !healed {
			healed = true
			maxAtHeal = maxOffset
			close(heal) // after 30 failures, records succeed
		}
		return r, errors.New("failing for now")
	}, stage.Workers(-1), stage.OnError(stage.Forward))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	select {
	case <-heal:
	case <-waitHung():
		t.Fatal("hung: the failing records were not tried again")
	}
	// Read what was handed out while every record failed: once they heal,
	// settlements make room and later offsets come, even before this
	// goroutine looks.
	mu.Lock()
	if maxAtHeal >= k {
		t.Errorf("MaxPending(%d) with %d failing records: offset %d was handed out", k, k, maxAtHeal)
	}
	mu.Unlock()
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	drain()
	if err := waitErr(t, "the run", errc); err != nil && !isForwarded(err) {
		t.Fatal(err)
	}
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}
