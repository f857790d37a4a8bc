package kafka_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
)

// Helpers of the attack tests: a ledger that knows, from the test's side,
// which records are settled, and a checker at the broker that sees every
// OffsetCommit and flags one that passes a record not settled.

type tpart struct {
	topic string
	p     int32
}

type commitSeen struct {
	seq    int
	member string
	topic  string
	p      int32
	off    int64
}

type eventSeen struct {
	seq int
	ev  kafka.Event
}

type ledger struct {
	mu         sync.Mutex
	seq        int
	settled    map[tpart]map[int64]bool
	commits    []commitSeen
	events     []eventSeen
	violations []string
	inEvent    map[string]int // OnEvent calls in progress, per member (run)
	overlaps   int            // OnEvent calls that overlapped another of the same member
}

func newLedger() *ledger {
	return &ledger{settled: map[tpart]map[int64]bool{}, inEvent: map[string]int{}}
}

// settle marks a record settled. Tests call it just before the record is
// really settled (before a sink callback returns nil, in a Filter before it
// returns false), so the checker is lenient, never falsely strict.
func (l *ledger) settle(topic string, p int32, off int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.settled[tpart{topic, p}]
	if m == nil {
		m = map[int64]bool{}
		l.settled[tpart{topic, p}] = m
	}
	m[off] = true
}

func (l *ledger) settleRec(r kafka.Record[int]) { l.settle(r.Topic, r.Partition, r.Offset) }

// watch observes every OffsetCommit at the broker (the cluster still
// handles it).
func (l *ledger) watch(c *kfake.Cluster) {
	onCommits(c, &l.mu, func(member, topic string, p int32, off int64) {
		l.seq++
		l.commits = append(l.commits, commitSeen{l.seq, member, topic, p, off})
		m := l.settled[tpart{topic, p}]
		if v := unsettledBelow(member, topic, p, off, func(o int64) bool { return m[o] }); v != "" {
			l.violations = append(l.violations, v)
		}
	})
}

// onCommits calls f, under mu, for each partition's offset in every
// OffsetCommit the cluster receives (the cluster still handles it).
func onCommits(c *kfake.Cluster, mu *sync.Mutex, f func(member, topic string, p int32, off int64)) {
	names := topicNames(c)
	c.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.OffsetCommitRequest)
		mu.Lock()
		defer mu.Unlock()
		for _, t := range req.Topics {
			topic := names.of(t.Topic, t.TopicID)
			for _, p := range t.Partitions {
				f(req.MemberID, topic, p.Partition, p.Offset)
			}
		}
		return nil, nil, false
	})
}

// unsettledBelow describes a commit of p at off that passes a record not
// settled (the first offset below off for which settled is false), or is
// "" if every one below off is settled.
func unsettledBelow(member, topic string, p int32, off int64, settled func(int64) bool) string {
	for o := int64(0); o < off; o++ {
		if !settled(o) {
			return fmt.Sprintf("member %s committed %s/%d at %d, but offset %d was not settled", member, topic, p, off, o)
		}
	}
	return ""
}

func (l *ledger) onEvent(e kafka.Event) {
	l.mu.Lock()
	l.inEvent[e.Member]++
	if l.inEvent[e.Member] > 1 {
		l.overlaps++
	}
	l.seq++
	l.events = append(l.events, eventSeen{l.seq, e})
	l.mu.Unlock()
	runtime.Gosched() // widen the window for an overlapping call
	l.mu.Lock()
	l.inEvent[e.Member]--
	l.mu.Unlock()
}

func (l *ledger) option() kafka.Option { return kafka.OnEvent(l.onEvent) }

// verify fails the test if any commit passed a record not settled.
func (l *ledger) verify(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.violations) > 0 {
		t.Errorf("%d of %d commits passed an unsettled record; first: %s", len(l.violations), len(l.commits), l.violations[0])
	}
	if l.overlaps > 0 {
		t.Errorf("OnEvent was called %d times while another call for the same member was in progress", l.overlaps)
	}
}

// committedEvents returns the offsets of successful Committed events for
// topic/p, in order.
func (l *ledger) committedEvents(topic string, p int32) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int64
	for _, e := range l.events {
		if e.ev.Kind == kafka.Committed && e.ev.Err == nil {
			if o, ok := e.ev.Offsets[topic][p]; ok {
				out = append(out, o)
			}
		}
	}
	return out
}

// produceTo writes records, one at a time and in order, to partition p of
// topic, value strconv.Itoa(first+i), with the client closed afterwards.
func produceTo(t testing.TB, addrs []string, topic string, p int32, first, n int) {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range n {
		recs[i] = &kgo.Record{Topic: topic, Partition: p, Key: []byte(fmt.Sprintf("k%d", (first+i)%7)), Value: []byte(strconv.Itoa(first + i))}
	}
	produceRecs(t, addrs, recs...)
}

// produceOneKey produces n records of key "k", values 0..n-1, to
// partition 0 of topic "jobs".
func produceOneKey(t testing.TB, addrs []string, n int) {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range n {
		recs[i] = &kgo.Record{Topic: "jobs", Partition: 0, Key: []byte("k"), Value: []byte(fmt.Sprint(i))}
	}
	produceRecs(t, addrs, recs...)
}

func produceRecs(t testing.TB, addrs []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, r := range recs {
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// committedNow reads the group's committed offsets of topic (-1: none).
func committedNow(t testing.TB, addrs []string, group, topic string, partitions int32) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	out := map[int32]int64{}
	committed, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	for p := range partitions {
		out[p] = -1
		if c, ok := committed.Lookup(topic, p); ok {
			out[p] = c.At
		}
	}
	return out
}

func goRun(f func() error) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	return errc
}

// waitErr waits for a run's result; the deadline is a hang watchdog only.
func waitErr(t testing.TB, what string, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-waitHung():
		t.Fatalf("hung: %s did not return", what)
		return nil
	}
}

// sluiceGoroutines lists the goroutines of the connector or the engine,
// but one on its way out of a wait that has already returned (a goroutine
// that closed its done channel and has only its return left; see
// runcheck.Alive): strict for every one that waits for anything.
func sluiceGoroutines() []string {
	return runcheck.Alive(func(_ int64, g string) bool {
		return !strings.Contains(g, "pkg/kfake") && (strings.Contains(g, "sluice/stage.") ||
			strings.Contains(g, "sluice/sink.") || strings.Contains(g, "sluice/connect/kafka."))
	})
}

// checkNoLeak: no goroutine of sluice may outlive the sink's return
// (strict); franz-go's own goroutines may still be on their way out when
// Client.Close returned, so for them the check waits (watchdog only).
func checkNoLeak(t *testing.T, what string) {
	t.Helper()
	if gs := sluiceGoroutines(); len(gs) > 0 {
		t.Errorf("%s: %d goroutines of sluice still there when the sink returned:\n%s", what, len(gs), strings.Join(gs, "\n\n"))
	}
	if gs := runGoroutines(); len(gs) > 0 {
		t.Logf("%s: %d franz-go goroutines still exiting when the sink returned", what, len(gs))
		waitFor(t, "the client's goroutines to exit", func() bool { return len(runGoroutines()) == 0 })
	}
}

// checkNoLeakSince is checkNoLeak for the goroutines started since before
// (runcheck.Goroutines): none of sluice's may be left (strict); franz-go's
// client goroutines may still be on their way out of Client.Close (a
// connection closing its socket, see the package doc), so for them the
// check waits (watchdog only); the fake cluster's are not the run's.
func checkNoLeakSince(t testing.TB, what string, before map[int64]string) {
	t.Helper()
	client := func() (n int) {
		for _, g := range runcheck.LeakedSince(before) {
			switch {
			case strings.Contains(g, "franz-go/pkg/kfake.") || strings.Contains(g, "runcheck.NoHang"):
			case strings.Contains(g, "franz-go/pkg/kgo.") && !strings.Contains(g, "sluice/"):
				n++
			default:
				t.Errorf("%s: goroutine alive after the sink returned:\n%s", what, g)
			}
		}
		return n
	}
	if client() > 0 {
		waitFor(t, "the client's goroutines to exit", func() bool {
			for _, g := range runcheck.LeakedSince(before) {
				if strings.Contains(g, "franz-go/pkg/kgo.") && !strings.Contains(g, "sluice/") {
					return false
				}
			}
			return true
		})
	}
}

// runGoroutines lists the goroutines of the connector, the engine or a
// franz-go client (not the fake cluster's).
func runGoroutines() []string {
	buf := make([]byte, 1<<22)
	n := runtime.Stack(buf, true)
	var out []string
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "pkg/kfake") {
			continue
		}
		if strings.Contains(g, "franz-go/pkg/kgo.") || strings.Contains(g, "sluice/stage.") ||
			strings.Contains(g, "sluice/sink.") || strings.Contains(g, "sluice/connect/kafka.") {
			out = append(out, g)
		}
	}
	return out
}

// topicIDs maps the topic IDs of the topics the attack tests use to their
// names: newer requests (OffsetCommit v10, Produce v13) carry IDs only.
// Resolved before any control function runs.
type topicIDs map[[16]byte]string

func topicNames(c *kfake.Cluster) topicIDs {
	m := topicIDs{}
	for _, name := range []string{"jobs", "in", "out", "dlq"} {
		if ti := c.TopicInfo(name); ti != nil {
			m[ti.TopicID] = name
		}
	}
	return m
}

func (m topicIDs) of(name string, id [16]byte) string {
	if name != "" {
		return name
	}
	return m[id]
}

// producedRecords decodes the records of a produce request for topic.
func producedRecords(names topicIDs, req *kmsg.ProduceRequest, topic string) []kmsg.Record {
	var out []kmsg.Record
	for _, tt := range req.Topics {
		if names.of(tt.Topic, tt.TopicID) != topic {
			continue
		}
		for _, p := range tt.Partitions {
			raw := p.Records
			for len(raw) >= 12 {
				size := 12 + int(int32(binary.BigEndian.Uint32(raw[8:12])))
				if size > len(raw) {
					break
				}
				var b kmsg.RecordBatch
				if err := b.ReadFrom(raw[:size]); err == nil {
					if rs, err := kfake.BatchRecords(b); err == nil {
						out = append(out, rs...)
					}
				}
				raw = raw[size:]
			}
		}
	}
	return out
}

func headerMap(hs []kgo.RecordHeader) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

// dump lists the events and commits seen, in order (for failure reports).
func (l *ledger) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	type line struct {
		seq int
		s   string
	}
	var ls []line
	for _, e := range l.events {
		ls = append(ls, line{e.seq, fmt.Sprintf("event %v member=%s partitions=%v offsets=%v err=%v", e.ev.Kind, e.ev.Member, e.ev.Partitions, e.ev.Offsets, e.ev.Err)})
	}
	for _, c := range l.commits {
		ls = append(ls, line{c.seq, fmt.Sprintf("broker commit member=%s %s/%d@%d", c.member, c.topic, c.p, c.off)})
	}
	slices.SortFunc(ls, func(a, b line) int { return a.seq - b.seq })
	var b strings.Builder
	for _, x := range ls {
		fmt.Fprintf(&b, "%4d %s\n", x.seq, x.s)
	}
	return b.String()
}

func (l *ledger) dumpOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("events and commits:\n" + l.dump())
		}
	})
}

// twoPartitions starts a cluster whose topic "jobs" has two partitions,
// watched by a new ledger, with n records produced: the first half to
// partition 0, the second to partition 1.
func twoPartitions(t *testing.T, n int) ([]string, *ledger) {
	t.Helper()
	c, addrs := newCluster(t, 2, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n/2)
	produceTo(t, addrs, "jobs", 1, n/2, n/2)
	return addrs, l
}

// finishAttack drains a run of group "g", waits for it to return without
// an error, and checks that the group committed "jobs" to its end and that
// the ledger saw no broken promise.
func finishAttack(t *testing.T, drain func(), errc <-chan error, addrs []string, l *ledger) {
	t.Helper()
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}

// refuseCommit answers an offset commit with the error code for every
// partition it names (a partition-level refusal; the request itself
// succeeds).
func refuseCommit(req *kmsg.OffsetCommitRequest, code int16) *kmsg.OffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	resp.SetVersion(req.GetVersion())
	for _, rt := range req.Topics {
		st := kmsg.NewOffsetCommitResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewOffsetCommitResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}
