// Command kafka runs one sluice pipeline as K members of a Kafka consumer
// group and loads the records into SQLite with an idempotent insert. It
// starts an in-process cluster (kfake, a stand-in for a broker that speaks
// the Kafka protocol; or connects to -brokers host:port), runs the members
// as goroutines, each with its own client, and produces -n orders keyed by
// customer (on 8 partitions in the process, once every member owns some).
// Each member processes a partition's records concurrently, in
// per-customer order, and commits an offset only when every record before
// it is stored. One member crashes mid-run (on the in-process cluster: its
// commits stop landing, then it dies): the others take its partitions from
// their last committed offsets, and the database ignores what was already
// stored. The members drain once every order is stored and every offset
// committed. It prints what each member did and whether every record was
// committed exactly once.
//
//	go -C examples run ./kafka
//	go -C examples run ./kafka -members 4 -n 20000 -crash=false
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	_ "modernc.org/sqlite"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

type config struct {
	brokers []string // empty: start a cluster in the process
	n       int
	members int
	crash   bool
}

func main() {
	var cfg config
	brokers := flag.String("brokers", "", "Kafka brokers, host:port,... (default: a cluster in the process)")
	flag.IntVar(&cfg.n, "n", 5000, "orders to produce")
	flag.IntVar(&cfg.members, "members", 3, "members of the group")
	flag.BoolVar(&cfg.crash, "crash", true, "crash member 0 mid-run, once it stored min(500, n/(2×members)) orders (in-process cluster only; needs -members 2 or more)")
	flag.Parse()
	if *brokers != "" {
		cfg.brokers = strings.Split(*brokers, ",")
	}
	if cfg.crash && len(cfg.brokers) == 0 && cfg.members < 2 {
		fmt.Fprintln(os.Stderr, "kafka: -crash needs -members 2 or more: a lone member's crash would leave its orders to nobody (add -crash=false)")
		os.Exit(2)
	}
	if err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kafka:", err)
		os.Exit(1)
	}
}

// Order is a record of the topic.
type Order struct {
	ID       int `json:"id"`
	Customer int `json:"customer"`
	Cents    int `json:"cents"`
}

const topic, group = "orders", "loaders"

type stats struct {
	inserted, duplicates atomic.Int64
	crashed              atomic.Bool
	owned                atomic.Int64 // partitions the member owns now
}

// inProcessPartitions is how many partitions the in-process cluster's
// topic has.
const inProcessPartitions = 8

// waitOwners waits until n members own a partition, or every member has
// stopped (exited is closed).
func waitOwners(members []*stats, n int, exited <-chan struct{}) {
	for {
		owners := 0
		for _, st := range members {
			if st.owned.Load() > 0 {
				owners++
			}
		}
		if owners >= n {
			return
		}
		select {
		case <-exited:
			return
		case <-time.After(20 * time.Millisecond): // poll interval
		}
	}
}

// partitionCount is how many partitions ps names.
func partitionCount(ps map[string][]int32) int64 {
	n := 0
	for _, p := range ps {
		n += len(p)
	}
	return int64(n)
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.members < 1 || cfg.n < 0 {
		return fmt.Errorf("-members %d -n %d: want 1 member or more and 0 orders or more", cfg.members, cfg.n)
	}
	var cluster *kfake.Cluster
	if len(cfg.brokers) == 0 {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(inProcessPartitions, topic), kfake.GroupMinSessionTimeout(100*time.Millisecond))
		if err != nil {
			return err
		}
		defer c.Close()
		cluster, cfg.brokers = c, c.ListenAddrs()
	}
	if cluster == nil { // the brokers' topic may not exist before this
		if err := produceOrders(ctx, cfg.brokers, cfg.n); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "sluice-kafka")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", filepath.Join(dir, "orders.sqlite"))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, cents INTEGER NOT NULL, member INTEGER NOT NULL)`); err != nil {
		return err
	}

	crash := cfg.crash && cluster != nil
	var crashedID atomic.Value // the crashed member's id in the group
	if crash {
		// A crashed member's commits no longer land: the cluster refuses them.
		cluster.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			req := kreq.(*kmsg.OffsetCommitRequest)
			if id, _ := crashedID.Load().(string); id == "" || req.MemberID != id {
				return nil, nil, false
			}
			resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
			for _, t := range req.Topics {
				rt := kmsg.NewOffsetCommitResponseTopic()
				rt.Topic = t.Topic
				for _, p := range t.Partitions {
					rp := kmsg.NewOffsetCommitResponseTopicPartition()
					rp.Partition, rp.ErrorCode = p.Partition, kerr.UnknownMemberID.Code
					rt.Partitions = append(rt.Partitions, rp)
				}
				resp.Topics = append(resp.Topics, rt)
			}
			return resp, nil, true
		})
	}

	stop, drain := context.WithCancel(ctx)
	defer drain()
	members := make([]*stats, cfg.members)
	errs := make([]error, cfg.members)
	var wg sync.WaitGroup
	for i := range members {
		members[i] = &stats{}
		wg.Go(func() {
			after := 0 // never
			if crash && i == 0 {
				after = crashAfter(cfg.n, cfg.members)
			}
			errs[i] = member(ctx, stop, cfg.brokers, db, i, members[i], after, &crashedID)
		})
	}
	exited := make(chan struct{}) // closed when every member has stopped
	go func() { wg.Wait(); close(exited) }()
	if cluster != nil {
		// The orders come once every member owns partitions: else the
		// first member to join may store them all before the others (and
		// the crash) have a share.
		waitOwners(members, min(cfg.members, inProcessPartitions), exited)
		if err := produceOrders(ctx, cfg.brokers, cfg.n); err != nil {
			drain()
			<-exited
			return err
		}
	}
	adm, closeAdm, err := admin(cfg.brokers)
	if err != nil {
		return err
	}
	defer closeAdm()
	// Done when every order is stored and the group's offsets are
	// committed to the end, or when no member is left to store the rest
	// (each crashed or failed); then the members drain and leave. (Stored
	// is not enough: a commit refused during a rebalance leaves records to
	// their partition's next owner, which stores them again, a duplicate
	// the database ignores, and commits them. A member that drained first
	// would take nothing more.)
	for waiting := true; waiting; {
		var rows int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders`).Scan(&rows); err != nil {
			return err
		}
		if rows == cfg.n {
			done, err := committedToEnd(ctx, adm)
			if err != nil {
				return err
			}
			if done {
				break
			}
		}
		select {
		case <-exited:
			waiting = false
		case <-time.After(50 * time.Millisecond):
		}
	}
	drain()
	<-exited
	for i, err := range errs {
		if err != nil && !(members[i].crashed.Load() && errors.Is(err, context.Canceled)) {
			return fmt.Errorf("member %d: %w", i, err)
		}
	}

	parts, err := partitions(ctx, cfg.brokers)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%d orders on %d partitions, %d members\n", cfg.n, parts, cfg.members)
	for i, st := range members {
		state := "drained"
		if st.crashed.Load() {
			state = "crashed mid-run"
		}
		fmt.Fprintf(out, "member %d: inserted %d, ignored %d duplicates, %s\n", i, st.inserted.Load(), st.duplicates.Load(), state)
	}
	var rows, distinct int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT id) FROM orders`).Scan(&rows, &distinct); err != nil {
		return err
	}
	committed, err := committedToEnd(ctx, adm)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "database: %d rows, %d distinct orders; offsets committed to the end: %v; every record committed exactly once: %v\n",
		rows, distinct, committed, rows == cfg.n && distinct == cfg.n && committed)
	if distinct != cfg.n {
		return fmt.Errorf("%d of %d orders stored: no member was left to store the rest", distinct, cfg.n)
	}
	return nil
}

// crashAfter is how many orders the crashing member stores before it
// dies: 500, or a share of n small enough that it gets that many when the
// members split n orders (at least one).
func crashAfter(n, members int) int { return max(1, min(500, n/(2*members))) }

// member runs the pipeline as one member of the group until stop is done.
// A crashing member (crashAfter > 0) dies once it stored crashAfter orders:
// from then on its commits are refused, and it stops without draining.
func member(ctx, stop context.Context, brokers []string, db *sql.DB, id int, st *stats, crashAfter int, crashedID *atomic.Value) error {
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	var memberID atomic.Value
	opts := []kafka.Option{kafka.CommitInterval(200 * time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
		switch e.Kind {
		case kafka.Assigned:
			memberID.Store(e.Member)
			st.owned.Add(partitionCount(e.Partitions))
		case kafka.Revoked, kafka.Lost:
			st.owned.Add(-partitionCount(e.Partitions))
		}
	})}
	kopts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.SessionTimeout(2 * time.Second), kgo.HeartbeatInterval(200 * time.Millisecond), kgo.FetchMaxWait(200 * time.Millisecond)}
	orders := kafka.Source(kopts, func(r *kgo.Record) (Order, error) {
		var o Order
		err := json.Unmarshal(r.Value, &o)
		return o, err
	}, opts...)
	checked := stage.Map(stage.Until(orders, stop), func(_ context.Context, r kafka.Record[Order]) (Order, error) {
		if r.Value.Cents < 0 {
			return Order{}, fmt.Errorf("order %d: negative amount", r.Value.ID)
		}
		return r.Value, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[Order]), stage.Buffer(200))
	return sink.ForEach(ctx, stage.Batch(checked, 100, 20*time.Millisecond), func(ctx context.Context, batch []Order) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for _, o := range batch {
			res, err := tx.ExecContext(ctx, `INSERT INTO orders (id, customer, cents, member) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, o.ID, o.Customer, o.Cents, id)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				st.inserted.Add(1)
			} else {
				st.duplicates.Add(1)
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		if crashAfter > 0 && st.inserted.Load() >= int64(crashAfter) && !st.crashed.Load() {
			st.crashed.Store(true)
			crashedID.Store(memberID.Load()) // its commits stop landing
			abort()                          // and it dies
		}
		return nil
	})
}

// produceOrders writes n orders keyed by customer.
func produceOrders(ctx context.Context, brokers []string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
	if err != nil {
		return err
	}
	defer cl.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var perr error
	for i := range n {
		o := Order{ID: i, Customer: i % 97, Cents: 100 + i%5000}
		v, _ := json.Marshal(o)
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "customer-%d", o.Customer), Value: v}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				perr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return perr
}

// partitions is how many partitions the topic has.
func partitions(ctx context.Context, brokers []string) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return 0, err
	}
	return len(topics[topic].Partitions), nil
}

// admin is an admin client of the cluster, and the function that closes it.
func admin(brokers []string) (*kadm.Client, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// committedToEnd reports whether the group's committed offsets have
// reached the topic's end offsets on every partition; a partition with
// nothing to consume (its start offset is its end) needs no commit.
func committedToEnd(ctx context.Context, adm *kadm.Client) (bool, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return false, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, err
	}
	all := true
	ends.Each(func(e kadm.ListedOffset) {
		c, ok := committed.Lookup(e.Topic, e.Partition)
		if !ok {
			// No commit: done only if the partition holds nothing to
			// consume (no order was keyed to it), which no member commits.
			s, known := starts.Lookup(e.Topic, e.Partition)
			if !known || s.Offset != e.Offset {
				all = false
			}
			return
		}
		if c.At != e.Offset {
			all = false
		}
	})
	return all, nil
}
