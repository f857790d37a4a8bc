package kafka_test

// Review 7: adversarial tests written from the documentation alone (doc.go,
// the exported names' doc comments, the README and package stage's docs).
// Every wait is ordered by channels and conditions; durations are hang
// watchdogs (r7Watchdog) or settings that never fire within a test (an hour).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

const r7Watchdog = 60 * time.Second

// ---------------------------------------------------------------- helpers

// r7Cond is a broadcast: bump wakes every waiter, which re-checks its
// predicate. No wake-up is lost: the channel is read before the predicate.
type r7Cond struct {
	mu    sync.Mutex
	ch    chan struct{}
	ended int // runs started with r7Start(c, ...) that returned
	allow int // how many of them may end while a wait goes on
}

func newR7Cond() *r7Cond { return &r7Cond{ch: make(chan struct{})} }

func (c *r7Cond) bump() {
	c.mu.Lock()
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

func (c *r7Cond) wait(t testing.TB, what string, pred func() bool) {
	t.Helper()
	deadline := time.After(r7Watchdog)
	for {
		c.mu.Lock()
		ch, ended, allow := c.ch, c.ended, c.allow
		c.mu.Unlock()
		if ended > allow {
			t.Fatalf("a run ended while waiting for %s", what)
		}
		if pred() {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("hang: gave up waiting for %s", what+r7Debug())
		}
	}
}

// r7Events records a source's events.
type r7Events struct {
	cond     *r7Cond
	mu       sync.Mutex
	events   []kafka.Event
	inflight atomic.Int32
	overlaps atomic.Int32 // calls of f that overlapped another (within one run)
}

func newR7Events(c *r7Cond) *r7Events { return &r7Events{cond: c} }

func (r *r7Events) on(e kafka.Event) {
	if r.inflight.Add(1) > 1 {
		r.overlaps.Add(1)
	}
	defer r.inflight.Add(-1)
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.cond.bump()
}

func (r *r7Events) checkNoOverlap(t testing.TB) {
	t.Helper()
	if n := r.overlaps.Load(); n > 0 {
		t.Errorf("OnEvent's f was called %d times while another call of the same run was running", n)
	}
}

func (r *r7Events) option() kafka.Option { return kafka.OnEvent(r.on) }

func (r *r7Events) list() []kafka.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// committed lists the offsets of topic/p in successful Committed events.
func (r *r7Events) committed(topic string, p int32) []int64 {
	var out []int64
	for _, e := range r.list() {
		if e.Kind != kafka.Committed || e.Err != nil {
			continue
		}
		if o, ok := e.Offsets[topic][p]; ok {
			out = append(out, o)
		}
	}
	return out
}

func (r *r7Events) waitCommitted(t testing.TB, topic string, p int32, off int64) {
	t.Helper()
	r.cond.wait(t, fmt.Sprintf("a Committed event of %s/%d at %d", topic, p, off), func() bool {
		return slices.Contains(r.committed(topic, p), off)
	})
}

func (r *r7Events) count(k kafka.EventKind) int {
	n := 0
	for _, e := range r.list() {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// r7Produce writes values to partition p of topic, in order, keys from key
// (nil: "k"+value).
func r7Produce(t testing.TB, addrs []string, topic string, p int32, values []string, key func(i int) string, headers ...kgo.RecordHeader) {
	t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		k := "k" + v
		if key != nil {
			k = key(i)
		}
		recs[i] = &kgo.Record{Topic: topic, Partition: p, Key: []byte(k), Value: []byte(v), Headers: headers}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func r7Ints(first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(first + i)
	}
	return out
}

func r7Start[T any](c *r7Cond, ctx, stop context.Context, s stage.Stream[T], put func(context.Context, T) error) <-chan error {
	errc := make(chan error, 1)
	go func() {
		err := sink.ForEach(ctx, stage.Until(s, stop), put)
		if c != nil {
			c.mu.Lock()
			c.ended++
			c.mu.Unlock()
			c.bump()
		}
		errc <- err
	}()
	return errc
}

func r7Err(t testing.TB, what string, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(r7Watchdog):
		t.Fatalf("hang: %s did not return", what)
		return nil
	}
}

func r7Close(t testing.TB, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(r7Watchdog):
		t.Fatalf("hang: gave up waiting for %s", what+r7Debug())
	}
}

// r7ReadTopic reads want records of topic from the start (all partitions)
// and checks that the topic holds no more than want.
func r7ReadTopic(t testing.TB, addrs []string, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), r7Watchdog)
	defer cancel()
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("hang: read %d of %d records of %s", len(out), want, topic)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != int64(want) {
		t.Errorf("topic %s holds %d records, want %d", topic, total, want)
	}
	return out
}

// r7Refuse makes the broker answer every produce request to topic with
// code, a non-retriable error.
func r7Refuse(c *kfake.Cluster, topic string, code int16) {
	id := c.TopicInfo(topic).TopicID
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.ProduceRequest)
		hit := false
		for _, rt := range req.Topics {
			if rt.Topic == topic || rt.TopicID == id {
				hit = true
			}
		}
		if !hit {
			return nil, nil, false
		}
		c.KeepControl()
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		resp.SetVersion(req.GetVersion())
		for _, rt := range req.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

func r7Headers(hs []kgo.RecordHeader) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

func r7Pass(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) { return r, nil }

// ---------------------------------------------------------------- options

func r7Panics(f func()) (panicked bool) {
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	f()
	return false
}

// Promise: every option panics when it is made with an invalid value, Source
// panics on a nil decode or a zero Option, Publish on a nil client, record
// function or zero Stream; valid values at the edge do not panic, and
// building a Source runs nothing.
func TestReview7OptionAndConstructorPanics(t *testing.T) {
	kopts := []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1"), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("t")}
	mustPanic := map[string]func(){
		"MaxPending(0)":       func() { kafka.MaxPending(0) },
		"MaxPending(-1)":      func() { kafka.MaxPending(-1) },
		"Attempts(0)":         func() { kafka.Attempts(0) },
		"Attempts(-3)":        func() { kafka.Attempts(-3) },
		"CommitInterval(0)":   func() { kafka.CommitInterval(0) },
		"CommitInterval(-1s)": func() { kafka.CommitInterval(-time.Second) },
		"DeadLetter(\"\")":    func() { kafka.DeadLetter("") },
		"OnEvent(nil)":        func() { kafka.OnEvent(nil) },
		"Source(nil decode)":  func() { kafka.Source[int](kopts, nil) },
		"Source(zero Option)": func() { kafka.Source(kopts, decodeInt, kafka.Attempts(2), kafka.Option{}) },
		"Publish(nil client)": func() { _ = kafka.Publish(context.Background(), nil, r7IntSource(3, nil), r7IntRecord("t"), nil) },
		"Publish(nil record)": func() { _ = kafka.Publish[int](context.Background(), r7Client(t), r7IntSource(3, nil), nil, nil) },
		"Publish(zero Stream)": func() {
			_ = kafka.Publish(context.Background(), r7Client(t), stage.Stream[int]{}, r7IntRecord("t"), nil)
		},
	}
	for name, f := range mustPanic {
		if !r7Panics(f) {
			t.Errorf("%s did not panic", name)
		}
	}
	mustNot := map[string]func(){
		"MaxPending(1)":           func() { kafka.MaxPending(1) },
		"Attempts(1)":             func() { kafka.Attempts(1) },
		"CommitInterval(1ns)":     func() { kafka.CommitInterval(time.Nanosecond) },
		"DeadLetter(x)":           func() { kafka.DeadLetter("x") },
		"Source(unreachable)":     func() { kafka.Source(kopts, decodeInt, kafka.MaxPending(1), kafka.OnEvent(func(kafka.Event) {})) },
		"Source(no group, built)": func() { kafka.Source([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, decodeInt) },
	}
	for name, f := range mustNot {
		if r7Panics(f) {
			t.Errorf("%s panicked", name)
		}
	}
}

// r7Client is a producer client that never connects unless used.
func r7Client(t testing.TB) *kgo.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Promise: ByKey keys a record by topic, partition and key (same key in two
// partitions: two keys); ByPartition by topic and partition only.
func TestReview7KeyFunctions(t *testing.T) {
	r := func(topic string, p int32, key string, off int64) kafka.Record[int] {
		return kafka.Record[int]{Topic: topic, Partition: p, Key: []byte(key), Offset: off}
	}
	a0, a0b := r("t", 0, "a", 1), r("t", 0, "a", 9)
	b0, a1, a0u := r("t", 0, "b", 2), r("t", 1, "a", 3), r("u", 0, "a", 4)
	if kafka.ByKey(a0) != kafka.ByKey(a0b) {
		t.Error("ByKey: two records of one key of one partition differ")
	}
	if kafka.ByKey(a0) == kafka.ByKey(b0) || kafka.ByKey(a0) == kafka.ByKey(a1) || kafka.ByKey(a0) == kafka.ByKey(a0u) {
		t.Error("ByKey: records of different keys, partitions or topics share a key")
	}
	if got := kafka.ByKey(a0); got.Topic != "t" || got.Partition != 0 || got.Key != "a" {
		t.Errorf("ByKey = %+v", got)
	}
	if kafka.ByPartition(a0) != kafka.ByPartition(b0) {
		t.Error("ByPartition: two records of one partition differ")
	}
	if kafka.ByPartition(a0) == kafka.ByPartition(a1) || kafka.ByPartition(a0) == kafka.ByPartition(a0u) {
		t.Error("ByPartition: records of different partitions share a key")
	}
	names := map[string]bool{}
	for _, k := range []kafka.EventKind{kafka.Assigned, kafka.Revoked, kafka.Lost, kafka.Committed} {
		if s := k.String(); s == "" || names[s] {
			t.Errorf("EventKind %d: String %q empty or repeated", int(k), s)
		} else {
			names[s] = true
		}
	}
}

// ---------------------------------------------------------------- offsets

// Promise: the watermark is the lowest unsettled offset: a record held in
// flight stops every commit past it although all later records were
// committed by the sink (kopts asking for auto-commit are overridden), and
// cancelling the run commits the watermark, not past it.
func TestReview7WatermarkHeldByInFlightRecord(t *testing.T) {
	_, addrs := newCluster(t, 1, "in")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 10), nil)
	cond := newR7Cond()
	ev := newR7Events(cond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kopts := append(memberOpts(addrs, "g", "in"), kgo.AutoCommitInterval(100*time.Millisecond)) // overridden by the source
	src := kafka.Source(kopts, decodeInt, kafka.CommitInterval(5*time.Millisecond), ev.option())
	var held atomic.Bool
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 3 {
			held.Store(true)
			cond.bump()
			<-ctx.Done()
			return r, ctx.Err()
		}
		return r, nil
	}, stage.Workers(10), stage.Buffer(10))
	var done atomic.Int32
	errc := r7Start(cond, ctx, context.Background(), work, func(_ context.Context, r kafka.Record[int]) error {
		done.Add(1)
		cond.bump()
		return nil
	})
	dbg := func() string { return fmt.Sprintf("done %d held %v events %+v", done.Load(), held.Load(), ev.list()) }
	r7DebugF.Store(&dbg)
	defer r7DebugF.Store(nil)
	cond.wait(t, "9 records committed by the sink and offset 3 held", func() bool { return done.Load() == 9 && held.Load() })
	ev.waitCommitted(t, "in", 0, 3)
	cancel()
	err := r7Err(t, "the cancelled run", errc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run returned %v, want context.Canceled", err)
	}
	if got := committedNow(t, addrs, "g", "in", 1)[0]; got != 3 {
		t.Errorf("committed offset after cancel = %d, want 3 (the held record)", got)
	}
	for _, o := range ev.committed("in", 0) {
		if o > 3 {
			t.Errorf("a Committed event passed the held record: %d (all: %v)", o, ev.committed("in", 0))
			break
		}
	}
}

// Promise: with CommitInterval(1h) nothing is committed while the run goes
// on (commits come every interval, on revoke and on stop); stopping with
// Until commits one past the last record; events name the member and the
// partitions.
func TestReview7CommitOnlyOnStopWithLongInterval(t *testing.T) {
	_, addrs := newCluster(t, 1, "in")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 10), nil)
	cond := newR7Cond()
	ev := newR7Events(cond)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour), ev.option())
	var done atomic.Int32
	var bad atomic.Pointer[string]
	errc := r7Start(cond, context.Background(), stop, src, func(_ context.Context, r kafka.Record[int]) error {
		if r.Topic != "in" || r.Partition != 0 || int64(r.Value) != r.Offset || string(r.Key) != "k"+strconv.Itoa(r.Value) || r.Attempts != 1 || r.Timestamp.IsZero() {
			msg := fmt.Sprintf("record fields: %+v", r)
			bad.Store(&msg)
		}
		done.Add(1)
		cond.bump()
		return nil
	})
	cond.wait(t, "10 records", func() bool { return done.Load() == 10 })
	if got := committedNow(t, addrs, "g", "in", 1)[0]; got != -1 {
		t.Errorf("committed %d while the run goes on with CommitInterval(1h), want nothing", got)
	}
	if n := ev.count(kafka.Committed); n != 0 {
		t.Errorf("%d Committed events while the run goes on with CommitInterval(1h)", n)
	}
	r7DrainedNil(t, drain, errc)
	if got := committedNow(t, addrs, "g", "in", 1)[0]; got != 10 {
		t.Errorf("committed offset after the drain = %d, want 10", got)
	}
	if m := bad.Load(); m != nil {
		t.Error(*m)
	}
	ev.checkNoOverlap(t)
	if c := ev.committed("in", 0); len(c) == 0 || c[len(c)-1] != 10 {
		t.Errorf("Committed events of in/0: %v, want the last at 10", c)
	}
	var assigned bool
	for _, e := range ev.list() {
		if e.Member == "" {
			t.Errorf("%v event without a member id", e.Kind)
		}
		if e.Kind == kafka.Assigned && slices.Contains(e.Partitions["in"], 0) {
			assigned = true
		}
		if e.Kind == kafka.Committed && e.Err != nil {
			t.Errorf("a commit failed: %v", e.Err)
		}
	}
	if !assigned {
		t.Errorf("no Assigned event named in/0: %+v", ev.list())
	}
}

// Promise: every CommitInterval the moved watermark is committed while the
// run goes on (no stop needed).
func TestReview7PeriodicCommitWhileRunning(t *testing.T) {
	_, addrs := newCluster(t, 2, "in")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 7), nil)
	r7Produce(t, addrs, "in", 1, r7Ints(100, 4), nil)
	cond := newR7Cond()
	ev := newR7Events(cond)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(10*time.Millisecond), ev.option())
	var taken atomic.Int32
	counted := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		taken.Add(1)
		cond.bump()
		return r, nil
	})
	batched := stage.Unbatch(stage.Batch(counted, 3, time.Hour))
	errc := r7Start(cond, context.Background(), stop, batched, func(context.Context, kafka.Record[int]) error { return nil })
	// Full batches reach the sink while the run goes on; a partial batch
	// waits for the input's end (timeout 1 h). A periodic commit comes
	// while the run goes on; then drain, which flushes the partial batch.
	cond.wait(t, "every record taken and a periodic commit", func() bool {
		return taken.Load() == 11 && ev.count(kafka.Committed) > 0
	})
	if got := committedNow(t, addrs, "g", "in", 2); got[0] < 0 && got[1] < 0 {
		t.Errorf("nothing committed while the run goes on although a Committed event came: %v", got)
	}
	r7DrainedNil(t, drain, errc)
	got := committedNow(t, addrs, "g", "in", 2)
	if got[0] != 7 || got[1] != 4 {
		t.Errorf("committed after drain = %v, want 0:7 1:4 (Batch flushes its partial batch on drain)", got)
	}
}

// Promise: a record whose forwarded *stage.Error reaches the sink is tried
// again (Record.Attempts 1, 2, 3), then written to the dead-letter topic
// with its key, value and headers plus the sluice-* headers; the watermark
// then passes it; the sink reports each forwarded error.
func TestReview7ForwardedRetriedThenDeadLetter(t *testing.T) {
	_, addrs := newCluster(t, 1, "in", "dlq")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 6), func(i int) string { return fmt.Sprintf("key%d", i) }, kgo.RecordHeader{Key: "h", Value: []byte("v")})
	cond := newR7Cond()
	ev := newR7Events(cond)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	boom := errors.New("boom")
	var mu sync.Mutex
	var attempts []int
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.Attempts(3), kafka.DeadLetter("dlq"), ev.option())
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 2 {
			mu.Lock()
			attempts = append(attempts, r.Attempts)
			mu.Unlock()
			return r, boom
		}
		if r.Attempts != 1 {
			return r, fmt.Errorf("offset %d came with Attempts %d", r.Offset, r.Attempts)
		}
		return r, nil
	}, stage.OnError(stage.Forward), stage.Workers(4))
	var got sync.Map
	errc := r7Start(cond, context.Background(), stop, work, func(_ context.Context, r kafka.Record[int]) error {
		got.Store(r.Offset, true)
		return nil
	})
	ev.waitCommitted(t, "in", 0, 6)
	drain()
	defer ev.checkNoOverlap(t)
	err := r7Err(t, "the drained run", errc)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || !errors.Is(err, boom) {
		t.Fatalf("run returned %v, want a *sink.ForwardedError of boom", err)
	}
	if fe.Count != 3 {
		t.Errorf("ForwardedError.Count = %d, want 3 (three attempts)", fe.Count)
	}
	mu.Lock()
	if !slices.Equal(attempts, []int{1, 2, 3}) {
		t.Errorf("offset 2 was tried with Attempts %v, want [1 2 3]", attempts)
	}
	mu.Unlock()
	if _, ok := got.Load(int64(2)); ok {
		t.Error("the failing record reached the sink as a value")
	}
	dl := r7ReadTopic(t, addrs, "dlq", 1)
	r := dl[0]
	h := r7Headers(r.Headers)
	if string(r.Key) != "key2" || string(r.Value) != "2" || h["h"] != "v" {
		t.Errorf("dead letter key %q value %q headers %v: want key2, 2, h=v", r.Key, r.Value, h)
	}
	if h["sluice-reason"] == "" || h["sluice-topic"] != "in" || h["sluice-partition"] != "0" || h["sluice-offset"] != "2" || h["sluice-attempts"] != "3" {
		t.Errorf("dead letter sluice headers %v", h)
	}
	if c := committedNow(t, addrs, "g", "in", 1)[0]; c != 6 {
		t.Errorf("committed %d, want 6", c)
	}
}

// Promise: without a dead-letter topic, a record that failed Attempts times
// fails the run (on its own: nothing stops it) and is not committed.
func TestReview7AttemptsExhaustedWithoutDeadLetterFailsRun(t *testing.T) {
	_, addrs := newCluster(t, 1, "in")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 6), nil)
	boom := errors.New("boom")
	var mu sync.Mutex
	var attempts []int
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.Attempts(2))
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 2 {
			mu.Lock()
			attempts = append(attempts, r.Attempts)
			mu.Unlock()
			return r, boom
		}
		return r, nil
	}, stage.OnError(stage.Forward), stage.Workers(4))
	errc := r7Start(nil, context.Background(), context.Background(), work, func(context.Context, kafka.Record[int]) error { return nil })
	err := r7Err(t, "the run (it should fail on its own)", errc)
	if err == nil {
		t.Fatal("run succeeded although a record failed Attempts times without a dead-letter topic")
	}
	if _, only := err.(*sink.ForwardedError); only {
		t.Errorf("run returned only its forwarded errors (%v): indistinguishable from a success with forwards", err)
	}
	t.Logf("run error (%T): %v", err, err)
	mu.Lock()
	if !slices.Equal(attempts, []int{1, 2}) {
		t.Errorf("offset 2 tried with Attempts %v, want [1 2]", attempts)
	}
	mu.Unlock()
	if c := committedNow(t, addrs, "g", "in", 1)[0]; c > 2 {
		t.Errorf("committed %d: the failed record 2 was skipped", c)
	}
}

// Promise: a record decode rejects goes to the dead-letter topic at once
// (decode is not retried, the pipeline never sees it) and the watermark
// passes it.
func TestReview7DecodeRejectGoesToDeadLetter(t *testing.T) {
	_, addrs := newCluster(t, 1, "in", "dlq")
	r7Produce(t, addrs, "in", 0, []string{"0", "1", "bad", "3", "4", "5"}, nil)
	cond := newR7Cond()
	ev := newR7Events(cond)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var decodes sync.Map
	decode := func(r *kgo.Record) (int, error) {
		n, _ := decodes.LoadOrStore(r.Offset, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		return strconv.Atoi(string(r.Value))
	}
	src := kafka.Source(memberOpts(addrs, "g", "in"), decode, kafka.CommitInterval(10*time.Millisecond), kafka.DeadLetter("dlq"), ev.option())
	var sawBad atomic.Bool
	errc := r7Start(cond, context.Background(), stop, src, func(_ context.Context, r kafka.Record[int]) error {
		if r.Offset == 2 {
			sawBad.Store(true)
		}
		return nil
	})
	ev.waitCommitted(t, "in", 0, 6)
	drain()
	defer ev.checkNoOverlap(t)
	if err := r7Err(t, "the drained run", errc); err != nil {
		t.Errorf("drained run: %v", err)
	}
	if sawBad.Load() {
		t.Error("the record decode rejected reached the sink")
	}
	if n, ok := decodes.Load(int64(2)); !ok || n.(*atomic.Int32).Load() != 1 {
		t.Errorf("decode of offset 2 called %v times, want once", n)
	}
	dl := r7ReadTopic(t, addrs, "dlq", 1)
	h := r7Headers(dl[0].Headers)
	if string(dl[0].Value) != "bad" || h["sluice-offset"] != "2" || h["sluice-topic"] != "in" || h["sluice-reason"] == "" {
		t.Errorf("dead letter value %q headers %v", dl[0].Value, h)
	}
}

// Promise: without a dead-letter topic, a decode rejection fails the run
// with a *stage.SourceError; the records before it still go through and
// are committed (the run commits what is settled when it ends); the
// rejected record is not.
func TestReview7DecodeRejectWithoutDeadLetter(t *testing.T) {
	_, addrs := newCluster(t, 1, "in")
	r7Produce(t, addrs, "in", 0, []string{"0", "1", "bad", "3"}, nil)
	decErr := errors.New("undecodable")
	decode := func(r *kgo.Record) (int, error) {
		if string(r.Value) == "bad" {
			return 0, decErr
		}
		return strconv.Atoi(string(r.Value))
	}
	src := kafka.Source(memberOpts(addrs, "g", "in"), decode, kafka.CommitInterval(time.Hour))
	var mu sync.Mutex
	var seen []int64
	errc := r7Start(nil, context.Background(), context.Background(), src, func(_ context.Context, r kafka.Record[int]) error {
		mu.Lock()
		seen = append(seen, r.Offset)
		mu.Unlock()
		return nil
	})
	err := r7Err(t, "the run", errc)
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("run returned %v (%T), want a *stage.SourceError", err, err)
	}
	if !errors.Is(err, decErr) {
		t.Errorf("the SourceError %v does not wrap decode's error", err)
	}
	mu.Lock()
	if !slices.Equal(seen, []int64{0, 1}) {
		t.Errorf("sink saw offsets %v, want [0 1]", seen)
	}
	mu.Unlock()
	if c := committedNow(t, addrs, "g", "in", 1)[0]; c != 2 {
		t.Errorf("committed %d, want 2: the settled records, not the rejected one", c)
	}
}

// Promise: a panic in decode fails the run with a *stage.SourceError
// wrapping a *stage.PanicError; the record is not committed.
func TestReview7DecodePanic(t *testing.T) {
	t.Run("plain", func(t *testing.T) { r7DecodePanic(t, false) })
	t.Run("with a dead-letter topic", func(t *testing.T) { r7DecodePanic(t, true) })
}

func r7DecodePanic(t *testing.T, dlq bool) {
	runcheck.InChildTest(t, func(t *testing.T) {
		_, addrs := newCluster(t, 1, "in", "dlq")
		opts := []kafka.Option{kafka.CommitInterval(time.Hour)}
		if dlq {
			opts = append(opts, kafka.DeadLetter("dlq"))
		}
		r7Produce(t, addrs, "in", 0, []string{"0", "1", "boom", "3"}, nil)
		decode := func(r *kgo.Record) (int, error) {
			if string(r.Value) == "boom" {
				panic("decode exploded")
			}
			return strconv.Atoi(string(r.Value))
		}
		src := kafka.Source(memberOpts(addrs, "g", "in"), decode, opts...)
		errc := r7Start(nil, context.Background(), context.Background(), src, func(context.Context, kafka.Record[int]) error { return nil })
		err := r7Err(t, "the run", errc)
		var se *stage.SourceError
		var pe *stage.PanicError
		if !errors.As(err, &se) || !errors.As(err, &pe) {
			t.Fatalf("run returned %v (%T), want a *stage.SourceError wrapping a *stage.PanicError", err, err)
		}
		if c := committedNow(t, addrs, "g", "in", 1)[0]; c != 2 {
			t.Errorf("committed %d, want 2", c)
		}
		if dlq {
			r7ReadTopic(t, addrs, "dlq", 0) // a panic is no rejection: nothing dead-lettered
		}
	})
}

// Promise: a panic in a stage's function (FailFast) fails the run with a
// *stage.Error wrapping a *stage.PanicError; the record is not committed,
// those before it (committed by the sink) are.
func TestReview7StagePanic(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		_, addrs := newCluster(t, 1, "in")
		r7Produce(t, addrs, "in", 0, r7Ints(0, 5), nil)
		cond := newR7Cond()
		var done atomic.Int32
		src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour))
		work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
			if r.Offset == 2 {
				cond.wait(t, "the sink to commit offsets 0 and 1", func() bool { return done.Load() == 2 })
				panic("stage exploded")
			}
			return r, nil
		}, stage.Workers(1), stage.Buffer(1))
		errc := r7Start(cond, context.Background(), context.Background(), work, func(context.Context, kafka.Record[int]) error {
			done.Add(1)
			cond.bump()
			return nil
		})
		err := r7Err(t, "the run", errc)
		var se *stage.Error
		var pe *stage.PanicError
		if !errors.As(err, &se) || !errors.As(err, &pe) {
			t.Fatalf("run returned %v (%T), want a *stage.Error wrapping a *stage.PanicError", err, err)
		}
		if c := committedNow(t, addrs, "g", "in", 1)[0]; c != 2 {
			t.Errorf("committed %d, want 2", c)
		}
	})
}

// Promise: a panic in the sink's callback fails the run with a *stage.Error
// (Stage "foreach") wrapping a *stage.PanicError; the record is not
// committed, those the sink committed before it are.
func TestReview7SinkPanic(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		_, addrs := newCluster(t, 1, "in")
		r7Produce(t, addrs, "in", 0, r7Ints(0, 5), nil)
		src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour))
		ordered := stage.Map(src, r7Pass, stage.KeyBy(kafka.ByPartition[int]), stage.Workers(1))
		errc := r7Start(nil, context.Background(), context.Background(), ordered, func(_ context.Context, r kafka.Record[int]) error {
			if r.Offset == 2 {
				panic("sink exploded")
			}
			return nil
		})
		err := r7Err(t, "the run", errc)
		var se *stage.Error
		var pe *stage.PanicError
		if !errors.As(err, &se) || !errors.As(err, &pe) || se.Stage != "foreach" {
			t.Fatalf("run returned %v (%T), want a *stage.Error of foreach wrapping a *stage.PanicError", err, err)
		}
		if c := committedNow(t, addrs, "g", "in", 1)[0]; c != 2 {
			t.Errorf("committed %d, want 2", c)
		}
	})
}

// Promise: a panic in OnEvent's f fails the run with a *stage.SourceError
// wrapping a *stage.PanicError, and f is called no more in that run.
func TestReview7OnEventPanic(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		_, addrs := newCluster(t, 1, "in")
		r7Produce(t, addrs, "in", 0, r7Ints(0, 5), nil)
		var calls atomic.Int32
		src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Millisecond), kafka.OnEvent(func(kafka.Event) {
			calls.Add(1)
			panic("observer exploded")
		}))
		errc := r7Start(nil, context.Background(), context.Background(), src, func(context.Context, kafka.Record[int]) error { return nil })
		err := r7Err(t, "the run", errc)
		var se *stage.SourceError
		var pe *stage.PanicError
		if !errors.As(err, &se) || !errors.As(err, &pe) {
			t.Fatalf("run returned %v (%T), want a *stage.SourceError wrapping a *stage.PanicError", err, err)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("f called %d times in the run, want 1 (none after its panic)", n)
		}
	})
}

// r7NoLeak fails t if a goroutine that started since before is alive, but
// the in-process broker's own (kfake serves each connection with goroutines
// that end when it sees the client's close).
func r7NoLeak(t testing.TB, before map[int64]string) {
	t.Helper()
	checkNoLeakSince(t, "the run", before)
}

type r7ConnectHook struct{ f func() }

func (h r7ConnectHook) OnBrokerConnect(kgo.BrokerMetadata, time.Duration, net.Conn, error) { h.f() }

// Promise: cancelling the run (before it starts, while the member joins,
// once partitions are assigned) returns a cancellation error, leaves no
// goroutine behind, and the member leaves the group; kopts' own
// OnPartitionsAssigned is overridden (never called).
func TestReview7CancelLeavesNothingBehind(t *testing.T) {
	// Each case runs 10 times: a goroutine left behind shows up in some
	// runs only.
	for _, when := range []string{"before", "joining", "assigned"} {
		t.Run(when, func(t *testing.T) {
			for range 20 {
				r7CancelCase(t, when)
			}
		})
	}
}

func r7CancelCase(t *testing.T, when string) {
	{
		{
			c, addrs := newCluster(t, 1, "in")
			r7Produce(t, addrs, "in", 0, r7Ints(0, 5), nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var userAssigned atomic.Bool
			kopts := append(memberOpts(addrs, "g", "in"), kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { userAssigned.Store(true) }))
			var opts []kafka.Option
			switch when {
			case "before":
				cancel()
			case "joining":
				kopts = append(kopts, kgo.WithHooks(r7ConnectHook{cancel}))
			case "assigned":
				opts = append(opts, kafka.OnEvent(func(e kafka.Event) {
					if e.Kind == kafka.Assigned && len(e.Partitions["in"]) > 0 {
						cancel()
					}
				}))
			}
			src := kafka.Source(kopts, decodeInt, append(opts, kafka.CommitInterval(time.Hour))...)
			var err error
			_, before := runcheck.Goroutines()
			runcheck.NoHang(t, "cancelled run", func() {
				err = sink.ForEach(ctx, src, func(context.Context, kafka.Record[int]) error { return nil })
			})
			r7NoLeak(t, before)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("run returned %v, want context.Canceled", err)
			}
			if g := c.GroupInfo("g"); g != nil && len(g.Members) != 0 {
				t.Errorf("the member did not leave the group: %+v", g.Members)
			}
			if when == "assigned" && userAssigned.Load() {
				t.Error("kopts' OnPartitionsAssigned was called: it should be overridden")
			}
		}
	}
}

// Promise: kopts without a consumer group fail the run with a
// *stage.SourceError.
func TestReview7NoConsumerGroup(t *testing.T) {
	_, addrs := newCluster(t, 1, "in")
	src := kafka.Source([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("in")}, decodeInt)
	errc := r7Start(nil, context.Background(), context.Background(), src, func(context.Context, kafka.Record[int]) error { return nil })
	err := r7Err(t, "the run", errc)
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Errorf("run returned %v (%T), want a *stage.SourceError", err, err)
	}
}

// ---------------------------------------------------------------- ordering

// Promise: KeyBy(ByKey): records of one key within a partition one at a
// time and in offset order, different keys in parallel (a held record of
// one key does not hold another key of the same partition).
func TestReview7ByKeyOrderAndParallelism(t *testing.T) {
	_, addrs := newCluster(t, 2, "in")
	const n = 150
	key := func(i int) string { return fmt.Sprintf("k%d", i%5) }
	r7Produce(t, addrs, "in", 0, r7Ints(0, n), key)
	r7Produce(t, addrs, "in", 1, r7Ints(1000, n), key)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	cond := newR7Cond()
	var mu sync.Mutex
	last := map[kafka.RecordKey]int64{}
	busy := map[kafka.RecordKey]bool{}
	var violations []string
	otherKeyDone := make(chan struct{})
	var otherOnce sync.Once
	var total atomic.Int32
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour), kafka.MaxPending(64))
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		k := kafka.ByKey(r)
		mu.Lock()
		if busy[k] {
			violations = append(violations, fmt.Sprintf("%v: two records at once (offset %d)", k, r.Offset))
		}
		if l, ok := last[k]; ok && r.Offset <= l {
			violations = append(violations, fmt.Sprintf("%v: offset %d after %d", k, r.Offset, l))
		}
		busy[k], last[k] = true, r.Offset
		mu.Unlock()
		if r.Partition == 0 && r.Offset == 0 { // key k0: wait for another key of partition 0
			select {
			case <-otherKeyDone:
			case <-time.After(r7Watchdog):
				mu.Lock()
				violations = append(violations, "a held key held every other key of its partition")
				mu.Unlock()
			}
		}
		if r.Partition == 0 && string(r.Key) != "k0" {
			otherOnce.Do(func() { close(otherKeyDone) })
		}
		mu.Lock()
		busy[k] = false
		mu.Unlock()
		return r, nil
	}, stage.KeyBy(kafka.ByKey[int]), stage.Workers(8), stage.Buffer(64))
	errc := r7Start(cond, context.Background(), stop, work, func(context.Context, kafka.Record[int]) error {
		total.Add(1)
		cond.bump()
		return nil
	})
	cond.wait(t, "every record", func() bool { return total.Load() == 2*n })
	r7DrainedNil(t, drain, errc)
	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations[:min(len(violations), 10)] {
		t.Error(v)
	}
}

// Promise: KeyBy(ByPartition): a partition's records one at a time in
// offset order, partitions in parallel.
func TestReview7ByPartitionOrderAndParallelism(t *testing.T) {
	_, addrs := newCluster(t, 2, "in")
	const n = 100
	r7Produce(t, addrs, "in", 0, r7Ints(0, n), func(i int) string { return fmt.Sprintf("k%d", i%7) })
	r7Produce(t, addrs, "in", 1, r7Ints(1000, n), func(i int) string { return fmt.Sprintf("k%d", i%7) })
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	cond := newR7Cond()
	var mu sync.Mutex
	last := map[int32]int64{0: -1, 1: -1}
	busy := map[int32]bool{}
	var violations []string
	p1Done := make(chan struct{})
	var p1Once sync.Once
	var total atomic.Int32
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour), kafka.MaxPending(16))
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		mu.Lock()
		if busy[r.Partition] {
			violations = append(violations, fmt.Sprintf("p%d: two records at once (offset %d)", r.Partition, r.Offset))
		}
		if r.Offset != last[r.Partition]+1 {
			violations = append(violations, fmt.Sprintf("p%d: offset %d after %d", r.Partition, r.Offset, last[r.Partition]))
		}
		busy[r.Partition], last[r.Partition] = true, r.Offset
		mu.Unlock()
		if r.Partition == 0 && r.Offset == 0 {
			select {
			case <-p1Done:
			case <-time.After(r7Watchdog):
				mu.Lock()
				violations = append(violations, "a held partition held the other one")
				mu.Unlock()
			}
		}
		if r.Partition == 1 {
			p1Once.Do(func() { close(p1Done) })
		}
		mu.Lock()
		busy[r.Partition] = false
		mu.Unlock()
		return r, nil
	}, stage.KeyBy(kafka.ByPartition[int]), stage.Workers(8), stage.Buffer(32))
	errc := r7Start(cond, context.Background(), stop, work, func(context.Context, kafka.Record[int]) error {
		total.Add(1)
		cond.bump()
		return nil
	})
	cond.wait(t, "every record", func() bool { return total.Load() == 2*n })
	r7DrainedNil(t, drain, errc)
	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations[:min(len(violations), 10)] {
		t.Error(v)
	}
}

// Promise: MaxPending(n): at most n records of a partition are held and not
// settled, so a pipeline that would take everything (Workers(-1)) gets at
// most n of a stuck partition while another partition flows; once the
// oldest settle, the rest comes.
func TestReview7MaxPendingBoundsTakenRecords(t *testing.T) {
	_, addrs := newCluster(t, 2, "in")
	const max, n = 4, 40
	r7Produce(t, addrs, "in", 0, r7Ints(0, n), nil)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	cond := newR7Cond()
	release := make(chan struct{})
	var taken0, taken1, total atomic.Int32
	var peak atomic.Int32
	var inflight0 atomic.Int32
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour), kafka.MaxPending(max))
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Partition == 0 {
			v := inflight0.Add(1)
			for {
				p := peak.Load()
				if v <= p || peak.CompareAndSwap(p, v) {
					break
				}
			}
			taken0.Add(1)
			cond.bump()
			select {
			case <-release:
			case <-ctx.Done():
				return r, ctx.Err()
			}
			inflight0.Add(-1)
		} else {
			taken1.Add(1)
			cond.bump()
		}
		return r, nil
	}, stage.Workers(-1))
	errc := r7Start(cond, context.Background(), stop, work, func(context.Context, kafka.Record[int]) error {
		total.Add(1)
		cond.bump()
		return nil
	})
	cond.wait(t, fmt.Sprintf("%d records of partition 0 taken", max), func() bool { return taken0.Load() >= max })
	// Partition 1 flows meanwhile: the source polls and hands out records
	// after partition 0 filled up.
	r7Produce(t, addrs, "in", 1, r7Ints(1000, 20), nil)
	cond.wait(t, "20 records of partition 1", func() bool { return taken1.Load() == 20 })
	if got := taken0.Load(); got != max {
		t.Errorf("partition 0: %d records taken while none settled, want MaxPending = %d", got, max)
	}
	close(release)
	cond.wait(t, "every record", func() bool { return total.Load() == n+20 })
	r7DrainedNil(t, drain, errc)
	if p := peak.Load(); p > max {
		t.Errorf("partition 0 had %d records in flight at once, MaxPending %d", p, max)
	}
	got := committedNow(t, addrs, "g", "in", 2)
	if got[0] != n || got[1] != 20 {
		t.Errorf("committed %v, want 0:%d 1:20", got, n)
	}
}

// ---------------------------------------------------------------- drain

// Promise: Until drains: a record in flight when stop comes finishes, the
// sink gets it, the run returns nil and everything taken is committed.
func TestReview7UntilDrainsInFlight(t *testing.T) {
	_, addrs := newCluster(t, 1, "in")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 10), nil)
	cond := newR7Cond()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	release := make(chan struct{})
	var held atomic.Bool
	var mu sync.Mutex
	var seen []int64
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour))
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 9 {
			held.Store(true)
			cond.bump()
			select {
			case <-release:
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
		return r, nil
	}, stage.Workers(4))
	errc := r7Start(cond, context.Background(), stop, work, func(_ context.Context, r kafka.Record[int]) error {
		mu.Lock()
		seen = append(seen, r.Offset)
		mu.Unlock()
		cond.bump()
		return nil
	})
	cond.wait(t, "nine records done and offset 9 held", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 9 && held.Load()
	})
	drain()
	close(release)
	if err := r7Err(t, "the drained run", errc); err != nil {
		t.Errorf("drained run: %v", err)
	}
	mu.Lock()
	if !slices.Contains(seen, 9) {
		t.Error("the record in flight at the drain did not reach the sink")
	}
	mu.Unlock()
	if c := committedNow(t, addrs, "g", "in", 1)[0]; c != 10 {
		t.Errorf("committed %d after the drain, want 10", c)
	}
}

// Promise: a record that fails while the run drains is not tried again and
// stays uncommitted.
func TestReview7FailureDuringDrainNotRetried(t *testing.T) {
	_, addrs := newCluster(t, 1, "in")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 10), nil)
	cond := newR7Cond()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	release := make(chan struct{})
	boom := errors.New("boom")
	var held atomic.Bool
	var tries atomic.Int32
	var done atomic.Int32
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour), kafka.Attempts(3))
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 5 {
			tries.Add(1)
			held.Store(true)
			cond.bump()
			select {
			case <-release:
			case <-ctx.Done():
				return r, ctx.Err()
			}
			return r, boom
		}
		return r, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))
	errc := r7Start(cond, context.Background(), stop, work, func(context.Context, kafka.Record[int]) error {
		done.Add(1)
		cond.bump()
		return nil
	})
	cond.wait(t, "nine records done and offset 5 held", func() bool { return done.Load() == 9 && held.Load() })
	drain()
	close(release)
	err := r7Err(t, "the drained run", errc)
	t.Logf("run error (%T): %v", err, err)
	if !errors.Is(err, boom) {
		t.Errorf("run returned %v: the forwarded error was not reported", err)
	}
	// The package doc: the source adds no error of its own for a record it
	// leaves uncommitted in a drain; the result is the sink's.
	var fe *sink.ForwardedError
	var se *stage.SourceError
	if !errors.As(err, &fe) || errors.As(err, &se) {
		t.Errorf("run returned %v; want the sink's *sink.ForwardedError and no *stage.SourceError", err)
	}
	// Once, or twice when a call of next already waiting took the retry
	// before the drain reached it through its context (see the package
	// doc); never the third attempt Attempts(3) allows.
	if n := tries.Load(); n != 1 && n != 2 {
		t.Errorf("offset 5 tried %d times, want once (no retry while draining; at most one by a call already waiting)", n)
	}
	if c := committedNow(t, addrs, "g", "in", 1)[0]; c != 5 {
		t.Errorf("committed %d after the drain, want 5 (the failed record)", c)
	}
}

// Promise: records dropped on purpose (a Filter, a Handle policy) are
// settled: the watermark passes them.
func TestReview7DroppedOnPurposeSettles(t *testing.T) {
	_, addrs := newCluster(t, 1, "in")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 12), nil)
	cond := newR7Cond()
	ev := newR7Events(cond)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(10*time.Millisecond), ev.option())
	kept := stage.Filter(src, func(_ context.Context, r kafka.Record[int]) (bool, error) { return r.Value%2 == 0, nil })
	handled := stage.Map(kept, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value%4 == 0 {
			return r, errors.New("dropped by Handle")
		}
		return r, nil
	}, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	errc := r7Start(cond, context.Background(), stop, handled, func(context.Context, kafka.Record[int]) error { return nil })
	ev.waitCommitted(t, "in", 0, 12)
	r7DrainedNil(t, drain, errc)
}

// ---------------------------------------------------------------- dead letters

// Promise: a dead letter the broker refuses fails the run and its record is
// not committed (nothing skipped silently).
func TestReview7DeadLetterRefusedFailsRun(t *testing.T) {
	c, addrs := newCluster(t, 1, "in", "dlq")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 6), nil)
	r7Refuse(c, "dlq", kerr.InvalidRecord.Code)
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.Attempts(1), kafka.DeadLetter("dlq"))
	boom := errors.New("boom")
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 2 {
			return r, boom
		}
		return r, nil
	}, stage.OnError(stage.Forward), stage.Workers(4))
	errc := r7Start(nil, context.Background(), context.Background(), work, func(context.Context, kafka.Record[int]) error { return nil })
	err := r7Err(t, "the run (it should fail on its own)", errc)
	t.Logf("run error (%T): %v", err, err)
	if err == nil {
		t.Fatal("run succeeded although its dead letter was refused")
	}
	if _, only := err.(*sink.ForwardedError); only {
		t.Errorf("run returned only its forwarded errors: the refused dead letter did not fail it")
	}
	if c := committedNow(t, addrs, "g", "in", 1)[0]; c > 2 {
		t.Errorf("committed %d: the record whose dead letter was refused was skipped", c)
	}
}

// ---------------------------------------------------------------- rebalances

// Promise: on revocation the source commits its watermark (a record held in
// flight stays uncommitted), the new owner starts from it, and the old
// owner never commits the partition again although its held record then
// finishes; per-member processing goes on.
func TestReview7RevokeCommitsWatermarkIgnoresLateAck(t *testing.T) {
	_, addrs := newCluster(t, 2, "in")
	for p := range int32(2) {
		r7Produce(t, addrs, "in", p, r7Ints(int(p)*100, 10), nil)
	}
	cond := newR7Cond()
	evA, evB := newR7Events(cond), newR7Events(cond)
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	stopB, drainB := context.WithCancel(context.Background())
	defer drainB()
	release := make(chan struct{})
	var heldA, doneA atomic.Int32
	var mu sync.Mutex
	seenB := map[int32][]int64{}
	srcA := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour), evA.option())
	workA := stage.Map(srcA, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 3 {
			heldA.Add(1)
			cond.bump()
			<-release // ignores ctx: the record finishes after the revocation
		}
		return r, nil
	}, stage.Workers(8))
	errA := r7Start(cond, context.Background(), stopA, workA, func(context.Context, kafka.Record[int]) error {
		doneA.Add(1)
		cond.bump()
		return nil
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	cond.wait(t, "member A: 18 records done, offset 3 of both partitions held", func() bool { return doneA.Load() == 18 && heldA.Load() == 2 })

	srcB := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(10*time.Millisecond), evB.option())
	errB := r7Start(cond, context.Background(), stopB, srcB, func(_ context.Context, r kafka.Record[int]) error {
		mu.Lock()
		seenB[r.Partition] = append(seenB[r.Partition], r.Offset)
		mu.Unlock()
		cond.bump()
		return nil
	})
	// A gives a partition up; B gets it.
	var revoked int32 = -1
	var revokedAt int
	cond.wait(t, "member A to have a partition revoked", func() bool {
		for i, e := range evA.list() {
			if (e.Kind == kafka.Revoked || e.Kind == kafka.Lost) && len(e.Partitions["in"]) > 0 {
				revoked, revokedAt = e.Partitions["in"][0], i
				if e.Kind == kafka.Lost {
					t.Logf("partition lost rather than revoked: %+v", e)
				}
				return true
			}
		}
		return false
	})
	// B takes over from the watermark: its first record of the partition
	// is offset 3, before A's held record is released.
	cond.wait(t, "member B to process the revoked partition to its end", func() bool {
		mu.Lock()
		defer mu.Unlock()
		s := seenB[revoked]
		return len(s) > 0 && s[len(s)-1] == 9
	})
	mu.Lock()
	if s := seenB[revoked]; s[0] != 3 {
		t.Errorf("member B started partition %d at offset %d, want 3 (the watermark A committed on revocation)", revoked, s[0])
	}
	mu.Unlock()
	close(release)
	cond.wait(t, "member A to finish its held records", func() bool { return doneA.Load() == 20 })
	drainA()
	if err := r7Err(t, "member A", errA); err != nil {
		t.Errorf("member A: %v", err)
	}
	evA.checkNoOverlap(t)
	evB.checkNoOverlap(t)
	for _, e := range evA.list()[revokedAt+1:] {
		if e.Kind == kafka.Committed {
			if o, ok := e.Offsets["in"][revoked]; ok {
				t.Errorf("member A committed the revoked partition %d at %d after the revocation", revoked, o)
			}
		}
	}
	// A committed the partition it kept when it stopped (everything
	// settled); B, which gets it now, has nothing left of it.
	other := 1 - revoked
	if got := committedNow(t, addrs, "g", "in", 2)[other]; got != 10 {
		t.Errorf("member A's final commit of its partition %d = %d, want 10", other, got)
	}
	drainB()
	if err := r7Err(t, "member B", errB); err != nil {
		t.Errorf("member B: %v", err)
	}
	mu.Lock()
	if s := seenB[other]; len(s) > 0 {
		t.Errorf("member B processed partition %d again (%v) although A committed it to its end", other, s)
	}
	mu.Unlock()
	got := committedNow(t, addrs, "g", "in", 2)
	if got[0] != 10 || got[1] != 10 {
		t.Errorf("committed %v at the end, want 10 and 10", got)
	}
}

// ---------------------------------------------------------------- Publish

type r7Acks struct {
	mu   sync.Mutex
	done map[int]error
	hook func(i int, err error)
}

func newR7Acks() *r7Acks { return &r7Acks{done: map[int]error{}} }

func (a *r7Acks) get(i int) (error, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	err, ok := a.done[i]
	return err, ok
}

type r7Ack struct {
	a *r7Acks
	i int
}

func (k r7Ack) Done(err error) {
	if k.a.hook != nil {
		k.a.hook(k.i, err)
	}
	k.a.mu.Lock()
	defer k.a.mu.Unlock()
	if _, twice := k.a.done[k.i]; twice {
		panic(fmt.Sprintf("Done called twice for item %d", k.i))
	}
	k.a.done[k.i] = err
}

// r7IntSource yields 0..n-1, each with an acknowledgement recorded in acks
// (nil: none).
func r7IntSource(n int, acks *r7Acks) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == n {
				return 0, nil, io.EOF
			}
			v := i
			i++
			if acks == nil {
				return v, nil, nil
			}
			return v, r7Ack{acks, v}, nil
		}, nil
	})
}

func r7IntRecord(topic string) func(int) (*kgo.Record, error) {
	return func(v int) (*kgo.Record, error) {
		return &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", v%5)), Value: []byte(strconv.Itoa(v))}, nil
	}
}

func r7Producer(t testing.TB, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return client(t, addrs, opts...)
}

// Promise: Publish waits for the broker to confirm each record before it
// takes the next item; an item's acknowledgement is released only once its
// record was confirmed; counts count the confirmed records; a key's items
// land in one partition, in order.
func TestReview7PublishConfirmsBeforeNextAndKeepsKeyOrder(t *testing.T) {
	_, addrs := newCluster(t, 3, "out")
	cl := r7Producer(t, addrs)
	const n = 40
	counts := &kafka.Published{}
	acks := newR7Acks()
	var mu sync.Mutex
	var violations []string
	acks.hook = func(i int, err error) {
		if c := counts.Records.Load(); err == nil && c < int64(i+1) {
			mu.Lock()
			violations = append(violations, fmt.Sprintf("item %d acknowledged with %d records confirmed", i, c))
			mu.Unlock()
		}
	}
	rec := r7IntRecord("out")
	err := kafka.Publish(context.Background(), cl, r7IntSource(n, acks), func(v int) (*kgo.Record, error) {
		if c := counts.Records.Load(); c != int64(v) {
			mu.Lock()
			violations = append(violations, fmt.Sprintf("record(%d) called with %d records confirmed", v, c))
			mu.Unlock()
		}
		return rec(v)
	}, counts)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if c := counts.Records.Load(); c != n {
		t.Errorf("counts.Records = %d, want %d", c, n)
	}
	for i := range n {
		if err, ok := acks.get(i); !ok || err != nil {
			t.Errorf("item %d: acknowledged %v, %v; want Done(nil)", i, ok, err)
		}
	}
	mu.Lock()
	for _, v := range violations[:min(len(violations), 5)] {
		t.Error(v)
	}
	mu.Unlock()
	recs := r7ReadTopic(t, addrs, "out", n)
	part := map[string]int32{}
	last := map[string]int{}
	for _, r := range recs {
		k := string(r.Key)
		v, _ := strconv.Atoi(string(r.Value))
		if p, ok := part[k]; ok && p != r.Partition {
			t.Errorf("key %s in partitions %d and %d", k, p, r.Partition)
		}
		if l, ok := last[k]; ok && v <= l {
			t.Errorf("key %s: %d after %d", k, v, l)
		}
		part[k], last[k] = r.Partition, v
	}
}

// Promise: an error of record ends the run with a *stage.Error (Stage
// "foreach") wrapping it; the item's acknowledgement is told the error,
// earlier items were published and acknowledged; nothing after is published.
func TestReview7PublishRecordError(t *testing.T) {
	_, addrs := newCluster(t, 1, "out")
	cl := r7Producer(t, addrs)
	boom := errors.New("boom")
	acks := newR7Acks()
	counts := &kafka.Published{}
	rec := r7IntRecord("out")
	err := kafka.Publish(context.Background(), cl, r7IntSource(6, acks), func(v int) (*kgo.Record, error) {
		if v == 2 {
			return nil, boom
		}
		return rec(v)
	}, counts)
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "foreach" || !errors.Is(err, boom) {
		t.Fatalf("Publish returned %v (%T), want a *stage.Error of foreach wrapping boom", err, err)
	}
	if c := counts.Records.Load(); c != 2 {
		t.Errorf("counts.Records = %d, want 2", c)
	}
	for i := range 2 {
		if err, ok := acks.get(i); !ok || err != nil {
			t.Errorf("item %d: acknowledged %v, %v; want Done(nil)", i, ok, err)
		}
	}
	if err, ok := acks.get(2); !ok || err == nil {
		t.Errorf("item 2 (record failed): acknowledged %v, %v; want Done(an error)", ok, err)
	}
	r7ReadTopic(t, addrs, "out", 2)
}

// Promise: record returning (nil, nil) fails the run with ErrNilRecord in a
// *stage.Error of foreach; a panic in record with a *stage.PanicError.
func TestReview7PublishNilRecordAndPanic(t *testing.T) {
	t.Run("nil", func(t *testing.T) {
		_, addrs := newCluster(t, 1, "out")
		cl := r7Producer(t, addrs)
		err := kafka.Publish(context.Background(), cl, r7IntSource(3, nil), func(int) (*kgo.Record, error) { return nil, nil }, nil)
		var se *stage.Error
		if !errors.Is(err, kafka.ErrNilRecord) || !errors.As(err, &se) || se.Stage != "foreach" {
			t.Errorf("Publish returned %v, want a *stage.Error of foreach wrapping ErrNilRecord", err)
		}
	})
	t.Run("panic", func(t *testing.T) {
		runcheck.InChildTest(t, func(t *testing.T) {
			_, addrs := newCluster(t, 1, "out")
			cl := r7Producer(t, addrs)
			acks := newR7Acks()
			err := kafka.Publish(context.Background(), cl, r7IntSource(3, acks), func(v int) (*kgo.Record, error) {
				if v == 1 {
					panic("record exploded")
				}
				return r7IntRecord("out")(v)
			}, nil)
			var se *stage.Error
			var pe *stage.PanicError
			if !errors.As(err, &se) || se.Stage != "foreach" || !errors.As(err, &pe) {
				t.Errorf("Publish returned %v, want a *stage.Error of foreach wrapping a *stage.PanicError", err)
			}
			if err, ok := acks.get(1); ok && err == nil {
				t.Error("the item whose record panicked was acknowledged as committed")
			}
		})
	})
}

// Promise: forwarded errors come back in a *sink.ForwardedError; the other
// items are published.
func TestReview7PublishForwardedErrors(t *testing.T) {
	_, addrs := newCluster(t, 1, "out")
	cl := r7Producer(t, addrs)
	boom := errors.New("boom")
	acks := newR7Acks()
	counts := &kafka.Published{}
	s := stage.Map(r7IntSource(5, acks), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			return v, boom
		}
		return v, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	err := kafka.Publish(context.Background(), cl, s, r7IntRecord("out"), counts)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || !errors.Is(err, boom) || fe.Count != 1 {
		t.Fatalf("Publish returned %v, want a *sink.ForwardedError of boom (count 1)", err)
	}
	if c := counts.Records.Load(); c != 4 {
		t.Errorf("counts.Records = %d, want 4", c)
	}
	if err, ok := acks.get(1); !ok || err == nil {
		t.Errorf("forwarded item 1: acknowledged %v, %v; want Done(an error)", ok, err)
	}
	r7ReadTopic(t, addrs, "out", 4)
}

// Promise: a failed produce ends the run with a *stage.Error of foreach
// wrapping the broker's error; the item is not acknowledged as committed.
func TestReview7PublishProduceFailure(t *testing.T) {
	c, addrs := newCluster(t, 1, "out")
	r7Refuse(c, "out", kerr.InvalidRecord.Code)
	cl := r7Producer(t, addrs)
	acks := newR7Acks()
	counts := &kafka.Published{}
	var err error
	runcheck.NoHang(t, "Publish to a refusing broker", func() {
		err = kafka.Publish(context.Background(), cl, r7IntSource(3, acks), r7IntRecord("out"), counts)
	})
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "foreach" || !errors.Is(err, kerr.InvalidRecord) {
		t.Errorf("Publish returned %v, want a *stage.Error of foreach wrapping kerr.InvalidRecord", err)
	}
	if n := counts.Records.Load(); n != 0 {
		t.Errorf("counts.Records = %d, want 0", n)
	}
	if err, ok := acks.get(0); ok && err == nil {
		t.Error("item 0 acknowledged as committed although its produce failed")
	}
}

// r7HoldProduce holds the nth produce request to topic (1-based) at the
// broker until the test ends, and closes arrived when it comes.
func r7HoldProduce(t *testing.T, c *kfake.Cluster, topic string, nth int32) (arrived <-chan struct{}) {
	id := c.TopicInfo(topic).TopicID
	gate := make(chan struct{})
	arr := make(chan struct{})
	var seen atomic.Int32
	t.Cleanup(func() { close(gate) }) // runs before the cluster closes
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.ProduceRequest)
		hit := false
		for _, rt := range req.Topics {
			if rt.Topic == topic || rt.TopicID == id {
				hit = true
			}
		}
		if hit && seen.Add(1) == nth {
			close(arr)
			c.SleepControl(func() { <-gate })
		}
		return nil, nil, false
	})
	return arr
}

// Promise: with kgo.AllowIdempotentProduceCancellation, cancelling ctx
// while the broker stays silent makes Publish return (a cancellation
// error); the unconfirmed item is not acknowledged as committed.
func TestReview7PublishCancelWithSilentBroker(t *testing.T) {
	c, addrs := newCluster(t, 1, "out")
	arrived := r7HoldProduce(t, c, "out", 1)
	cl := r7Producer(t, addrs, kgo.AllowIdempotentProduceCancellation())
	acks := newR7Acks()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- kafka.Publish(ctx, cl, r7IntSource(3, acks), r7IntRecord("out"), nil) }()
	r7Close(t, "the produce request at the broker", arrived)
	cancel()
	err := r7Err(t, "Publish after cancel", errc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Publish returned %v, want context.Canceled", err)
	}
	if err, ok := acks.get(0); ok && err == nil {
		t.Error("item 0 acknowledged as committed although the broker never confirmed it")
	}
}

// Promise (the package's guarantee): a source record is committed only
// after what it led to was committed: Source -> Publish, the produce of
// record 3 held by the broker, the run cancelled: the source commits 3.
func TestReview7SourceToPublishCommitsAfterConfirm(t *testing.T) {
	c, addrs := newCluster(t, 1, "in", "out")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 8), nil)
	arrived := r7HoldProduce(t, c, "out", 4)
	cl := r7Producer(t, addrs, kgo.AllowIdempotentProduceCancellation())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(5*time.Millisecond))
	ordered := stage.Map(src, r7Pass, stage.KeyBy(kafka.ByPartition[int]), stage.Workers(4))
	counts := &kafka.Published{}
	errc := make(chan error, 1)
	go func() {
		errc <- kafka.Publish(ctx, cl, ordered, func(r kafka.Record[int]) (*kgo.Record, error) {
			return &kgo.Record{Topic: "out", Key: r.Key, Value: []byte(strconv.Itoa(r.Value))}, nil
		}, counts)
	}()
	r7Close(t, "the 4th produce at the broker", arrived)
	cancel()
	err := r7Err(t, "Publish after cancel", errc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Publish returned %v, want context.Canceled", err)
	}
	if n := counts.Records.Load(); n != 3 {
		t.Errorf("counts.Records = %d, want 3", n)
	}
	if got := committedNow(t, addrs, "g", "in", 1)[0]; got != 3 {
		t.Errorf("source committed %d, want 3: records 0-2 confirmed, record 3 not", got)
	}
}

var r7DebugF atomic.Pointer[func() string]

func r7Debug() string {
	if f := r7DebugF.Load(); f != nil {
		return " [" + (*f)() + "]"
	}
	return ""
}

// Promise: "it makes a client from kopts": kopts kgo refuses (here an
// auto-commit interval under kgo's 100 ms minimum) fail the run with a
// *stage.SourceError, as kopts without a consumer group do.
func TestReview7InvalidKoptsFailRun(t *testing.T) {
	_, addrs := newCluster(t, 1, "in")
	kopts := append(memberOpts(addrs, "g", "in"), kgo.AutoCommitInterval(time.Millisecond))
	src := kafka.Source(kopts, decodeInt)
	errc := r7Start(nil, context.Background(), context.Background(), src, func(context.Context, kafka.Record[int]) error { return nil })
	err := r7Err(t, "the run", errc)
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Errorf("run returned %v (%T), want a *stage.SourceError", err, err)
	}
}

// Promise: a run ends only once its dead letters in flight were confirmed
// or gave up, even when the run is aborted meanwhile; the record whose dead
// letter was confirmed is settled and committed when the run stops.
func TestReview7AbortWaitsForDeadLetterInFlight(t *testing.T) {
	c, addrs := newCluster(t, 1, "in", "dlq")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 6), nil)
	id := c.TopicInfo("dlq").TopicID
	gate := make(chan struct{})
	arrived := make(chan struct{})
	var arrivedOnce sync.Once
	var returned atomic.Bool
	var lateReturn atomic.Bool
	defer func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	}()
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		for _, rt := range kr.(*kmsg.ProduceRequest).Topics {
			if rt.Topic == "dlq" || rt.TopicID == id {
				arrivedOnce.Do(func() { close(arrived) })
				c.SleepControl(func() { <-gate })
				if returned.Load() {
					lateReturn.Store(true)
				}
			}
		}
		return nil, nil, false
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var attempts atomic.Int32
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour), kafka.Attempts(1), kafka.DeadLetter("dlq"))
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 2 {
			attempts.Add(1)
			return r, errors.New("boom")
		}
		return r, nil
	}, stage.KeyBy(kafka.ByPartition[int]), stage.Workers(1), stage.OnError(stage.Forward))
	errc := make(chan error, 1)
	go func() {
		err := sink.ForEach(ctx, work, func(context.Context, kafka.Record[int]) error { return nil })
		returned.Store(true)
		errc <- err
	}()
	r7Close(t, "the dead letter at the broker", arrived)
	cancel()
	// Not a wait for anything: a window in which a run that does not wait
	// for its dead letter would return. A correct run never does.
	select {
	case err := <-errc:
		t.Fatalf("the aborted run returned (%v) while its dead letter was in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(gate)
	err := r7Err(t, "the aborted run", errc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("run returned %v, want context.Canceled", err)
	}
	if lateReturn.Load() {
		t.Error("the run returned before the broker answered its dead letter")
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("offset 2 tried %d times with Attempts(1)", n)
	}
	dl := r7ReadTopic(t, addrs, "dlq", 1)
	if h := r7Headers(dl[0].Headers); h["sluice-attempts"] != "1" || h["sluice-offset"] != "2" {
		t.Errorf("dead letter headers %v", h)
	}
	got := committedNow(t, addrs, "g", "in", 1)[0]
	t.Logf("committed after the abort: %d", got)
	if got < 3 {
		t.Errorf("committed %d: records 0-1 committed by the sink and 2 confirmed in the dead-letter topic are settled, want at least 3", got)
	}
}

// Promise: a failed commit is reported (a Committed event with Err) and
// loses nothing: when the run stops, it commits what is settled.
func TestReview7FailedCommitReportedAndRecommittedOnStop(t *testing.T) {
	c, addrs := newCluster(t, 1, "in")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 10), nil)
	var refusing atomic.Bool
	refusing.Store(true)
	var refused atomic.Int32
	c.ControlKey(int16(kmsg.OffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !refusing.Load() {
			return nil, nil, false
		}
		req := kr.(*kmsg.OffsetCommitRequest)
		resp := refuseCommit(req, kerr.OffsetMetadataTooLarge.Code)
		for _, rt := range req.Topics {
			for _, rp := range rt.Partitions {
				if rp.Offset == 10 {
					refusing.Store(false) // the last refusal
				}
			}
		}
		refused.Add(1)
		return resp, nil, true
	})
	cond := newR7Cond()
	ev := newR7Events(cond)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(10*time.Millisecond), ev.option())
	errc := r7Start(cond, context.Background(), stop, src, func(context.Context, kafka.Record[int]) error { return nil })
	cond.wait(t, "a Committed event with an error for the watermark 10", func() bool {
		for _, e := range ev.list() {
			if e.Kind == kafka.Committed && e.Err != nil {
				return !refusing.Load()
			}
		}
		return false
	})
	drain()
	if err := r7Err(t, "the drained run", errc); err != nil {
		t.Logf("drained run: %v", err)
	}
	if got := committedNow(t, addrs, "g", "in", 1)[0]; got != 10 {
		t.Errorf("committed %d after the drain, want 10: the refused commit was not made again (Committed events: %+v)", got, ev.list())
	}
}

// Promise (the package's advice): with KeyBy(ByKey) and a Buffer near
// MaxPending, one slow key of a partition full of it does not hold back the
// other partition's keys.
func TestReview7ByKeyAdviceSlowKeyHoldsOnlyItself(t *testing.T) {
	_, addrs := newCluster(t, 2, "in")
	const n = 30
	r7Produce(t, addrs, "in", 0, r7Ints(0, n), func(int) string { return "A" })
	r7Produce(t, addrs, "in", 1, r7Ints(1000, n), func(i int) string { return fmt.Sprintf("k%d", i%6) })
	cond := newR7Cond()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	p1Done := make(chan struct{})
	var p1, total atomic.Int32
	var starved atomic.Bool
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour), kafka.MaxPending(8))
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Partition == 0 && r.Offset == 0 {
			select {
			case <-p1Done:
			case <-time.After(r7Watchdog):
				starved.Store(true)
			}
		}
		return r, nil
	}, stage.KeyBy(kafka.ByKey[int]), stage.Workers(4), stage.Buffer(8))
	errc := r7Start(cond, context.Background(), stop, work, func(_ context.Context, r kafka.Record[int]) error {
		if r.Partition == 1 && p1.Add(1) == n {
			close(p1Done)
		}
		total.Add(1)
		cond.bump()
		return nil
	})
	cond.wait(t, "every record", func() bool { return total.Load() == 2*n })
	r7DrainedNil(t, drain, errc)
	if starved.Load() {
		t.Error("one slow key held back another partition's keys")
	}
}

// Promise: each run of a Source is one member: two runs of one Source at
// once share the group's partitions, and together process and commit
// everything.
func TestReview7TwoRunsOfOneSourceAreTwoMembers(t *testing.T) {
	_, addrs := newCluster(t, 4, "in")
	for p := range int32(4) {
		r7Produce(t, addrs, "in", p, r7Ints(int(p)*100, 5), nil)
	}
	cond := newR7Cond()
	var mu sync.Mutex
	owners := map[string]map[int32]bool{} // member -> partitions it holds
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
		mu.Lock()
		if owners[e.Member] == nil {
			owners[e.Member] = map[int32]bool{}
		}
		for _, p := range e.Partitions["in"] {
			owners[e.Member][p] = e.Kind == kafka.Assigned
		}
		mu.Unlock()
		cond.bump()
	}))
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var seen sync.Map
	put := func(_ context.Context, r kafka.Record[int]) error {
		seen.Store(place(r.Partition, r.Offset), true)
		cond.bump()
		return nil
	}
	errc1 := r7Start(cond, context.Background(), stop, src, put)
	errc2 := r7Start(cond, context.Background(), stop, src, put)
	cond.wait(t, "two members holding partitions at once", func() bool {
		mu.Lock()
		defer mu.Unlock()
		holding := 0
		for _, ps := range owners {
			for _, held := range ps {
				if held {
					holding++
					break
				}
			}
		}
		return holding == 2
	})
	cond.wait(t, "every record processed", func() bool {
		n := 0
		seen.Range(func(any, any) bool { n++; return true })
		return n == 20
	})
	cond.allow = 2
	drain()
	for i, errc := range []<-chan error{errc1, errc2} {
		if err := r7Err(t, fmt.Sprintf("run %d", i+1), errc); err != nil {
			t.Errorf("run %d: %v", i+1, err)
		}
	}
	for p := range int32(4) {
		for o := range int64(5) {
			if _, ok := seen.Load(place(p, o)); !ok {
				t.Errorf("record %s never processed", place(p, o))
			}
		}
	}
	got := committedNow(t, addrs, "g", "in", 4)
	for p := range int32(4) {
		if got[p] != 5 {
			t.Errorf("committed %v, want 5 everywhere", got)
			break
		}
	}
}

// Promise: a retried record waits in its partition's MaxPending places
// without deadlocking it: MaxPending(1), a record tried twice then dead-
// lettered, everything committed.
func TestReview7RetryWithMaxPendingOne(t *testing.T) {
	_, addrs := newCluster(t, 1, "in", "dlq")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 5), nil)
	cond := newR7Cond()
	ev := newR7Events(cond)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var mu sync.Mutex
	var tries []int
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.MaxPending(1), kafka.Attempts(2), kafka.DeadLetter("dlq"), ev.option())
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 1 {
			mu.Lock()
			tries = append(tries, r.Attempts)
			mu.Unlock()
			return r, errors.New("boom")
		}
		return r, nil
	}, stage.OnError(stage.Forward), stage.Workers(4))
	errc := r7Start(cond, context.Background(), stop, work, func(context.Context, kafka.Record[int]) error { return nil })
	ev.waitCommitted(t, "in", 0, 5)
	drain()
	err := r7Err(t, "the drained run", errc)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 2 {
		t.Errorf("run returned %v, want a *sink.ForwardedError of 2", err)
	}
	mu.Lock()
	if !slices.Equal(tries, []int{1, 2}) {
		t.Errorf("offset 1 tried with Attempts %v, want [1 2]", tries)
	}
	mu.Unlock()
	r7ReadTopic(t, addrs, "dlq", 1)
}

// Promise: Until with a stop that is already done ends the run quietly
// (nil), once the join finished, leaving nothing behind.
func TestReview7UntilAlreadyStopped(t *testing.T) {
	for range 10 { // a goroutine left behind shows up in some runs only
		r7UntilAlreadyStopped(t)
	}
}

func r7UntilAlreadyStopped(t *testing.T) {
	_, addrs := newCluster(t, 1, "in")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 3), nil)
	stop, drain := context.WithCancel(context.Background())
	drain()
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt)
	var n atomic.Int32
	var err error
	_, before := runcheck.Goroutines()
	runcheck.NoHang(t, "a run stopped before it started", func() {
		err = sink.ForEach(context.Background(), stage.Until(src, stop), func(context.Context, kafka.Record[int]) error {
			n.Add(1)
			return nil
		})
	})
	r7NoLeak(t, before)
	if err != nil {
		t.Errorf("run returned %v, want nil", err)
	}
	if n.Load() != 0 {
		t.Errorf("%d records processed after the stop", n.Load())
	}
}

// Promise: when the group session is lost, the partitions are let go
// without a commit, the member joins again and the run goes on; the
// partition newly assigned starts from its committed offset; an
// acknowledgement of a record of the lost assignment is ignored.
func TestReview7SessionLostRunGoesOn(t *testing.T) {
	c, addrs := newCluster(t, 1, "in")
	r7Produce(t, addrs, "in", 0, r7Ints(0, 10), nil)
	cond := newR7Cond()
	ev := newR7Events(cond)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	release := make(chan struct{})
	var firstHold sync.Once
	var held atomic.Bool
	var mu sync.Mutex
	seen := map[int64]int{}
	src := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(time.Hour), ev.option())
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 3 {
			hold := false
			firstHold.Do(func() { hold = true })
			if hold {
				held.Store(true)
				cond.bump()
				<-release
			}
		}
		return r, nil
	}, stage.Workers(4))
	errc := r7Start(cond, context.Background(), stop, work, func(_ context.Context, r kafka.Record[int]) error {
		mu.Lock()
		seen[r.Offset]++
		mu.Unlock()
		cond.bump()
		return nil
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	cond.wait(t, "nine records done, offset 3 held", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 9 && held.Load()
	})
	// The next heartbeat answers UNKNOWN_MEMBER_ID: the session is lost.
	c.ControlKey(int16(kmsg.Heartbeat), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.HeartbeatRequest)
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.SetVersion(req.GetVersion())
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp, nil, true
	})
	var lostAt int
	cond.wait(t, "a Lost event naming in/0", func() bool {
		for i, e := range ev.list() {
			if e.Kind == kafka.Lost && slices.Contains(e.Partitions["in"], 0) {
				lostAt = i
				return true
			}
		}
		return false
	})
	cond.wait(t, "in/0 assigned again after the loss", func() bool {
		for _, e := range ev.list()[lostAt+1:] {
			if e.Kind == kafka.Assigned && slices.Contains(e.Partitions["in"], 0) {
				return true
			}
		}
		return false
	})
	if got := committedNow(t, addrs, "g", "in", 1)[0]; got != -1 {
		t.Errorf("committed %d around the loss: lost partitions are let go without a commit", got)
	}
	// The new assignment starts from the committed offset (none: the
	// start), so offsets 0-2 and 4-9 come again; offset 3 too.
	cond.wait(t, "the records again after the loss", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for o := int64(0); o < 10; o++ {
			if o != 3 && seen[o] < 2 {
				return false
			}
		}
		return seen[3] >= 1
	})
	close(release)
	cond.wait(t, "the held record to finish", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[3] >= 2
	})
	r7DrainedNil(t, drain, errc)
	if got := committedNow(t, addrs, "g", "in", 1)[0]; got != 10 {
		t.Errorf("committed %d at the end, want 10", got)
	}
	ev.checkNoOverlap(t)
}

// r7DrainedNil drains the run (Until's stop) and checks that it returns nil,
// as a drain at the end of the work does.
func r7DrainedNil(t *testing.T, drain context.CancelFunc, errc <-chan error) {
	t.Helper()
	drain()
	if err := r7Err(t, "the drained run", errc); err != nil {
		t.Errorf("drained run: %v", err)
	}
}
