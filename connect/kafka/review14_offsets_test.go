package kafka_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

func r14Panics(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

// Option: "Options are checked when they are made: an invalid one panics
// there"; Source: "Source panics if decode is nil or an option is the zero
// Option"; Publish: "Publish panics if cl or record is nil".
func TestReview14KafkaOptionBounds(t *testing.T) {
	kopts := []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1"), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t")}
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	items := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(context.Context) (int, error) { return 0, errors.New("unused") }, nil
	})
	rec := func(int) (*kgo.Record, error) { return &kgo.Record{Topic: "t"}, nil }
	cases := []struct {
		name  string
		f     func()
		panic bool
	}{
		{"Attempts(0)", func() { kafka.Attempts(0) }, true},
		{"Attempts(-1)", func() { kafka.Attempts(-1) }, true},
		{"Attempts(1)", func() { kafka.Attempts(1) }, false},
		{"MaxPending(0)", func() { kafka.MaxPending(0) }, true},
		{"MaxPending(1)", func() { kafka.MaxPending(1) }, false},
		{"CommitInterval(0)", func() { kafka.CommitInterval(0) }, true},
		{"CommitInterval(-1)", func() { kafka.CommitInterval(-1) }, true},
		{"CommitInterval(1)", func() { kafka.CommitInterval(1) }, false},
		{"DeadLetter(\"\")", func() { kafka.DeadLetter("") }, true},
		{"OnEvent(nil)", func() { kafka.OnEvent(nil) }, true},
		{"Source(nil decode)", func() { kafka.Source[int](kopts, nil) }, true},
		{"Source(zero Option)", func() { kafka.Source(kopts, decodeInt, kafka.Option{}) }, true},
		{"Source(ok)", func() { kafka.Source(kopts, decodeInt, kafka.Attempts(2)) }, false},
		{"Publish(nil cl)", func() { _ = kafka.Publish(context.Background(), nil, items, rec, nil) }, true},
		{"Publish(nil record)", func() { _ = kafka.Publish[int](context.Background(), cl, items, nil, nil) }, true},
		{"Publish(zero Stream)", func() { _ = kafka.Publish(context.Background(), cl, stage.Stream[int]{}, rec, nil) }, true},
	}
	for _, c := range cases {
		v := r14Panics(c.f)
		if (v != nil) != c.panic {
			t.Errorf("%s: panic %v, want a panic: %v", c.name, v, c.panic)
		} else if v != nil {
			t.Logf("%s: %v", c.name, v)
		}
	}
}

// Source: "A run that ends before it asks for a record, cancelled or drained
// at once, makes no client and never joins."
func TestReview14KafkaRunEndedAtOnceNeverJoins(t *testing.T) {
	c, addrs := newCluster(t, 1, "t")
	var requests atomic.Int32
	c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		requests.Add(1)
		return nil, nil, false
	})
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt)
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := sink.ForEach(cctx, stage.Map(src, func(_ context.Context, r kafka.Record[int]) (int, error) { return r.Value, nil }), func(context.Context, int) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	stop, drain := context.WithCancel(context.Background())
	drain()
	err = sink.ForEach(context.Background(), stage.Until(src, stop), func(context.Context, kafka.Record[int]) error { return nil })
	if err != nil {
		t.Fatalf("drained run: %v", err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the cluster saw %d requests from runs that never asked for a record", n)
	}
}

// Offsets: the run commits "when the run stops"; a record for which the
// sink returned ErrStop is committed (stage.Run). So the group's offset is
// exactly one past the stopping record, and the next run of the same Source
// value starts there.
func TestReview14KafkaErrStopCommitsThroughTheStoppingRecord(t *testing.T) {
	_, addrs := newCluster(t, 1, "t")
	r14Produce(t, addrs, "t", r14Values(40)...)
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.CommitInterval(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := sink.ForEach(ctx, src, func(_ context.Context, r kafka.Record[int]) error {
		if r.Offset == 10 {
			return stage.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := r14Committed(t, addrs, "g", "t", 0); got != 11 {
		t.Fatalf("committed %d after a stop at offset 10, want 11", got)
	}
	if off, _ := r14FirstOffset(t, src); off != 11 {
		t.Fatalf("the next run started at %d, want 11", off)
	}
}

// Offsets: a failed commit at the sink holds the watermark; the run's final
// commit covers everything before it and not it. The sink fails at the
// partition's last record.
func TestReview14KafkaSinkErrorOnTheLastRecord(t *testing.T) {
	_, addrs := newCluster(t, 1, "t")
	r14Produce(t, addrs, "t", r14Values(10)...)
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.CommitInterval(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	boom := errors.New("commit failed")
	err := sink.ForEach(ctx, src, func(_ context.Context, r kafka.Record[int]) error {
		if r.Offset == 9 {
			return boom
		}
		return nil
	})
	var se *stage.Error
	if !errors.Is(err, boom) || !errors.As(err, &se) {
		t.Fatalf("err = %v", err)
	}
	if got := r14Committed(t, addrs, "g", "t", 0); got != 9 {
		t.Fatalf("committed %d, want 9 (everything before the failed record, not it)", got)
	}
	if off, _ := r14FirstOffset(t, src); off != 9 {
		t.Fatalf("the next run started at %d, want 9", off)
	}
}

// Offsets: "committing the offset of a finished record could pass one still
// running ... The source commits ... the lowest offset whose record is not
// settled". Records finish out of order (no KeyBy, 8 workers); one in the
// middle fails the run (FailFast) after all the others have finished.
func TestReview14KafkaFailFastInTheMiddleNeverCommitsPastIt(t *testing.T) {
	_, addrs := newCluster(t, 1, "t")
	const n = 16
	r14Produce(t, addrs, "t", r14Values(n)...)
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.CommitInterval(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var done atomic.Int32
	othersDone := make(chan struct{})
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (int, error) {
		if r.Offset == 5 {
			select {
			case <-othersDone:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			return 0, errors.New("record 5 fails")
		}
		return r.Value, nil
	}, stage.Workers(8), stage.Buffer(n))
	err := sink.ForEach(ctx, work, func(_ context.Context, v int) error {
		if done.Add(1) == n-1 {
			close(othersDone)
		}
		return nil
	})
	var se *stage.Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %v", err)
	}
	if got := r14Committed(t, addrs, "g", "t", 0); got != 5 {
		t.Fatalf("committed %d, want 5: the watermark is the failed record", got)
	}
}

// Offsets: "it is tried again, up to Attempts times, then sent to the
// DeadLetter topic"; DeadLetter: "with its key, value and headers and these
// headers added: sluice-reason, sluice-topic, sluice-partition,
// sluice-offset, sluice-attempts"; Record.Attempts: "1 on the first try".
func TestReview14KafkaDeadLetterCarriesTheRecord(t *testing.T) {
	_, addrs := newCluster(t, 1, "t", "dlq")
	recs := r14Values(8)
	recs[3].Key = []byte("the-key")
	recs[3].Headers = []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}
	r14Produce(t, addrs, "t", recs...)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var attempts []int
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.Attempts(2), kafka.DeadLetter("dlq"),
		kafka.CommitInterval(time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
			if e.Kind == kafka.Committed && e.Err == nil && e.Offsets["t"][0] == 8 {
				drain()
			}
		}))
	work := stage.Map(stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) (int, error) {
		if r.Offset == 3 {
			mu.Lock()
			attempts = append(attempts, r.Attempts)
			mu.Unlock()
			return 0, errors.New("record 3 is poison")
		}
		return r.Value, nil
	}, stage.OnError(stage.Forward), stage.Workers(2))
	err := sink.ForEach(ctx, work, func(context.Context, int) error { return nil })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 2 {
		t.Fatalf("err = %v, want the 2 forwarded failures", err)
	}
	mu.Lock()
	if len(attempts) != 2 || attempts[0] != 1 || attempts[1] != 2 {
		t.Errorf("attempts seen %v, want [1 2]", attempts)
	}
	mu.Unlock()
	dl := r14ReadTopic(t, addrs, "dlq", 1)[0]
	if string(dl.Key) != "the-key" || string(dl.Value) != "3" || r14Header(dl, "h") != "v" ||
		r14Header(dl, "sluice-reason") == "" || r14Header(dl, "sluice-topic") != "t" ||
		r14Header(dl, "sluice-partition") != "0" || r14Header(dl, "sluice-offset") != "3" || r14Header(dl, "sluice-attempts") != "2" {
		t.Fatalf("dead letter key %q value %q headers %v", dl.Key, dl.Value, dl.Headers)
	}
}

// Offsets: "without one, the run fails, so that nothing is ever skipped
// silently"; the failing record is not committed.
func TestReview14KafkaNoDeadLetterFailsTheRunAndHoldsTheRecord(t *testing.T) {
	_, addrs := newCluster(t, 1, "t")
	r14Produce(t, addrs, "t", r14Values(8)...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.Attempts(2), kafka.CommitInterval(time.Millisecond))
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (int, error) {
		if r.Offset == 3 {
			return 0, errors.New("record 3 is poison")
		}
		return r.Value, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	err := sink.ForEach(ctx, work, func(context.Context, int) error { return nil })
	if err == nil {
		t.Fatal("the run succeeded with a record that failed every attempt and no dead-letter topic")
	}
	t.Logf("run: %v", err)
	if got := r14Committed(t, addrs, "g", "t", 0); got != 3 {
		t.Fatalf("committed %d, want 3", got)
	}
	if off, _ := r14FirstOffset(t, src); off != 3 {
		t.Fatalf("next run starts at %d, want 3", off)
	}
}

// Source: "a panic in decode fails the run with a *stage.SourceError wrapping
// a *stage.PanicError, and the record is not committed."
func TestReview14KafkaDecodePanicLeavesTheRecordUncommitted(t *testing.T) {
	_, addrs := newCluster(t, 1, "t")
	r14Produce(t, addrs, "t", r14Values(6)...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var armed atomic.Bool
	armed.Store(true)
	decode := func(r *kgo.Record) (int, error) {
		if r.Offset == 4 && armed.Load() {
			panic("decode exploded")
		}
		return strconv.Atoi(string(r.Value))
	}
	src := kafka.Source(memberOpts(addrs, "g", "t"), decode, kafka.CommitInterval(time.Millisecond))
	err := sink.ForEach(ctx, src, func(context.Context, kafka.Record[int]) error { return nil })
	var se *stage.SourceError
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	if got := r14Committed(t, addrs, "g", "t", 0); got > 4 {
		t.Fatalf("committed %d, past the record whose decode panicked", got)
	}
	armed.Store(false)
	if off, _ := r14FirstOffset(t, src); off > 4 {
		t.Fatalf("next run starts at %d, past 4", off)
	}
}

// Stream: "Several sinks may run one Stream at the same time"; Source: "Each
// run is one member of the group". Two runs of one Source value share a
// group; between them every record is committed.
func TestReview14KafkaTwoRunsOfOneSourceAtOnce(t *testing.T) {
	_, addrs := newCluster(t, 4, "t")
	produce(t, addrs, "t", 400, func(i int) string { return strconv.Itoa(i % 37) })
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	// Drain once the commits of both members cover every record: a record
	// processed by a member that then lost its partition is processed again
	// by the new owner (the old one's acknowledgement is ignored).
	var mu sync.Mutex
	high := map[int32]int64{}
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
		if e.Kind != kafka.Committed || e.Err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		sum := int64(0)
		for p, off := range e.Offsets["t"] {
			high[p] = max(high[p], off)
		}
		for _, off := range high {
			sum += off
		}
		if sum == 400 {
			drain()
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Every call waits until both runs have taken a record (each run's
	// calls get its own context): so both are members at once, each with
	// partitions of its own, rather than the first taking every record
	// before the second joins.
	var runsMu sync.Mutex
	runs := map[context.Context]bool{}
	both := make(chan struct{})
	run := func() error {
		return sink.ForEach(ctx, stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (int, error) {
			runsMu.Lock()
			if !runs[ctx] {
				runs[ctx] = true
				if len(runs) == 2 {
					close(both)
				}
			}
			runsMu.Unlock()
			select {
			case <-both:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			return r.Value, nil
		}, stage.KeyBy(kafka.ByKey[int]), stage.Workers(4)), func(context.Context, int) error { return nil })
	}
	errc := make(chan error, 2)
	go func() { errc <- run() }()
	go func() { errc <- run() }()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	checkCommitted(t, addrs, "g", "t")
}
