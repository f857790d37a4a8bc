package kafka_test

// Adversarial tests written from the documentation alone (doc.go, the doc
// comments of the exported names, the README's Kafka section and the core's
// stage/sink documentation). Each test names the promise it attacks.
// Durations appear only as hang watchdogs, or (marked "one-sided") as a
// window in which a correct library can never fail the test.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// ---------------------------------------------------------------- helpers

// r2NoSluiceLeak: no goroutine of sluice outlives the sink's return (for
// tests whose own franz-go clients are still open).
func r2NoSluiceLeak(t *testing.T, what string) {
	t.Helper()
	if gs := sluiceGoroutines(); len(gs) > 0 {
		t.Errorf("%s: %d goroutines of sluice still there when the sink returned:\n%s", what, len(gs), strings.Join(gs, "\n\n"))
	}
}

func r2PanicMsg(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return "<no panic>"
}

// r2Gate holds the produce requests to topic (the first one only, if once)
// at the broker until release is called. held is closed when the first
// request is held.
type r2Gate struct {
	held     chan struct{}
	released chan struct{}
	heldOnce sync.Once
	relOnce  sync.Once
}

func (g *r2Gate) release() { g.relOnce.Do(func() { close(g.released) }) }

func r2GateProduce(c *kfake.Cluster, topic string, once bool) *r2Gate {
	g := &r2Gate{held: make(chan struct{}), released: make(chan struct{})}
	names := topicNames(c)
	var n atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		hit := false
		for _, tt := range kreq.(*kmsg.ProduceRequest).Topics {
			if names.of(tt.Topic, tt.TopicID) == topic {
				hit = true
			}
		}
		if !hit || (once && n.Add(1) > 1) {
			return nil, nil, false
		}
		g.heldOnce.Do(func() { close(g.held) })
		c.SleepControl(func() { <-g.released })
		return nil, nil, false
	})
	return g
}

func r2Wait(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-waitHung():
		t.Fatalf("hung waiting for %s", what)
	}
}

// r2WaitOrEnd waits for ch, or for the run's result on errc (returned,
// with ended true). The deadline is a hang watchdog only.
func r2WaitOrEnd(t *testing.T, what string, ch <-chan struct{}, errc <-chan error) (err error, ended bool) {
	t.Helper()
	select {
	case <-ch:
		return nil, false
	case err := <-errc:
		return err, true
	case <-waitHung():
		t.Fatalf("hung waiting for %s", what)
		return nil, false
	}
}

// r2DeadLetterWait is the bound on a dead letter's wait that the tests
// whose dead letter must give up set. Its passing is ordered after events
// (the dead letter at the broker, the run's end asked) only by time: a
// stall of the machine (runcheck.Stalls) that could have let it pass first
// excuses the outcome it brings, and the run then checks nothing.
const r2DeadLetterWait = 2 * time.Second

// ---------------------------------------------------------------- options

// "Source panics if decode is nil or an option is the zero Option", and
// (package convention) misuse panics start with "sluice: kafka.Source:"; the
// panic comes when Source is called, not when a run starts.
func TestReview2SourceZeroOptionPanics(t *testing.T) {
	kopts := []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1"), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("jobs")}
	cases := map[string]func(){
		"zero option alone":         func() { kafka.Source(kopts, decodeInt, kafka.Option{}) },
		"zero option after a valid": func() { kafka.Source(kopts, decodeInt, kafka.MaxPending(3), kafka.Option{}) },
		"nil decode with options":   func() { kafka.Source[int](kopts, nil, kafka.MaxPending(3)) },
	}
	for name, f := range cases {
		if msg := r2PanicMsg(f); !strings.HasPrefix(msg, "sluice: kafka.Source:") {
			t.Errorf("%s: panic %q, want one starting with %q", name, msg, "sluice: kafka.Source:")
		}
	}
	// Hostile but valid values do not panic.
	for name, f := range map[string]func(){
		"MaxPending(MaxInt)":       func() { kafka.MaxPending(math.MaxInt) },
		"Attempts(MaxInt)":         func() { kafka.Attempts(math.MaxInt) },
		"CommitInterval(MaxInt64)": func() { kafka.CommitInterval(math.MaxInt64) },
		"DeadLetter(\" \")":        func() { kafka.DeadLetter(" ") },
	} {
		if msg := r2PanicMsg(f); msg != "<no panic>" {
			t.Errorf("%s panicked: %s", name, msg)
		}
	}
}

// "kopts without a consumer group fail the run the same way" (with a
// *stage.SourceError): nil kopts name no group either. The run must return
// (not hang dialing a default broker) with a *stage.SourceError.
func TestReview2NilKoptsFailTheRun(t *testing.T) {
	recs := kafka.Source(nil, decodeInt)
	err := waitErr(t, "a run with nil kopts", goRun(func() error {
		return sink.ForEach(context.Background(), recs, func(context.Context, kafka.Record[int]) error { return nil })
	}))
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("run with nil kopts: %v (%T), want a *stage.SourceError", err, err)
	}
	checkNoLeak(t, "nil kopts")
}

// Hostile option values in a real run: huge MaxPending/Attempts/
// CommitInterval (nothing may be sized by them up front), and the smallest
// ones (MaxPending(1), CommitInterval(1ns), Attempts(1)). Every record is
// delivered and, once the run is drained, committed. In a child process: a
// huge allocation would crash the process.
func TestReview2HostileOptionValues(t *testing.T) {
	for _, mode := range []string{"huge", "tiny"} {
		t.Run(mode, func(t *testing.T) { runcheck.InChildTest(t, func(t *testing.T) { r2HostileOptionValues(t, mode) }) })
	}
}

func r2HostileOptionValues(t *testing.T, mode string) {
	const n = 120
	addrs, l := twoPartitions(t, n)
	var opts []kafka.Option
	switch mode {
	case "huge":
		opts = []kafka.Option{kafka.MaxPending(math.MaxInt), kafka.Attempts(math.MaxInt), kafka.CommitInterval(math.MaxInt64)}
	case "tiny":
		opts = []kafka.Option{kafka.MaxPending(1), kafka.Attempts(1), kafka.CommitInterval(time.Nanosecond)}
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, append(opts, l.option())...)
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]), stage.Buffer(8))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	checkNoLeak(t, mode) // before any client of the test's own
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
	l.mu.Lock()
	ncommits := len(l.commits)
	l.mu.Unlock()
	t.Logf("%s: %d stored, %d commits seen at the broker", mode, st.len(), ncommits)
}

// "options of kopts for them are overridden": kopts that turn franz-go's
// auto-commit on with a 100 ms interval, or set their own OnPartitions*
// callbacks. The source's watermark must still rule (no commit passes the
// held record x), the run must consume, and the user's callbacks are never
// called.
func TestReview2KoptsCommitAndCallbacksOverridden(t *testing.T) {
	for _, mode := range []string{"autocommit", "callbacks"} {
		t.Run(mode, func(t *testing.T) { r2KoptsOverridden(t, mode) })
	}
}

func r2KoptsOverridden(t *testing.T, mode string) {
	const n, x = 60, 10
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	produceTo(t, addrs, "jobs", 0, 0, n)
	var userCalls atomic.Int32
	cb := func(context.Context, *kgo.Client, map[string][]int32) { userCalls.Add(1) }
	kopts := memberOpts(addrs, "g", "jobs")
	switch mode {
	case "autocommit":
		kopts = append(kopts, kgo.AutoCommitInterval(100*time.Millisecond)) // franz-go's smallest
	case "callbacks":
		kopts = append(kopts, kgo.OnPartitionsAssigned(cb), kgo.OnPartitionsRevoked(cb), kgo.OnPartitionsLost(cb))
	}
	release := make(chan struct{})
	committedAtX := make(chan struct{})
	var once sync.Once
	onEvent := func(e kafka.Event) {
		l.onEvent(e)
		if e.Kind == kafka.Committed && e.Err == nil && e.Offsets["jobs"][0] == x {
			once.Do(func() { close(committedAtX) })
		}
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(kopts, decodeInt, kafka.CommitInterval(2*time.Millisecond), kafka.OnEvent(onEvent))
	rows := stage.Map(stage.Until(recs, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == x {
			select {
			case <-release:
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
		return r, nil
	}, stage.Workers(8))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	defer func() {
		close(release)
		drain()
		if err := waitErr(t, "the run", errc); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, "every record but x stored", func() bool { return st.len() == n-1 })
	r2Wait(t, "a commit of the watermark x", committedAtX)
	if mode == "autocommit" {
		time.Sleep(400 * time.Millisecond) // one-sided window: four auto-commit intervals
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
		t.Errorf("committed %d while record %d is held: kopts' auto-commit was not overridden", got, x)
	}
	if k := userCalls.Load(); k != 0 {
		t.Errorf("the OnPartitions* callbacks given in kopts were called %d times; the source overrides them", k)
	}
	l.verify(t)
}

// ---------------------------------------------------------------- records

// Record carries "where it came from": Topic, Partition, Offset, Key,
// Headers, Timestamp, and Attempts 1 on the first try. ByKey is "the key of
// a record within its partition"; ByPartition puts a partition's records
// under one key. Breaking out of sink.All after the last record counts it as
// committed ("the one before a break out of sink.All counts"), the run's end
// "commits what is settled", and no goroutine is left.
func TestReview2RecordFieldsKeysAndAllBreak(t *testing.T) {
	_, addrs := newCluster(t, 2, "jobs")
	ts := time.UnixMilli(1_700_000_000_123)
	produceRecs(t, addrs,
		&kgo.Record{Topic: "jobs", Partition: 0, Key: []byte("kk"), Value: []byte("1"), Timestamp: ts},
		&kgo.Record{Topic: "jobs", Partition: 1, Key: []byte("kk"), Value: []byte("2"), Timestamp: ts},
		&kgo.Record{Topic: "jobs", Partition: 1, Key: []byte("zz"), Value: []byte("3"), Timestamp: ts.Add(time.Second),
			Headers: []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("2")}, {Key: "a", Value: []byte("3")}}},
		&kgo.Record{Topic: "jobs", Partition: 1, Key: nil, Value: []byte("4"), Timestamp: ts},
	)
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour))
	got := map[int]kafka.Record[int]{}
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r, err := range sink.All(context.Background(), recs) {
			if err != nil {
				runErr = err
				return
			}
			got[r.Value] = r
			if len(got) == 4 {
				break
			}
		}
	}()
	r2Wait(t, "four records from sink.All", done)
	if runErr != nil {
		t.Fatal(runErr)
	}
	checkNoLeak(t, "break out of sink.All")
	want := map[int]struct {
		p   int32
		off int64
		key string
	}{1: {0, 0, "kk"}, 2: {1, 0, "kk"}, 3: {1, 1, "zz"}, 4: {1, 2, ""}}
	for v, w := range want {
		r, ok := got[v]
		if !ok {
			t.Fatalf("record %d not delivered (got %v)", v, got)
		}
		if r.Topic != "jobs" || r.Partition != w.p || r.Offset != w.off || string(r.Key) != w.key || r.Attempts != 1 {
			t.Errorf("record %d: topic %q partition %d offset %d key %q attempts %d; want jobs %d %d %q 1", v, r.Topic, r.Partition, r.Offset, r.Key, r.Attempts, w.p, w.off, w.key)
		}
		if wantTS := ts; v == 3 && !r.Timestamp.Equal(wantTS.Add(time.Second)) || v != 3 && !r.Timestamp.Equal(wantTS) {
			t.Errorf("record %d: timestamp %v", v, r.Timestamp)
		}
	}
	if h := got[3].Headers; len(h) != 3 || h[0].Key != "a" || string(h[0].Value) != "1" || h[1].Key != "b" || h[2].Key != "a" || string(h[2].Value) != "3" {
		t.Errorf("record 3: headers %v, want a=1 b=2 a=3 in order", h)
	}
	if k := kafka.ByKey(got[1]); k != (kafka.RecordKey{Topic: "jobs", Partition: 0, Key: "kk"}) {
		t.Errorf("ByKey(record 1) = %+v", k)
	}
	if kafka.ByKey(got[1]) == kafka.ByKey(got[2]) {
		t.Errorf("ByKey: the same key in two partitions is one key (%+v); the doc says a key within its partition", kafka.ByKey(got[1]))
	}
	if kafka.ByKey(got[2]) == kafka.ByKey(got[3]) {
		t.Errorf("ByKey: two keys of one partition are one key")
	}
	if kafka.ByPartition(got[2]) != kafka.ByPartition(got[3]) || kafka.ByPartition(got[3]) != kafka.ByPartition(got[4]) {
		t.Errorf("ByPartition: records of one partition under different keys: %+v %+v %+v", kafka.ByPartition(got[2]), kafka.ByPartition(got[3]), kafka.ByPartition(got[4]))
	}
	if kafka.ByPartition(got[1]) == kafka.ByPartition(got[2]) {
		t.Errorf("ByPartition: two partitions under one key")
	}
	// ByKey and ByPartition on a zero Record: pure functions, no panic.
	if msg := r2PanicMsg(func() { kafka.ByKey(kafka.Record[int]{}); kafka.ByPartition(kafka.Record[int]{}) }); msg != "<no panic>" {
		t.Errorf("ByKey/ByPartition of a zero Record panicked: %s", msg)
	}
	// Every record was yielded before the break: the end commit covers them.
	c := committedNow(t, addrs, "g", "jobs", 2)
	if c[0] != 1 || c[1] != 3 {
		t.Errorf("after a break out of sink.All with every record yielded, committed %v; want map[0:1 1:3]", c)
	}
}

// ---------------------------------------------------------------- ordering

// "stage.KeyBy(kafka.ByPartition[T]): a partition's records one at a time,
// in offset order", with 8 workers over two partitions.
func TestReview2ByPartitionOneAtATimeInOrder(t *testing.T) {
	const n = 400
	addrs, l := twoPartitions(t, n)
	var mu sync.Mutex
	inFlight := map[int32]int{}
	overlaps := 0
	order := map[int32][]int64{}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		mu.Lock()
		if inFlight[r.Partition]++; inFlight[r.Partition] > 1 {
			overlaps++
		}
		order[r.Partition] = append(order[r.Partition], r.Offset)
		mu.Unlock()
		for range 3 {
			runtime.Gosched()
		}
		mu.Lock()
		inFlight[r.Partition]--
		mu.Unlock()
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByPartition[int]), stage.Buffer(16))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	finishAttack(t, drain, errc, addrs, l)
	mu.Lock()
	defer mu.Unlock()
	if overlaps > 0 {
		t.Errorf("ByPartition: %d calls overlapped another of the same partition", overlaps)
	}
	for p, offs := range order {
		if !slices.IsSorted(offs) || len(offs) != n/2 {
			t.Errorf("partition %d processed %d records, in order %v", p, len(offs), slices.IsSorted(offs))
		}
	}
}

// ---------------------------------------------------------------- panics

// A panic in the key function given to stage.KeyBy (a wrapper of ByKey)
// "fails the item as a panic in the stage's function does": under Forward,
// the record failed, so it is tried again up to Attempts times, then sent
// to the dead-letter topic; every other record is committed.
func TestReview2KeyPanicGoesToDeadLetter(t *testing.T) {
	const n, x = 40, 15
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	settleOnDeadLetter(c, l, "dlq", "jobs", 0, x)
	produceTo(t, addrs, "jobs", 0, 0, n)
	var keyCalls atomic.Int32
	key := func(r kafka.Record[int]) kafka.RecordKey {
		if r.Value == x {
			keyCalls.Add(1)
			panic("key exploded")
		}
		return kafka.ByKey(r)
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(2), kafka.DeadLetter("dlq"), kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		return r, nil
	}, stage.Workers(4), stage.KeyBy(key), stage.OnError(stage.Forward), stage.Buffer(8))
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
	h := headerMap(dead[0].Headers)
	if h["sluice-offset"] != strconv.Itoa(x) || h["sluice-attempts"] != "2" || !strings.Contains(h["sluice-reason"], "key exploded") {
		t.Errorf("dead letter headers %v; want offset %d, attempts 2, a reason naming the panic", h, x)
	}
	if k := keyCalls.Load(); k != 2 {
		t.Errorf("the key function panicked %d times for record %d; want Attempts = 2", k, x)
	}
	l.verify(t)
}

// A panic in sink.ForEach's callback ends the run with a *stage.Error
// (Stage "foreach") wrapping a *stage.PanicError; the record it panicked on
// is not committed, and the end commit is exactly its offset (every record
// before it was committed by the sink, one at a time).
func TestReview2SinkPanicIsNotCommitted(t *testing.T) {
	const n, x = 40, 12
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour), l.option())
	err := waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(context.Background(), recs, func(_ context.Context, r kafka.Record[int]) error {
			if r.Offset == x {
				panic("sink exploded")
			}
			l.settleRec(r)
			return nil
		})
	}))
	var se *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &se) || se.Stage != "foreach" || !errors.As(err, &pe) {
		t.Fatalf("run: %v; want a *stage.Error of stage foreach wrapping a *stage.PanicError", err)
	}
	checkNoLeak(t, "sink panic")
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got != x {
		t.Errorf("after the sink panicked at %d, committed %d; want exactly %d", x, got, x)
	}
	l.verify(t)
}

// stage.Run: "A panic in f is not recovered: Run cancels the run, waits for
// it, and lets the panic continue". Over a Kafka source, the panic reaches
// the caller, no goroutine of the run is left (the source's client is
// closed), and the end commit is the watermark, not past the record. In a
// child process, in case the panic escapes elsewhere.
func TestReview2RunCallbackPanic(t *testing.T) {
	runcheck.InChildTest(t, r2RunCallbackPanic)
}

func r2RunCallbackPanic(t *testing.T) {
	const n, x = 40, 9
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour), l.option())
	recovered := make(chan any, 1)
	exited := make(chan struct{}) // closed once the panic is recovered and the stack unwound
	go func() {
		defer close(exited)
		defer func() { recovered <- recover() }()
		_ = stage.Run(context.Background(), recs, func(_ context.Context, r kafka.Record[int], err error) error {
			if err != nil {
				return err
			}
			if r.Offset == x {
				panic("run callback exploded")
			}
			l.settleRec(r)
			return nil
		})
	}()
	var v any
	select {
	case v = <-recovered:
	case <-waitHung():
		t.Fatal("hung: stage.Run did not return after its callback panicked")
	}
	if fmt.Sprint(v) != "run callback exploded" {
		t.Fatalf("recovered %v; want the callback's panic", v)
	}
	// The goroutine that recovered still holds the panicking frames (Run's
	// among them) until its deferred calls return: the leak check looks
	// once it has.
	<-exited
	checkNoLeak(t, "stage.Run panic")
	got := committedNow(t, addrs, "g", "jobs", 1)[0]
	t.Logf("after the panic at %d, committed %d", x, got)
	if got > x {
		t.Errorf("committed %d, past the record %d the callback panicked on", got, x)
	} else if got != x {
		t.Errorf("committed %d; want the watermark %d (the run's end commits what is settled)", got, x)
	}
	l.verify(t)
}

// A panic in the OnEvent function is a panic in user code: the core
// promises the process never crashes for one ("PanicError ... so the
// process never crashes because a user function panicked"), and OnEvent's
// doc says it fails the run with a *stage.SourceError wrapping a
// *stage.PanicError. No commit may pass an unsettled record, and the
// client is closed. In a child process. (It used to crash the process when
// the panic came in the client's goroutine, and to leave the client open
// when it came in the final commit.)
func TestReview2OnEventPanicFailsTheRun(t *testing.T) {
	for _, mode := range []string{"assigned", "committed"} {
		t.Run(mode, func(t *testing.T) { runcheck.InChildTest(t, func(t *testing.T) { r2OnEventPanic(t, mode) }) })
	}
}

func r2OnEventPanic(t *testing.T, mode string) {
	const n = 30
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	var panicked atomic.Bool
	var after atomic.Int64 // calls after the panic: OnEvent says there are none
	onEvent := func(e kafka.Event) {
		if panicked.Load() {
			after.Add(1)
		}
		l.onEvent(e)
		if (mode == "assigned" && e.Kind == kafka.Assigned && len(e.Partitions) > 0) ||
			(mode == "committed" && e.Kind == kafka.Committed) {
			if panicked.CompareAndSwap(false, true) {
				panic("OnEvent exploded")
			}
		}
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), kafka.OnEvent(onEvent))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			if st.len() == n {
				drain()
			}
			return nil
		})
	})
	err := waitErr(t, "the run whose OnEvent panicked", errc)
	t.Logf("%s: OnEvent panicked %v; run returned %v; %d records stored", mode, panicked.Load(), err, st.len())
	var pe *stage.PanicError
	var se *stage.SourceError
	if !panicked.Load() {
		t.Fatalf("%s: OnEvent never got the event to panic at: the test is broken", mode)
	}
	if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "OnEvent exploded" {
		t.Errorf("the run returned %v, want a *stage.SourceError wrapping the *stage.PanicError", err)
	}
	if n := after.Load(); n > 0 {
		t.Errorf("%s: OnEvent called %d times after its panic, want none", mode, n)
	}
	if gs := sluiceGoroutines(); len(gs) > 0 {
		t.Errorf("%s: %d goroutines of sluice still there when the sink returned", mode, len(gs))
	}
	deadline := time.Now().Add(30 * time.Second) // watchdog: a closed client's goroutines exit at once
	for len(runGoroutines()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if gs := runGoroutines(); len(gs) > 0 {
		t.Errorf("%s: %d franz-go goroutines still running 30 s after the sink returned (the source's client was not closed); first:\n%s", mode, len(gs), gs[0])
	}
	l.verify(t)
}

// ---------------------------------------------------------------- offsets

// "Each partition holds at most MaxPending records that are not settled
// (taken by the pipeline, waiting to be tried again ...)": with
// MaxPending(1), a record that fails twice (the only place of its
// partition, held while waiting to be tried again) is still tried again,
// succeeds, and the partition goes on to the end. No deadlock.
func TestReview2MaxPendingOneRetries(t *testing.T) {
	const n, x = 30, 10
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	produceTo(t, addrs, "jobs", 0, 0, n)
	var mu sync.Mutex
	var tries []int
	maxOut, out := 0, 0
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.MaxPending(1), kafka.Attempts(3), kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		mu.Lock()
		defer mu.Unlock()
		if out++; out > maxOut {
			maxOut = out
		}
		if r.Value == x {
			tries = append(tries, r.Attempts)
			if r.Attempts < 3 {
				out--
				return r, errors.New("transient")
			}
		}
		return r, nil
	}, stage.Workers(4), stage.KeyBy(kafka.ByKey[int]), stage.OnError(stage.Forward))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			mu.Lock()
			out--
			mu.Unlock()
			return nil
		})
	})
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	drain()
	if err := waitErr(t, "the run", errc); err != nil && !isForwarded(err) {
		t.Fatal(err)
	}
	checkCommitted(t, addrs, "g", "jobs")
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(tries, []int{1, 2, 3}) {
		t.Errorf("record %d tried with Attempts %v, want [1 2 3]", x, tries)
	}
	if maxOut > 1 {
		t.Errorf("MaxPending(1): %d records of the partition were in the pipeline at once", maxOut)
	}
	l.verify(t)
}

// Drain mid-run: "the source commits ... one past the last record it took,
// when all are settled", and records polled but not taken are not settled.
// The end commit is exactly the number of records that reached the sink
// (contiguous from 0): not less (every taken record finished), not more
// (nothing polled and not taken is passed).
func TestReview2DrainCommitsExactlyWhatWasTaken(t *testing.T) {
	const n, at = 600, 100
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	produceTo(t, addrs, "jobs", 0, 0, n)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		return r, nil
	}, stage.Workers(8), stage.Buffer(8))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			if st.len() == at {
				drain()
			}
			return nil
		})
	})
	if err := waitErr(t, "the drained run", errc); err != nil {
		t.Fatal(err)
	}
	stored := st.len()
	got := committedNow(t, addrs, "g", "jobs", 1)[0]
	if stored >= n {
		t.Fatalf("the drain took effect only at the end (%d stored)", stored)
	}
	if missing, ok := st.has(0, int64(stored)); !ok {
		t.Errorf("the stored records are not contiguous from 0: %d missing (%d stored)", missing, stored)
	}
	if got != int64(stored) {
		t.Errorf("drained after %d records with %d stored: committed %d; want %d", at, stored, got, stored)
	}
	l.verify(t)
	checkNoLeak(t, "drain")
}

// "Every CommitInterval the source commits the watermarks that moved": once
// every record is committed and nothing moves, the source sends no more
// commits. One-sided: the 100 intervals waited can only miss a repeat, a
// correct source never fails this.
func TestReview2NoCommitWhenNothingMoved(t *testing.T) {
	const n = 100
	addrs, l := twoPartitions(t, n)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(3*time.Millisecond), l.option())
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	checkCommitted(t, addrs, "g", "jobs")
	// Wait for the source's own Committed event that reached both ends, then count.
	waitFor(t, "a Committed event at the ends", func() bool {
		e0, e1 := l.committedEvents("jobs", 0), l.committedEvents("jobs", 1)
		return len(e0) > 0 && len(e1) > 0 && e0[len(e0)-1] == n/2 && e1[len(e1)-1] == n/2
	})
	l.mu.Lock()
	before := len(l.commits)
	l.mu.Unlock()
	time.Sleep(300 * time.Millisecond) // one-sided window: 100 commit intervals
	l.mu.Lock()
	after := len(l.commits)
	extra := slices.Clone(l.commits[before:])
	l.mu.Unlock()
	if after != before {
		t.Errorf("nothing moved, yet %d partition offsets were committed again in 100 intervals (first: %+v)", after-before, extra[0])
	}
	finishAttack(t, drain, errc, addrs, l)
}

// ---------------------------------------------------------------- dead letters

// A dead-letter produce in flight when the run is drained: the record
// failed Attempts times before the drain, its dead letter is on its way.
// Drain "takes nothing more" but lets what is in flight finish: once the
// broker confirms, the record is settled, the run returns nil, and the end
// commit passes it, never passing a record neither stored nor
// dead-lettered.
func TestReview2DeadLetterInFlightDuringDrain(t *testing.T) {
	const n, x = 40, 20
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	settleOnDeadLetter(c, l, "dlq", "jobs", 0, x)
	g := r2GateProduce(c, "dlq", true)
	defer g.release()
	produceTo(t, addrs, "jobs", 0, 0, n)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(1), kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Hour), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == x {
			return r, errors.New("poison")
		}
		return r, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	r2Wait(t, "the dead letter held at the broker", g.held)
	// The dead letter is produced from the goroutine that settled x (here
	// the sink's, which got x's forwarded error): the run is held with it.
	drain()
	g.release()
	err := waitErr(t, "the drained run", errc)
	if err != nil && !isForwarded(err) {
		t.Fatalf("drained run: %v", err)
	}
	checkNoLeak(t, "drain with a dead letter in flight") // before any client of the test's own
	readDeadLetters(t, addrs, 1)
	got := committedNow(t, addrs, "g", "jobs", 1)[0]
	if got <= x {
		t.Errorf("after the drain with the dead letter of %d confirmed, committed %d; want past it", x, got)
	}
	for o := int64(0); o < got; o++ {
		st.mu.Lock()
		_, stored := st.seen[place(0, o)]
		st.mu.Unlock()
		if o != x && !stored {
			t.Errorf("committed %d, past record %d that was neither stored nor dead-lettered", got, o)
			break
		}
	}
	l.verify(t)
}

// A dead letter held at the broker when the run ends: the package says it
// is waited for "up to 30 s, even when the run is aborted", and that one
// that gives up "fails the run (unless the run was cut short first) ...
// and its record is not committed". With the bound set to 2 s for the test (r2DeadLetterWait):
//   - abort (the sink's ctx cancelled): the run returns the cancellation
//     once the bound passed (it used to wait for as long as the broker held
//     the request: an idempotent client cannot fail a record it sent);
//   - drain (Until's stop): nothing more is taken, so next never reports
//     the failure, yet the run fails with a *stage.SourceError (it used to
//     return nil, the failure lost).
//
// Either way the record is not committed, and nothing is left running.
func TestReview2DeadLetterHeldWhenTheRunEnds(t *testing.T) {
	for _, end := range []string{"abort", "drain"} {
		t.Run(end, func(t *testing.T) {
			defer kafka.SetDeadLetterWait(r2DeadLetterWait)()
			stalls := runcheck.WatchStalls(t)
			const n, x = 30, 10
			c, addrs := newCluster(t, 1, "jobs", "dlq")
			l := newLedger()
			l.watch(c)
			l.dumpOnFailure(t)
			g := r2GateProduce(c, "dlq", false)
			defer g.release()
			produceTo(t, addrs, "jobs", 0, 0, n)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(1), kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Hour), l.option())
			rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
				if r.Value == x {
					return r, errors.New("poison")
				}
				return r, nil
			}, stage.Workers(4), stage.OnError(stage.Forward))
			errc := goRun(func() error {
				return sink.ForEach(ctx, rows, func(_ context.Context, r kafka.Record[int]) error {
					l.settleRec(r)
					return nil
				})
			})
			err, ended := r2WaitOrEnd(t, "the dead letter held at the broker", g.held, errc)
			if ended {
				if stalls.Excuse(r2DeadLetterWait) {
					t.Skipf("the run ended (%v) before its dead letter reached the broker, but the process stalled for %v (bound %v): not checked", err, stalls.Longest(), r2DeadLetterWait)
				}
				t.Fatalf("the run ended (%v) before its dead letter reached the broker", err)
			}
			if end == "abort" {
				cancel()
			} else {
				drain()
			}
			select {
			case err = <-errc:
			case <-time.After(60 * time.Second): // watchdog: 30 times the bound set above
				t.Errorf("the run did not return within 60 s while its dead letter waited (the bound is %v); releasing the broker", r2DeadLetterWait)
				l.settle("jobs", 0, x) // released: its dead letter may now be confirmed
				g.release()
				err = waitErr(t, "the run after the broker was released", errc)
			}
			var se *stage.SourceError
			if end == "abort" && errors.As(err, &se) && stalls.Excuse(r2DeadLetterWait) {
				// The bound may have passed before the cancellation: then the
				// run was not cut short first.
				t.Skipf("aborted run: %v, but the process stalled for %v (bound %v) before the cancellation: not checked", err, stalls.Longest(), r2DeadLetterWait)
			}
			switch {
			case end == "abort" && !errors.Is(err, context.Canceled):
				t.Errorf("aborted run: %v, want context.Canceled", err)
			case end == "drain" && (!errors.As(err, &se) || !errors.Is(err, context.DeadlineExceeded)):
				t.Errorf("drained run: %v, want a *stage.SourceError for the dead letter that gave up", err)
			}
			checkNoLeak(t, "a dead letter held when the run ends: "+end)
			if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
				t.Errorf("committed %d, past the record %d whose dead letter was never confirmed", got, x)
			}
			l.verify(t)
		})
	}
}

// The same for a record decode rejects, whose dead letter is produced from
// inside the source's next: the drain ends the source's context while the
// dead letter waits, and the engine ends a drained stream quietly on the
// error next then returns. The run must still fail, and commit nothing past
// the record. (It returned nil: the failure was returned by next, so close
// did not raise it.)
func TestReview2UndecodableDeadLetterGivenUpDuringDrainFailsTheRun(t *testing.T) {
	defer kafka.SetDeadLetterWait(r2DeadLetterWait)()
	stalls := runcheck.WatchStalls(t)
	const bad = 5
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	g := r2GateProduce(c, "dlq", false)
	defer g.release()
	produceTo(t, addrs, "jobs", 0, 0, bad)
	produceRecs(t, addrs, &kgo.Record{Topic: "jobs", Partition: 0, Value: []byte("not an int")})
	produceTo(t, addrs, "jobs", 0, bad+1, 5)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Hour))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(recs, stop), func(context.Context, kafka.Record[int]) error { return nil })
	})
	if err, ended := r2WaitOrEnd(t, "the dead letter held at the broker", g.held, errc); ended {
		if stalls.Excuse(r2DeadLetterWait) {
			t.Skipf("the run ended (%v) before its dead letter reached the broker, but the process stalled for %v (bound %v): not checked", err, stalls.Longest(), r2DeadLetterWait)
		}
		t.Fatalf("the run ended (%v) before its dead letter reached the broker", err)
	}
	drain()
	err := waitErr(t, "the drained run whose dead letter gave up", errc)
	var se *stage.SourceError
	if !errors.As(err, &se) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("drained run: %v, want a *stage.SourceError for the dead letter that gave up", err)
	}
	checkNoLeak(t, "an undecodable record's dead letter given up during a drain")
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > bad {
		t.Errorf("committed %d, past the undecodable record %d whose dead letter was never confirmed", got, bad)
	}
}

// ---------------------------------------------------------------- cancellation

// Cancellation while the source waits for records (assigned, topic empty):
// abort returns context.Canceled, drain returns nil; nothing is left.
func TestReview2EndWhilePolling(t *testing.T) {
	for _, how := range []string{"abort", "drain"} {
		t.Run(how, func(t *testing.T) {
			_, addrs := newCluster(t, 1, "jobs")
			assigned := make(chan struct{})
			var once sync.Once
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.OnEvent(func(e kafka.Event) {
				if e.Kind == kafka.Assigned && len(e.Partitions["jobs"]) > 0 {
					once.Do(func() { close(assigned) })
				}
			}))
			var got atomic.Int32
			errc := goRun(func() error {
				return sink.ForEach(ctx, stage.Until(recs, stop), func(context.Context, kafka.Record[int]) error {
					got.Add(1)
					return nil
				})
			})
			r2Wait(t, "the partition assigned", assigned)
			if how == "abort" {
				cancel()
			} else {
				drain()
			}
			err := waitErr(t, "a run ended while polling", errc)
			if how == "abort" && !errors.Is(err, context.Canceled) {
				t.Errorf("abort while polling: %v, want context.Canceled", err)
			}
			if how == "drain" && err != nil {
				t.Errorf("drain while polling: %v, want nil", err)
			}
			if got.Load() != 0 {
				t.Errorf("%d records from an empty topic", got.Load())
			}
			checkNoLeak(t, how)
		})
	}
}

// ---------------------------------------------------------------- Publish

// Publish waits "for the broker to confirm the write before it takes the
// next item", and Published.Records counts only confirmed records: the
// record function is called for item k only after the broker got the
// produce of item k-1, and the count never runs ahead of the broker.
func TestReview2PublishOneAtATime(t *testing.T) {
	const n = 25
	c, addrs := newCluster(t, 1, "out")
	names := topicNames(c)
	var atBroker atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if k := len(producedRecords(names, kreq.(*kmsg.ProduceRequest), "out")); k > 0 {
			c.SleepControl(func() { time.Sleep(2 * time.Millisecond) }) // perturbation only
			atBroker.Add(int64(k))
		}
		return nil, nil, false
	})
	cl := client(t, addrs, kgo.ProducerBatchCompression(kgo.NoCompression()))
	var counts kafka.Published
	var calls int64
	var violations []string
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	err := waitErr(t, "Publish", goRun(func() error {
		return kafka.Publish(context.Background(), cl, source.Slice(items), func(v int) (*kgo.Record, error) {
			calls++
			if b := atBroker.Load(); b < calls-1 {
				violations = append(violations, fmt.Sprintf("record function called for item %d while the broker had got %d records", v, b))
			}
			if r := counts.Records.Load(); r > atBroker.Load() || r < calls-1 {
				violations = append(violations, fmt.Sprintf("item %d: Published.Records %d, broker got %d, %d items before", v, r, atBroker.Load(), calls-1))
			}
			return &kgo.Record{Topic: "out", Value: []byte(strconv.Itoa(v))}, nil
		}, &counts)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(violations) > 0 {
		t.Errorf("%d violations; first: %s", len(violations), violations[0])
	}
	if counts.Records.Load() != n {
		t.Errorf("Published.Records %d, want %d", counts.Records.Load(), n)
	}
}

// "forwarded errors come back in a *sink.ForwardedError": a Forward stage
// before Publish; the other items are published and counted.
func TestReview2PublishForwardedError(t *testing.T) {
	const n = 10
	_, addrs := newCluster(t, 1, "out")
	cl := client(t, addrs)
	bad := errors.New("item 3 failed")
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	rows := stage.Map(source.Slice(items), func(_ context.Context, v int) (int, error) {
		if v == 3 {
			return 0, bad
		}
		return v, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	var counts kafka.Published
	err := waitErr(t, "Publish", goRun(func() error {
		return kafka.Publish(context.Background(), cl, rows, func(v int) (*kgo.Record, error) {
			return &kgo.Record{Topic: "out", Value: []byte(strconv.Itoa(v))}, nil
		}, &counts)
	}))
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 1 || !errors.Is(err, bad) {
		t.Fatalf("Publish: %v; want a *sink.ForwardedError of 1 wrapping the stage's error", err)
	}
	if counts.Records.Load() != n-1 {
		t.Errorf("Published.Records %d, want %d", counts.Records.Load(), n-1)
	}
}

// Cancelling Publish's ctx while the broker holds its produce, with a
// client that may fail a record it sent (as Publish's doc says to give it):
// the run is cancelled ("calls in flight see ctx.Done(), nothing more is
// delivered, and the sink returns the cancellation error"). Publish must
// return with context.Canceled without waiting for the broker, count
// nothing, commit nothing at the source, and leave nothing running.
func TestReview2PublishCancelWhileProducing(t *testing.T) {
	c, addrs := newCluster(t, 1, "in", "out")
	g := r2GateProduce(c, "out", false) // every produce to "out" waits
	defer g.release()
	produceTo(t, addrs, "in", 0, 0, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	recs := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour))
	cl := client(t, addrs, kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.AllowIdempotentProduceCancellation())
	var counts kafka.Published
	errc := goRun(func() error {
		return kafka.Publish(ctx, cl, recs, func(r kafka.Record[int]) (*kgo.Record, error) {
			return &kgo.Record{Topic: "out", Value: []byte(strconv.Itoa(r.Value))}, nil
		}, &counts)
	})
	r2Wait(t, "the produce held at the broker", g.held)
	cancel()
	var err error
	returned := false
	select {
	case err = <-errc:
		returned = true
	case <-time.After(60 * time.Second): // watchdog: the broker holds the produce for ever
	}
	if !returned {
		t.Errorf("Publish did not return within 60 s after its ctx was cancelled while the broker held the produce; releasing the broker")
		g.release()
		err = waitErr(t, "Publish after the broker was released", errc)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Publish: %v, want context.Canceled", err)
	}
	if returned && counts.Records.Load() != 0 {
		t.Errorf("Published.Records %d, although the broker never confirmed", counts.Records.Load())
	}
	r2NoSluiceLeak(t, "cancelled Publish") // the test's own client is still open
	if got := committedNow(t, addrs, "g", "in", 1)[0]; returned && got > 0 {
		t.Errorf("committed %d at the source, although no record was confirmed", got)
	}
}

// A record function that returns (nil, nil) is hostile: Publish must not
// crash the process; it ends the run with a *stage.Error of stage "foreach"
// wrapping kafka.ErrNilRecord (it used to be a nil-pointer panic inside
// the client). In a child process.
func TestReview2PublishNilRecord(t *testing.T) {
	runcheck.InChildTest(t, r2PublishNilRecord)
}

func r2PublishNilRecord(t *testing.T) {
	_, addrs := newCluster(t, 1, "out")
	cl := client(t, addrs)
	var counts kafka.Published
	err := waitErr(t, "Publish", goRun(func() error {
		return kafka.Publish(context.Background(), cl, source.Slice([]int{0, 1, 2, 3}), func(v int) (*kgo.Record, error) {
			if v == 2 {
				return nil, nil
			}
			return &kgo.Record{Topic: "out", Value: []byte(strconv.Itoa(v))}, nil
		}, &counts)
	}))
	t.Logf("nil record: Publish returned %v; %d published", err, counts.Records.Load())
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "foreach" || !errors.Is(err, kafka.ErrNilRecord) {
		t.Errorf("Publish with a nil record: %v; want a *stage.Error of stage foreach wrapping ErrNilRecord", err)
	}
	if counts.Records.Load() != 2 {
		t.Errorf("Published.Records %d, want 2", counts.Records.Load())
	}
}
