// Command distributed runs one sluice pipeline as K replicas that share a
// NATS JetStream work queue, and loads the results into SQLite with an
// idempotent insert. It starts a NATS server in the process (or connects to
// -nats URL), publishes -n jobs, starts the replicas as goroutines, each
// with its own connection, and crashes one of them mid-run (its connection
// drops, nothing it took is acknowledged): the others pick its work up once
// the consumer's AckWait has passed, and the database ignores what was
// already inserted. It prints what each replica did.
//
//	go -C examples run ./distributed
//	go -C examples run ./distributed -replicas 4 -n 5000 -crash=false
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

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

type config struct {
	url      string // "": start a server in the process
	n        int
	replicas int
	crash    bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.url, "nats", "", "NATS server URL (default: start one in the process)")
	flag.IntVar(&cfg.n, "n", 2000, "jobs to publish")
	flag.IntVar(&cfg.replicas, "replicas", 3, "replicas of the pipeline")
	flag.BoolVar(&cfg.crash, "crash", true, "crash replica 0 mid-run, once it stored min(200, n/(2×replicas)) jobs (needs -replicas 2 or more)")
	flag.Parse()
	if cfg.crash && cfg.replicas < 2 {
		fmt.Fprintln(os.Stderr, "distributed: -crash needs -replicas 2 or more: a lone replica's crash would leave its jobs to nobody (add -crash=false)")
		os.Exit(2)
	}
	if err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "distributed:", err)
		os.Exit(1)
	}
}

// Job is a unit of work; Result is what the pipeline stores for it.
type Job struct {
	ID   int    `json:"id"`
	Text string `json:"text"`
}

type stats struct {
	inserted, duplicates atomic.Int64
	crashed              bool
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.replicas < 1 || cfg.n < 0 {
		return fmt.Errorf("-replicas %d -n %d: want 1 replica or more and 0 jobs or more", cfg.replicas, cfg.n)
	}
	dir, err := os.MkdirTemp("", "sluice-distributed")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if cfg.url == "" {
		srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "nats"), NoLog: true, NoSigs: true})
		if err != nil {
			return err
		}
		go srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			return errors.New("the NATS server did not start")
		}
		defer srv.WaitForShutdown()
		defer srv.Shutdown()
		cfg.url = srv.ClientURL()
	}
	nc, err := nats.Connect(cfg.url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := publishJobs(ctx, js, cfg.n); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "results.sqlite"))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE results (id INTEGER PRIMARY KEY, upper TEXT NOT NULL, replica INTEGER NOT NULL)`); err != nil {
		return err
	}

	stop, drain := context.WithCancel(ctx)
	defer drain()
	replicas := make([]*stats, cfg.replicas)
	errs := make([]error, cfg.replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		replicas[i] = &stats{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			after := 0 // never
			if cfg.crash && i == 0 {
				after = crashAfter(cfg.n, cfg.replicas)
			}
			errs[i] = replica(ctx, stop, cfg.url, db, i, replicas[i], after)
		}()
	}
	exited := make(chan struct{}) // closed when every replica has stopped
	go func() { wg.Wait(); close(exited) }()
	// Wait until every job is in the database and acknowledged, or until no
	// replica is left to do it (each crashed or failed); then drain.
	for waiting := true; waiting; {
		var rows int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM results`).Scan(&rows); err != nil {
			return err
		}
		c, err := js.Consumer(ctx, "JOBS", "loaders")
		if err != nil {
			return err
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if rows == cfg.n && ci.NumPending == 0 && ci.NumAckPending == 0 {
			break
		}
		select {
		case <-exited:
			waiting = false
		case <-time.After(20 * time.Millisecond):
		}
	}
	drain()
	<-exited

	fmt.Fprintf(out, "%d jobs, %d replicas\n", cfg.n, cfg.replicas)
	for i, r := range replicas {
		state := "drained"
		if r.crashed {
			state = "crashed mid-run"
		} else if errs[i] != nil {
			return fmt.Errorf("replica %d: %w", i, errs[i])
		}
		fmt.Fprintf(out, "replica %d: inserted %d, ignored %d duplicates, %s\n", i, r.inserted.Load(), r.duplicates.Load(), state)
	}
	var rows, distinct int
	db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT id) FROM results`).Scan(&rows, &distinct)
	fmt.Fprintf(out, "database: %d rows, %d distinct jobs: every job exactly once: %v\n", rows, distinct, rows == cfg.n && distinct == cfg.n)
	if distinct != cfg.n {
		return fmt.Errorf("%d of %d jobs stored: no replica was left to take the rest", distinct, cfg.n)
	}
	return nil
}

// publishJobs (re)creates the work queue and its consumer and publishes n
// jobs.
func publishJobs(ctx context.Context, js jetstream.JetStream, n int) error {
	// A rerun against the same server starts afresh: the stream is kept and
	// purged, its consumer deleted and made again (deleting and re-creating
	// the stream races the server's removal of the deleted stream's
	// directory, which can refuse the new one).
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		return err
	}
	if err := stream.DeleteConsumer(ctx, "loaders"); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	if err := stream.Purge(ctx); err != nil {
		return err
	}
	_, err = js.CreateOrUpdateConsumer(ctx, "JOBS", jetstream.ConsumerConfig{
		Durable:       "loaders",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       2 * time.Second, // a crashed replica's jobs wait this long
		MaxDeliver:    5,
		MaxAckPending: 512, // > replicas × (workers + batch size)
	})
	if err != nil {
		return err
	}
	words := strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima")
	for i := range n {
		data, _ := json.Marshal(Job{ID: i, Text: fmt.Sprintf("%s-%d", words[i%len(words)], i)})
		if _, err := js.Publish(ctx, "jobs", data); err != nil {
			return err
		}
	}
	return nil
}

// crashAfter is how many jobs the crashing replica stores before it
// crashes: 200, or a share of n small enough that it gets that many when
// the replicas split n jobs (at least one).
func crashAfter(n, replicas int) int { return max(1, min(200, n/(2*replicas))) }

// replica is one copy of the pipeline: jobs from the shared consumer,
// transformed on 4 workers, inserted in batches of 50 with
// INSERT … ON CONFLICT DO NOTHING, so that a job redelivered after a crash
// is not stored twice. A crashing replica (crashAfter > 0) drops its
// connection once it stored crashAfter jobs, without acknowledging what it
// holds.
func replica(ctx, stop context.Context, url string, db *sql.DB, id int, st *stats, crashAfter int) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.Consumer(ctx, "JOBS", "loaders")
	if err != nil {
		return err
	}
	ctx, abort := context.WithCancel(ctx)
	defer abort()
	jobs := natsjs.Source(cons, func(b []byte) (Job, error) {
		var j Job
		return j, json.Unmarshal(b, &j)
	})
	upper := stage.Map(stage.Until(jobs, stop), func(_ context.Context, m natsjs.Msg[Job]) (Job, error) {
		return Job{ID: m.Value.ID, Text: strings.ToUpper(m.Value.Text)}, nil
	}, stage.Workers(4))
	return sink.ForEach(ctx, stage.Batch(upper, 50, 20*time.Millisecond), func(ctx context.Context, batch []Job) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for _, j := range batch {
			res, err := tx.ExecContext(ctx, `INSERT INTO results (id, upper, replica) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`, j.ID, j.Text, id)
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
		if crashAfter > 0 && st.inserted.Load() >= int64(crashAfter) { // crash: no drain, no acks
			st.crashed = true
			nc.Close()
			abort()
		}
		return nil
	})
}
