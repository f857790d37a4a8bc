package main

// Review 13: the README's "When one machine is not enough" snippet, as
// written, run against a NATS server in the process: every job that
// decodes is stored, the one that does not reaches the dead-letter subject
// (Term, after publishing), and the stream and consumer end empty.

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

type r13Row struct{ ID int }

// r13NatsSnippet is the README's snippet; the rest is its scaffolding.
func r13NatsSnippet(ctx, stop context.Context, js jetstream.JetStream,
	decode func([]byte) (Job, error),
	transform func(context.Context, natsjs.Msg[Job]) (r13Row, error),
	insertOnConflictDoNothing func(context.Context, []r13Row) error) error {
	cons, _ := js.Consumer(ctx, "JOBS", "loaders") // durable pull consumer, AckExplicit
	jobs := natsjs.Source(cons, decode, natsjs.DeadLetter(js, "dlq.jobs"))
	rows := stage.Map(stage.Until(jobs, stop), transform, stage.Workers(4))
	err := sink.ForEach(ctx, stage.Batch(rows, 50, 20*time.Millisecond), insertOnConflictDoNothing)
	return err
}

func TestReview13ReadmeNatsSnippet(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(t.TempDir(), "nats"), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) { // hang watchdog
		t.Fatal("no server")
	}
	defer srv.WaitForShutdown()
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang watchdog
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq.jobs"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "JOBS", jetstream.ConsumerConfig{Durable: "loaders", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxDeliver: 3}); err != nil {
		t.Fatal(err)
	}
	const n = 120
	for i := range n {
		data, _ := json.Marshal(Job{ID: i, Text: fmt.Sprint(i)})
		if i == 17 {
			data = []byte("not json")
		}
		if _, err := js.Publish(ctx, "jobs", data); err != nil {
			t.Fatal(err)
		}
	}
	stop, drain := context.WithCancel(ctx)
	defer drain()
	var mu sync.Mutex
	stored := map[int]int{}
	decode := func(b []byte) (Job, error) {
		var j Job
		return j, json.Unmarshal(b, &j)
	}
	transform := func(_ context.Context, m natsjs.Msg[Job]) (r13Row, error) { return r13Row{m.Value.ID}, nil }
	insert := func(_ context.Context, rows []r13Row) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rows {
			stored[r.ID]++
		}
		if len(stored) == n-1 {
			drain()
		}
		return nil
	}
	if err := r13NatsSnippet(ctx, stop, js, decode, transform, insert); err != nil {
		t.Fatalf("the snippet returned %v", err)
	}
	for id := range n {
		if c := stored[id]; (id == 17) != (c == 0) || c > 1 {
			t.Errorf("job %d stored %d times", id, c)
		}
	}
	// The dead letter, with its reason; the stream and consumer end empty
	// (polled: acknowledgements reach the server in their own time).
	dlq, err := js.Stream(ctx, "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := dlq.GetMsg(ctx, 1)
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if string(msg.Data) != "not json" || msg.Header.Get("Sluice-Reason") == "" {
		t.Errorf("dead letter %q, headers %v", msg.Data, msg.Header)
	}
	for {
		c, err := js.Consumer(ctx, "JOBS", "loaders")
		if err != nil {
			t.Fatal(err)
		}
		ci, err := c.Info(ctx)
		if err != nil {
			t.Fatalf("consumer never emptied: %v", err)
		}
		s, err := js.Stream(ctx, "JOBS")
		if err != nil {
			t.Fatal(err)
		}
		si, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ci.NumPending == 0 && ci.NumAckPending == 0 && si.State.Msgs == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stream and consumer never emptied: %d pending, %d ack pending, %d msgs", ci.NumPending, ci.NumAckPending, si.State.Msgs)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
