package kafka_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// The tests run against kfake, an in-process cluster that speaks the Kafka
// protocol (consumer groups, commits, rebalances). It stands in for a real
// broker; its timing is not a real broker's.

const memberEnv = "SLUICE_KAFKA_MEMBER" // set in a child process: run a member

func TestMain(m *testing.M) {
	if addr := os.Getenv(memberEnv); addr != "" {
		os.Exit(childMember(addr))
	}
	// kfake's cluster loop can outlive Close for a moment under load: it
	// may still be resuming a control function that a test put to sleep
	// (seen once in 4 runs under a CPU hog). It is the fake broker's own
	// goroutine, not one of a run's; every goroutine of sluice is still
	// checked.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*Cluster).run"))
}

// newCluster starts a cluster with the topics given, of partitions
// partitions each, and returns its addresses.
func newCluster(t testing.TB, partitions int32, topics ...string) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, c.ListenAddrs()
}

// client is a plain client for producing and inspecting.
func client(t testing.TB, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce writes n records to topic: value i, key key(i), spread over the
// partitions by key.
func produce(t testing.TB, addrs []string, topic string, n int, key func(i int) string) {
	t.Helper()
	cl := client(t, addrs, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var perr error
	for i := range n {
		wg.Add(1)
		cl.Produce(context.Background(), &kgo.Record{Key: []byte(key(i)), Value: []byte(strconv.Itoa(i))}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				perr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if perr != nil {
		t.Fatal(perr)
	}
}

// memberSession is a group member's session timeout (see memberOpts).
const memberSession = 30 * time.Second

// memberOpts are a group member's client options: quick heartbeats, so
// that rebalances take little time. The session timeout is a hang bound
// (memberSession): a member whose heartbeats a loaded machine held up for
// a short one was expired and rebalanced out of its partitions, which
// tests that expect no rebalance (key order, MaxPending, two ownerships)
// took for the source's fault. A member that dies without leaving (the
// killed child) is dropped at the next rebalance's RebalanceTimeout.
func memberOpts(addrs []string, group, topic string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(addrs...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.SessionTimeout(memberSession),
		kgo.HeartbeatInterval(200 * time.Millisecond),
		kgo.RebalanceTimeout(10 * time.Second),
		kgo.FetchMaxWait(200 * time.Millisecond),
	}
}

func decodeInt(r *kgo.Record) (int, error) { return strconv.Atoi(string(r.Value)) }

// store is an idempotent sink: it keeps each record once, by place, and
// counts the duplicates it absorbed.
type store struct {
	mu   sync.Mutex
	seen map[string]int // "partition/offset" -> value
	dups int
}

func newStore() *store { return &store{seen: map[string]int{}} }

func place(p int32, off int64) string { return fmt.Sprintf("%d/%d", p, off) }

func (s *store) put(r kafka.Record[int]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := place(r.Partition, r.Offset)
	if _, ok := s.seen[k]; ok {
		s.dups++
		return
	}
	s.seen[k] = r.Value
}

func (s *store) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// has reports whether every record of partition p below offset off is
// stored.
func (s *store) has(p int32, off int64) (missing int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for o := int64(0); o < off; o++ {
		if _, ok := s.seen[place(p, o)]; !ok {
			return o, false
		}
	}
	return 0, true
}

// member runs one member over topic until stop is done (drain) or ctx is
// cancelled (abort), storing each record with put.
func member(ctx, stop context.Context, addrs []string, group, topic string, put func(kafka.Record[int]), work func(kafka.Record[int]), opts ...kafka.Option) error {
	recs := kafka.Source(memberOpts(addrs, group, topic), decodeInt, opts...)
	done := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if work != nil {
			work(r)
		}
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]))
	return sink.ForEach(ctx, done, func(_ context.Context, r kafka.Record[int]) error {
		put(r)
		return nil
	})
}

// waitFor polls until done reports true. The deadline only turns a hang
// into a failure; no verdict depends on it.
func waitFor(t testing.TB, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitHung is a hang watchdog: no verdict depends on how soon it fires.
func waitHung() <-chan time.Time { return time.After(2 * time.Minute) }

// checkCommitted checks that the group's committed offsets are the end
// offsets of topic: every record was committed.
func checkCommitted(t testing.TB, addrs []string, group, topic string) {
	t.Helper()
	adm := kadm.NewClient(client(t, addrs))
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the committed offsets to reach the end offsets", func() bool {
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return false
		}
		ok := true
		ends.Each(func(e kadm.ListedOffset) {
			c, found := committed.Lookup(e.Topic, e.Partition)
			if !found || c.At != e.Offset {
				ok = false
			}
		})
		return ok
	})
}
