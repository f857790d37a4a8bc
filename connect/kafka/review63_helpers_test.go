package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Helpers of the review63 tests.
//
// r63Book knows, from the test's side, which records are settled, and
// checks every OffsetCommit the broker receives against it: a commit of
// offset o for a partition is a violation if a record below o is not
// settled. Marks are made before the record is really settled (a sink
// callback marks before it returns nil, a Filter before it returns false,
// a Handle function before it returns nil, a dead letter when its produce
// request reaches the broker), so the check is lenient, never falsely
// strict.
//
// exact marks are the records known settled for sure once the run is over;
// maybe marks (only for the broker check) are records that may have been
// settled (seen on their way to a sink whose result is only known later).

var errR63 = errors.New("review63: deliberate failure")

const r63Watchdog = 90 * time.Second

type r63Book struct {
	mu         sync.Mutex
	exact      map[tpart]map[int64]bool
	maybe      map[tpart]map[int64]bool
	commits    []commitSeen
	seq        int
	violations []string
	dead       map[tpart]map[int64]int // dead letters seen at the broker, per source record
}

// newR63Book watches the cluster's OffsetCommit requests and its produce
// requests to topic "dlq" (a dead letter settles its record).
func newR63Book(c *kfake.Cluster) *r63Book {
	b := &r63Book{exact: map[tpart]map[int64]bool{}, maybe: map[tpart]map[int64]bool{}, dead: map[tpart]map[int64]int{}}
	onCommits(c, &b.mu, func(member, topic string, p int32, off int64) {
		b.seq++
		b.commits = append(b.commits, commitSeen{b.seq, member, topic, p, off})
		if v := unsettledBelow(member, topic, p, off, func(o int64) bool { return b.settledLocked(topic, p, o) }); v != "" {
			b.violations = append(b.violations, v)
		}
	})
	names := topicNames(c)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		recs := producedRecords(names, req, "dlq")
		if len(recs) == 0 {
			return nil, nil, false
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, r := range recs {
			h := map[string]string{}
			for _, kv := range r.Headers {
				h[kv.Key] = string(kv.Value)
			}
			p, err1 := strconv.Atoi(h["sluice-partition"])
			off, err2 := strconv.ParseInt(h["sluice-offset"], 10, 64)
			if err1 != nil || err2 != nil {
				b.violations = append(b.violations, fmt.Sprintf("a dead letter without its partition and offset headers: %v", h))
				continue
			}
			tp := tpart{h["sluice-topic"], int32(p)}
			b.markLocked(b.exact, tp.topic, tp.p, off)
			if b.dead[tp] == nil {
				b.dead[tp] = map[int64]int{}
			}
			b.dead[tp][off]++
		}
		return nil, nil, false
	})
	return b
}

func (b *r63Book) markLocked(m map[tpart]map[int64]bool, topic string, p int32, off int64) {
	s := m[tpart{topic, p}]
	if s == nil {
		s = map[int64]bool{}
		m[tpart{topic, p}] = s
	}
	s[off] = true
}

func (b *r63Book) settledLocked(topic string, p int32, off int64) bool {
	return b.exact[tpart{topic, p}][off] || b.maybe[tpart{topic, p}][off]
}

// settle marks a record settled for sure (call it just before it is).
func (b *r63Book) settle(topic string, p int32, off int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.markLocked(b.exact, topic, p, off)
}

func (b *r63Book) settleRec(r kafka.Record[int]) { b.settle(r.Topic, r.Partition, r.Offset) }

// mayBeSettled marks a record that may be settled (for the broker check
// only).
func (b *r63Book) mayBeSettled(r kafka.Record[int]) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.markLocked(b.maybe, r.Topic, r.Partition, r.Offset)
}

func (b *r63Book) isSettled(topic string, p int32, off int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.settledLocked(topic, p, off)
}

// firstUnsettled is the lowest offset of topic/p not settled for sure.
func (b *r63Book) firstUnsettled(topic string, p int32) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	o := int64(0)
	for b.exact[tpart{topic, p}][o] {
		o++
	}
	return o
}

// watermark is the lowest offset not settled, counting maybe marks too.
func (b *r63Book) watermark(topic string, p int32) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	o := int64(0)
	for b.settledLocked(topic, p, o) {
		o++
	}
	return o
}

// allSettled reports whether offsets [from, to) of topic/p are settled.
func (b *r63Book) allSettled(topic string, p int32, from, to int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for o := from; o < to; o++ {
		if !b.settledLocked(topic, p, o) {
			return false
		}
	}
	return true
}

// commitsBy lists the broker commits of member for topic/p after seq.
func (b *r63Book) commitsBy(member, topic string, p int32, after int) []commitSeen {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []commitSeen
	for _, c := range b.commits {
		if c.seq > after && c.member == member && c.topic == topic && c.p == p {
			out = append(out, c)
		}
	}
	return out
}

func (b *r63Book) lastSeq() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seq
}

// verify fails the test if any commit passed a record not settled.
func (b *r63Book) verify(t testing.TB) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.violations) > 0 {
		t.Errorf("%d violations in %d commits; first: %s", len(b.violations), len(b.commits), b.violations[0])
	}
}

func (b *r63Book) dumpCommits() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := ""
	for _, c := range b.commits {
		s += fmt.Sprintf("%d member=%s %s/%d@%d\n", c.seq, c.member, c.topic, c.p, c.off)
	}
	return s
}

// r63Produce writes perPart records to each of parts partitions of "jobs":
// partition p gets values p*perPart ... (keys k(v%7), see produceTo).
func r63Produce(t testing.TB, addrs []string, parts int32, perPart int) {
	t.Helper()
	for p := range parts {
		produceTo(t, addrs, "jobs", p, int(p)*perPart, perPart)
	}
}

// r63ProduceSolo is r63Produce with a key of its own ("solo") for the
// record at offset solo of each partition, so that no record waits behind
// it for its key under ByKey.
func r63ProduceSolo(t testing.TB, addrs []string, parts int32, perPart int, solo int64) {
	t.Helper()
	var recs []*kgo.Record
	for p := range parts {
		for i := range perPart {
			v := int(p)*perPart + i
			key := fmt.Sprintf("k%d", v%7)
			if int64(i) == solo {
				key = "solo"
			}
			recs = append(recs, &kgo.Record{Topic: "jobs", Partition: p, Key: []byte(key), Value: []byte(strconv.Itoa(v))})
		}
	}
	produceRecs(t, addrs, recs...)
}

// r63Kind is what the mixed workload does with a record of value v:
//
//	v%10 == 3: fails its first try (forwarded), succeeds when tried again;
//	v%10 == 7: always fails (forwarded): dead-lettered after Attempts;
//	v%10 == 5: dropped by a Filter;
//	v%10 == 9: fails in a stage whose Handle policy accepts it (dropped);
//	otherwise: stored by the sink.
func r63Kind(v int) string {
	switch v % 10 {
	case 3:
		return "retry"
	case 7:
		return "dead"
	case 5:
		return "filter"
	case 9:
		return "handle"
	}
	return "store"
}

// r63Order tracks, in a stage with KeyBy, the calls in progress per key
// and the offsets of first tries per key.
type r63Order struct {
	mu       sync.Mutex
	inFlight map[kafka.RecordKey]int
	last     map[kafka.RecordKey]int64
	errs     []string
}

func newR63Order() *r63Order {
	return &r63Order{inFlight: map[kafka.RecordKey]int{}, last: map[kafka.RecordKey]int64{}}
}

// enter records the start of a call for r under key k; leave its end.
func (o *r63Order) enter(k kafka.RecordKey, r kafka.Record[int]) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inFlight[k]++; o.inFlight[k] > 1 && len(o.errs) < 10 {
		o.errs = append(o.errs, fmt.Sprintf("key %+v: %d calls at once (offset %d, attempt %d)", k, o.inFlight[k], r.Offset, r.Attempts))
	}
	if r.Attempts == 1 {
		if last, ok := o.last[k]; ok && r.Offset <= last && len(o.errs) < 10 {
			o.errs = append(o.errs, fmt.Sprintf("key %+v: offset %d taken after offset %d", k, r.Offset, last))
		}
		o.last[k] = r.Offset
	}
}

func (o *r63Order) leave(k kafka.RecordKey) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight[k]--
}

func (o *r63Order) verify(t testing.TB) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.errs {
		t.Error(e)
	}
}

// r63KeyOf returns the key function of a mode ("key", "partition"; nil for
// "none").
func r63KeyOf(mode string) func(kafka.Record[int]) kafka.RecordKey {
	switch mode {
	case "key":
		return kafka.ByKey[int]
	case "partition":
		return kafka.ByPartition[int]
	}
	return nil
}

// r63Mixed builds the mixed workload over src: a first stage (KeyBy for the
// mode, Workers(8), Forward) in which "retry" and "dead" records fail and
// hook runs first (it may hold a record), a Filter, a Handle stage, and a
// last pass-through stage in which each record calls last (nil: none).
// Every record dropped on purpose is marked in b. inner (nil: none) is
// called first in the Filter's function ("filter", for every record) and
// in the Handle policy's function ("handle"); an error it returns is the
// function's.
func r63Mixed(b *r63Book, src stage.Stream[kafka.Record[int]], mode string, ord *r63Order, hook func(context.Context, kafka.Record[int]) error, last func(context.Context, kafka.Record[int]) error, buffer int, inner ...func(where string, r kafka.Record[int]) error) stage.Stream[kafka.Record[int]] {
	in := func(where string, r kafka.Record[int]) error {
		for _, f := range inner {
			if err := f(where, r); err != nil {
				return err
			}
		}
		return nil
	}
	keyOf := r63KeyOf(mode)
	opts := []stage.Option{stage.Workers(8), stage.OnError(stage.Forward)}
	if keyOf != nil {
		opts = append(opts, stage.KeyBy(keyOf))
	}
	if buffer > 0 {
		opts = append(opts, stage.Buffer(buffer))
	}
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if keyOf != nil && ord != nil {
			k := keyOf(r)
			ord.enter(k, r)
			defer ord.leave(k)
		}
		if hook != nil {
			if err := hook(ctx, r); err != nil {
				return r, err
			}
		}
		switch r63Kind(r.Value) {
		case "retry":
			if r.Attempts == 1 {
				return r, fmt.Errorf("record %d, first try: %w", r.Value, errR63)
			}
		case "dead":
			return r, fmt.Errorf("record %d, poison: %w", r.Value, errR63)
		}
		return r, nil
	}, opts...)
	kept := stage.Filter(work, func(_ context.Context, r kafka.Record[int]) (bool, error) {
		if err := in("filter", r); err != nil {
			return false, err
		}
		if r63Kind(r.Value) == "filter" {
			b.settleRec(r)
			return false, nil
		}
		return true, nil
	}, stage.Workers(8))
	handled := stage.Map(kept, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r63Kind(r.Value) == "handle" {
			return r, errR63
		}
		return r, nil
	}, stage.Workers(8), stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
		r := e.Input.(kafka.Record[int])
		if err := in("handle", r); err != nil {
			return err
		}
		b.settleRec(r)
		return nil
	})))
	if last == nil {
		return handled
	}
	return stage.Map(handled, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		return r, last(ctx, r)
	}, stage.Workers(8))
}

// r63OnlyForwarded reports whether err is nil or a *sink.ForwardedError
// itself (what a sink returns for a run that ended well with forwarded
// errors).
func r63OnlyForwarded(err error) bool {
	if err == nil {
		return true
	}
	var fe *sink.ForwardedError
	return errors.As(err, &fe) && error(fe) == err
}

// r63Resume runs a second member of group over "jobs" (a plain sink on the
// source) until it saw every offset at or above from[p] of each partition
// (of perPart records), marks them settled, and returns the offsets it saw
// per partition, in order.
func r63Resume(t testing.TB, b *r63Book, addrs []string, group string, parts int32, perPart int, from map[int32]int64) map[int32][]int64 {
	t.Helper()
	need := 0
	for p := range parts {
		need += perPart - int(max(from[p], 0))
	}
	seen := map[int32][]int64{}
	if need == 0 {
		return seen
	}
	have := map[string]bool{}
	var mu sync.Mutex
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, group, "jobs"), decodeInt, kafka.CommitInterval(20*time.Millisecond))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) error {
			b.settleRec(r)
			mu.Lock()
			defer mu.Unlock()
			seen[r.Partition] = append(seen[r.Partition], r.Offset)
			if pl := place(r.Partition, r.Offset); r.Offset >= max(from[r.Partition], 0) && !have[pl] {
				have[pl] = true
				if need--; need == 0 {
					drain()
				}
			}
			return nil
		})
	})
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("the second run: %v", err)
		}
	case <-time.After(r63Watchdog):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("hung: the second run did not get every record not committed (%d missing); it saw %v", need, seen)
	}
	return seen
}

// r63Gate holds user functions until the test opens it. open may be called
// more than once, so a test opens it where its story says and also defers
// it, for a check that fails and returns early.
type r63Gate struct {
	c    chan struct{}
	once sync.Once
}

func newR63Gate() *r63Gate { return &r63Gate{c: make(chan struct{})} }

func (g *r63Gate) open() { g.once.Do(func() { close(g.c) }) }

func (g *r63Gate) isOpen() bool {
	select {
	case <-g.c:
		return true
	default:
		return false
	}
}

// wait blocks until the gate opens (nil) or ctx ends (ctx's error).
func (g *r63Gate) wait(ctx context.Context) error {
	select {
	case <-g.c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// r63HoldSecondTries is member A of the group tests: Workers(8) under
// ByKey, errors forwarded; in every partition the record at offset failing
// fails its first try and holds its second until release opens or the
// try's context ends. settledAround reports whether every other record of
// parts partitions of perPart records is settled while all parts second
// tries are held.
func r63HoldSecondTries(b *r63Book, src stage.Stream[kafka.Record[int]], release *r63Gate, parts int32, perPart int, failing int64) (out stage.Stream[kafka.Record[int]], settledAround func() bool) {
	var mu sync.Mutex
	held := 0
	out = stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == failing {
			switch r.Attempts {
			case 1:
				return r, errR63
			case 2:
				mu.Lock()
				held++
				mu.Unlock()
				if err := release.wait(ctx); err != nil {
					return r, err
				}
			}
		}
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]), stage.OnError(stage.Forward), stage.Buffer(perPart))
	settledAround = func() bool {
		mu.Lock()
		h := held
		mu.Unlock()
		for p := range parts {
			if !b.allSettled("jobs", p, 0, failing) || !b.allSettled("jobs", p, failing+1, int64(perPart)) {
				return false
			}
		}
		return h == int(parts)
	}
	return out, settledAround
}

// r63RunMixed starts a run of group "g" over topic "jobs" through r63Mixed
// (MaxPending(k), two attempts, then the dead letter topic "dlq") into a
// sink that settles every record it gets. drain stops the run's source;
// errc reports the run's end.
func r63RunMixed(b *r63Book, addrs []string, mode string, ord *r63Order, hook func(context.Context, kafka.Record[int]) error, k int) (drain context.CancelFunc, errc <-chan error) {
	stop, drain := context.WithCancel(context.Background())
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.MaxPending(k), kafka.Attempts(2), kafka.DeadLetter("dlq"), kafka.CommitInterval(10*time.Millisecond))
	out := r63Mixed(b, stage.Until(src, stop), mode, ord, hook, nil, k)
	errc = goRun(func() error {
		return sink.ForEach(context.Background(), out, func(_ context.Context, r kafka.Record[int]) error {
			b.settleRec(r)
			return nil
		})
	})
	return drain, errc
}

// r63MemberB is a second group member whose sink settles every record in b
// and records, per partition, the offsets it was handed.
type r63MemberB struct {
	mu    sync.Mutex
	seen  map[int32][]int64
	drain context.CancelFunc // ends the run by stage.Until
	errc  <-chan error
}

// r63StartMemberB starts the member over kopts; the caller drains it.
func r63StartMemberB(b *r63Book, kopts []kgo.Opt, ev *r14Events) *r63MemberB {
	m := &r63MemberB{seen: map[int32][]int64{}}
	stop, drain := context.WithCancel(context.Background())
	m.drain = drain
	src := kafka.Source(kopts, decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.OnEvent(ev.add))
	m.errc = goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) error {
			b.settleRec(r)
			m.mu.Lock()
			m.seen[r.Partition] = append(m.seen[r.Partition], r.Offset)
			m.mu.Unlock()
			return nil
		})
	})
	return m
}

// offsets returns a copy of the offsets of partition p handed to the member.
func (m *r63MemberB) offsets(p int32) []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int64(nil), m.seen[p]...)
}

// reached reports whether the last offset of partition p handed to the member is last.
func (m *r63MemberB) reached(p int32, last int64) bool {
	s := m.offsets(p)
	return len(s) > 0 && s[len(s)-1] == last
}
