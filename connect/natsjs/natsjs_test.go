package natsjs_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

const replicaEnv = "SLUICE_NATSJS_REPLICA"

func TestMain(m *testing.M) {
	if url := os.Getenv(replicaEnv); url != "" {
		os.Exit(replicaProcess(url)) // a child process of the multi-process test
	}
	goleak.VerifyTestMain(m)
}

// startServer runs a real NATS server with JetStream on loopback, inside
// the test, and returns its URL.
func startServer(t testing.TB) string {
	t.Helper()
	return startServerWith(t, server.Options{})
}

// startServerWith is startServer with the options of opts beside its own
// (loopback, a free port, JetStream in a temporary directory, no log).
func startServerWith(t testing.TB, opts server.Options) string {
	t.Helper()
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, t.TempDir(), true, true
	s, err := server.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL()
}

// dialWait is the tests' connect timeout, a hang bound: the client's
// default (2 s) failed a test's setup when the machine stalled the process,
// and the in-process server with it, for longer than that.
var dialWait = nats.Timeout(30 * time.Second)

func connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{dialWait}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// job is the work message; a poison job fails every time it is processed.
type job struct {
	ID     int  `json:"id"`
	Poison bool `json:"poison,omitempty"`
}

type result struct {
	ID     int `json:"id"`
	Square int `json:"square"`
}

// setup makes the streams (WORK as a work queue, RESULTS with duplicate
// detection, DLQ), the shared consumer, and publishes the jobs: n good
// ones, poison poisoned ones, and garbage messages that do not decode.
func setup(t *testing.T, js jetstream.JetStream, n, poison, garbage int) {
	t.Helper()
	ctx := context.Background()
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "WORK", Subjects: []string{"work.>"}, Retention: jetstream.WorkQueuePolicy},
		{Name: "RESULTS", Subjects: []string{"results.>"}, Duplicates: 10 * time.Minute},
		{Name: "DLQ", Subjects: []string{"dlq.>"}},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	_, err := js.CreateOrUpdateConsumer(ctx, "WORK", jetstream.ConsumerConfig{
		Durable:       "workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       2 * time.Second, // how long a crashed replica's messages wait
		MaxDeliver:    3,
		MaxAckPending: 256,
	})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(i int, data []byte) {
		if _, err := js.Publish(ctx, fmt.Sprintf("work.%d", i), data, jetstream.WithMsgID(fmt.Sprintf("job-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n + poison {
		data, _ := json.Marshal(job{ID: i, Poison: i >= n})
		publish(i, data)
	}
	for i := range garbage {
		publish(n+poison+i, []byte("not json"))
	}
}

func decodeJob(b []byte) (job, error) {
	var j job
	err := json.Unmarshal(b, &j)
	return j, err
}

var errPoison = errors.New("poison")

// replica runs the pipeline once: jobs from the shared consumer, squared
// on 4 workers, published to RESULTS with the job's id as message id. stop
// drains it; cancelling ctx aborts it.
func replica(ctx, stop context.Context, js jetstream.JetStream, counts *natsjs.Published) error {
	cons, err := js.Consumer(ctx, "WORK", "workers")
	if err != nil {
		return err
	}
	src := natsjs.Source(cons, decodeJob, natsjs.DeadLetter(js, "dlq.work"), natsjs.Backoff(10*time.Millisecond, 50*time.Millisecond))
	squares := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[job]) (result, error) {
		if m.Value.Poison {
			return result{}, errPoison
		}
		return result{ID: m.Value.ID, Square: m.Value.ID * m.Value.ID}, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))
	return natsjs.Publish(ctx, js, squares, func(r result) (*nats.Msg, error) {
		m := nats.NewMsg(fmt.Sprintf("results.%d", r.ID))
		m.Data, _ = json.Marshal(r)
		return m, nil
	}, func(r result) string { return strconv.Itoa(r.ID) }, counts)
}

// waitFor polls until done reports true. It waits for progress and
// measures no duration; the deadline only turns a hang into a failure.
func waitFor(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settled reports whether RESULTS holds want messages, DLQ holds dead, and
// the consumer has nothing pending or unacknowledged.
func settled(t *testing.T, js jetstream.JetStream, want, dead uint64) func() bool {
	return func() bool {
		ctx := context.Background()
		res, err1 := js.Stream(ctx, "RESULTS")
		dlq, err2 := js.Stream(ctx, "DLQ")
		cons, err3 := js.Consumer(ctx, "WORK", "workers")
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		ri, _ := res.Info(ctx)
		di, _ := dlq.Info(ctx)
		ci, _ := cons.Info(ctx)
		return ri != nil && di != nil && ci != nil && ri.State.Msgs == want && di.State.Msgs == dead &&
			ci.NumPending == 0 && ci.NumAckPending == 0
	}
}

// checkExactlyOnce reads RESULTS and checks that every id 0..n-1 is there
// once, and that WORK is empty.
func checkExactlyOnce(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	ctx := context.Background()
	res, err := js.Stream(ctx, "RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	seen := make([]int, n)
	for seq := uint64(1); seq <= uint64(n); seq++ {
		m, err := res.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("RESULTS seq %d: %v", seq, err)
		}
		var r result
		if err := json.Unmarshal(m.Data, &r); err != nil || r.ID < 0 || r.ID >= n || r.Square != r.ID*r.ID {
			t.Fatalf("RESULTS seq %d: %q (%v)", seq, m.Data, err)
		}
		seen[r.ID]++
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("id %d stored %d times, want once", id, c)
		}
	}
	work, _ := js.Stream(ctx, "WORK")
	if wi, _ := work.Info(ctx); wi.State.Msgs != 0 {
		t.Fatalf("WORK still holds %d messages", wi.State.Msgs)
	}
}

func TestTwoReplicasShareTheWork(t *testing.T) {
	const n = 2000
	url := startServer(t)
	_, js := connect(t, url)
	setup(t, js, n, 0, 0)
	stop, drain := context.WithCancel(context.Background())
	var counts [2]natsjs.Published
	errs := make(chan error, 2)
	for i := range counts {
		_, rjs := connect(t, url)
		go func() { errs <- replica(context.Background(), stop, rjs, &counts[i]) }()
	}
	waitFor(t, "2000 results", settled(t, js, n, 0))
	drain()
	for range counts {
		if err := <-errs; err != nil {
			t.Fatalf("a replica returned %v after the drain, want nil", err)
		}
	}
	checkExactlyOnce(t, js, n)
	t.Logf("replica 0 stored %d (%d duplicates), replica 1 stored %d (%d duplicates)",
		counts[0].Stored.Load(), counts[0].Duplicates.Load(), counts[1].Stored.Load(), counts[1].Duplicates.Load())
	if counts[0].Stored.Load() == 0 || counts[1].Stored.Load() == 0 {
		t.Fatalf("one replica did all the work: %s, %s", pubCounts(&counts[0]), pubCounts(&counts[1]))
	}
}

func TestSurvivorFinishesAfterACrash(t *testing.T) {
	const n = 2000
	url := startServer(t)
	_, js := connect(t, url)
	setup(t, js, n, 0, 0)

	// Replica A crashes: its connection drops and its run is aborted, so
	// what it had taken is never acknowledged.
	ncA, jsA := connect(t, url)
	ctxA, crash := context.WithCancel(context.Background())
	var countsA, countsB natsjs.Published
	doneA := make(chan error, 1)
	go func() { doneA <- replica(ctxA, context.Background(), jsA, &countsA) }()

	stop, drain := context.WithCancel(context.Background())
	_, jsB := connect(t, url)
	doneB := make(chan error, 1)
	go func() { doneB <- replica(context.Background(), stop, jsB, &countsB) }()

	waitFor(t, "replica A to store 300", func() bool { return countsA.Stored.Load() >= 300 })
	ncA.Close()
	crash()
	if err := <-doneA; err == nil {
		t.Fatal("the crashed replica returned nil")
	}
	waitFor(t, "the survivor to finish", settled(t, js, n, 0))
	drain()
	if err := <-doneB; err != nil {
		t.Fatalf("the survivor returned %v", err)
	}
	checkExactlyOnce(t, js, n)
	t.Logf("A stored %d before it crashed; B stored %d and met %d duplicates", countsA.Stored.Load(), countsB.Stored.Load(), countsB.Duplicates.Load())
}

func TestPoisonReachesTheDeadLetterSubject(t *testing.T) {
	const n, poison, garbage = 200, 10, 3
	url := startServer(t)
	_, js := connect(t, url)
	setup(t, js, n, poison, garbage)
	stop, drain := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { errs <- replica(context.Background(), stop, js, nil) }()
	waitFor(t, "results and dead letters", settled(t, js, n, poison+garbage))
	drain()
	err := <-errs
	if !errors.Is(err, errPoison) {
		t.Fatalf("err = %v, want the forwarded poison errors", err)
	}
	checkExactlyOnce(t, js, n)

	ctx := context.Background()
	dlq, _ := js.Stream(ctx, "DLQ")
	reasons := map[string]int{}
	for seq := uint64(1); seq <= poison+garbage; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		reason := m.Header.Get("Sluice-Reason")
		switch {
		case strings.Contains(reason, "poison"):
			if m.Header.Get("Sluice-Deliveries") != "3" {
				t.Errorf("poison dead-lettered after %s deliveries, want 3 (MaxDeliver)", m.Header.Get("Sluice-Deliveries"))
			}
			reasons["poison"]++
		case strings.Contains(reason, "decode"):
			if m.Header.Get("Sluice-Deliveries") != "1" {
				t.Errorf("garbage dead-lettered after %s deliveries, want 1", m.Header.Get("Sluice-Deliveries"))
			}
			reasons["decode"]++
		}
	}
	if reasons["poison"] != poison || reasons["decode"] != garbage {
		t.Fatalf("dead letters by reason %v, want %d poison and %d decode", reasons, poison, garbage)
	}
}

// replicaProcess is a replica in a child process: it runs until SIGTERM
// (drain) and prints its progress.
func replicaProcess(url string) int {
	nc, err := nats.Connect(url, dialWait)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stop, _ := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	var counts natsjs.Published
	done := make(chan error, 1)
	go func() { done <- replica(context.Background(), stop, js, &counts) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			fmt.Printf("stored %d\n", counts.Stored.Load())
			if err != nil {
				fmt.Println("error:", err)
				return 1
			}
			return 0
		case <-tick.C:
			fmt.Printf("stored %d\n", counts.Stored.Load())
		}
	}
}

func TestKilledProcessLosesNothing(t *testing.T) {
	const n = 2000
	url := startServer(t)
	_, js := connect(t, url)
	setup(t, js, n, 0, 0)
	start := func() (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), replicaEnv+"="+url)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, bufio.NewScanner(out)
	}
	a, aOut := start()
	b, bOut := start()
	go func() { // B's output must be read, or B blocks
		for bOut.Scan() {
		}
	}()
	for aOut.Scan() {
		var stored int
		if _, err := fmt.Sscanf(aOut.Text(), "stored %d", &stored); err == nil && stored >= 200 {
			break
		}
	}
	if err := a.Process.Kill(); err != nil { // SIGKILL: no drain, no acks
		t.Fatal(err)
	}
	a.Wait()
	waitFor(t, "the surviving process to finish", settled(t, js, n, 0))
	b.Process.Signal(syscall.SIGTERM)
	if err := b.Wait(); err != nil {
		t.Fatalf("the survivor exited with %v after SIGTERM, want 0", err)
	}
	checkExactlyOnce(t, js, n)
}

func TestKeepAliveHoldsASlowItem(t *testing.T) {
	for _, keepAlive := range []bool{false, true} {
		t.Run(fmt.Sprint("keepAlive=", keepAlive), func(t *testing.T) {
			url := startServer(t)
			_, js := connect(t, url)
			ctx := context.Background()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "SLOW", Subjects: []string{"slow"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
				t.Fatal(err)
			}
			const ackWait, every = 500 * time.Millisecond, 100 * time.Millisecond
			cons, err := js.CreateOrUpdateConsumer(ctx, "SLOW", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait})
			if err != nil {
				t.Fatal(err)
			}
			stalls := runcheck.WatchStalls(t)
			if _, err := js.Publish(ctx, "slow", []byte(`{"id":1}`)); err != nil {
				t.Fatal(err)
			}
			var opts []natsjs.SourceOption
			if keepAlive {
				opts = append(opts, natsjs.KeepAlive(every))
			}
			// While the item is on its way, another replica asks for work:
			// without KeepAlive it gets the item again once AckWait has
			// passed (it waits for that: the 30 s are a hang bound); with
			// KeepAlive it asks for more than twice the AckWait, and the
			// in-progress acknowledgements keep the item from it.
			window := 30 * time.Second
			if keepAlive {
				window = 1200 * time.Millisecond
			}
			stop, drain := context.WithCancel(ctx)
			var redelivered bool
			err = stage.Run(ctx, stage.Until(natsjs.Source(cons, decodeJob, opts...), stop), func(_ context.Context, m natsjs.Msg[job], _ error) error {
				defer drain()
				other, err := cons.Next(jetstream.FetchMaxWait(window))
				if err == nil {
					redelivered = true
					other.Term()
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if keepAlive && redelivered && stalls.Excuse(ackWait-every) {
				// A stall, not the source, let AckWait pass: nothing checked.
				t.Skipf("the other replica got the item, but the process stalled for %v (AckWait %v, KeepAlive %v): not checked", stalls.Longest(), ackWait, every)
			}
			if redelivered == keepAlive {
				t.Fatalf("keepAlive=%v: the other replica got the item: %v", keepAlive, redelivered)
			}
		})
	}
}

func TestSourceRefusesAConsumerWithoutExplicitAcks(t *testing.T) {
	url := startServer(t)
	_, js := connect(t, url)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckNonePolicy})
	if err != nil {
		t.Fatal(err)
	}
	err = stage.Run(ctx, natsjs.Source(cons, decodeJob), func(context.Context, natsjs.Msg[job], error) error { return nil })
	var se *stage.SourceError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "AckPolicy") {
		t.Fatalf("err = %v, want a SourceError about the AckPolicy", err)
	}
}

func TestDeadLetterPublishFailureNaks(t *testing.T) {
	url := startServer(t)
	_, js := connect(t, url)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "W", Subjects: []string{"w"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "W", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "w", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	// No stream captures the dead-letter subject: the publish fails, and
	// the undecodable message must be nak'ed, not terminated (lost).
	var ackErrs atomic.Int64
	firstErr := make(chan error, 1)
	src := natsjs.Source(cons, decodeJob, natsjs.DeadLetter(js, "nowhere"), natsjs.Backoff(time.Hour, time.Hour),
		natsjs.OnAckError(func(err error) {
			if ackErrs.Add(1) == 1 {
				firstErr <- err
			}
		}))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- stage.Run(runCtx, src, func(context.Context, natsjs.Msg[job], error) error { return nil })
	}()
	waitFor(t, "the failed dead-letter publish", func() bool { return ackErrs.Load() > 0 })
	cancel()
	<-done
	// OnAckError: "when a dead letter's publish fails (with that error...)".
	if err := <-firstErr; !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("OnAckError got %v; want the dead letter's failed publish (no stream captures its subject)", err)
	}
	info, _ := js.Stream(ctx, "W")
	if si, _ := info.Info(ctx); si.State.Msgs != 1 {
		t.Fatalf("the stream holds %d messages, want the undecodable one kept for redelivery", si.State.Msgs)
	}
}
