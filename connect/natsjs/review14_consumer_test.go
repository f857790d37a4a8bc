package natsjs_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Source: "An error of the consumer ends the run with a *stage.SourceError."
// The consumer is deleted while the run waits for messages: the run must end
// (not wait for ever) with a *stage.SourceError.
func TestReview14ConsumerDeletedMidRunEndsTheRun(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang bound
	defer cancel()
	got := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(ctx, natsjs.Source(w.cons, r14Str), func(context.Context, natsjs.Msg[string]) error {
			close(got)
			return nil
		})
	}()
	<-got
	if err := w.js.DeleteConsumer(context.Background(), "WORK", "c"); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a *stage.SourceError", err)
	}
	t.Logf("run: %v", err)
}

// Source: "a consumer or stream that does not exist then ... ends the run at
// once with a *stage.SourceError and nothing taken" -- errors.Is with
// jetstream.ErrConsumerNotFound.
func TestReview14ConsumerGoneBeforeTheRun(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "a")
	if err := w.js.DeleteConsumer(context.Background(), "WORK", "c"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := sink.ForEach(ctx, natsjs.Source(w.cons, r14Str), func(context.Context, natsjs.Msg[string]) error {
		t.Error("took a message")
		return nil
	})
	var se *stage.SourceError
	if !errors.As(err, &se) || !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("err = %v", err)
	}
}

// Msg: Subject, Sequence, Deliveries ("1 on the first delivery") and ID ("its
// Nats-Msg-Id header, if it has one").
func TestReview14MsgMetadata(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	for i := range 3 {
		m := &nats.Msg{Subject: "w.s" + strconv.Itoa(i), Data: []byte(strconv.Itoa(i))}
		var opts []jetstream.PublishOpt
		if i != 1 {
			opts = append(opts, jetstream.WithMsgID("id-"+strconv.Itoa(i)))
		}
		if _, err := w.js.PublishMsg(context.Background(), m, opts...); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var got []natsjs.Msg[string]
	err := sink.ForEach(ctx, natsjs.Source(w.cons, r14Str), func(_ context.Context, m natsjs.Msg[string]) error {
		got = append(got, m)
		if len(got) == 3 {
			return stage.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range got {
		i, _ := strconv.Atoi(m.Value)
		wantID := "id-" + m.Value
		if i == 1 {
			wantID = ""
		}
		if m.Subject != "w.s"+m.Value || m.Sequence != uint64(i+1) || m.Deliveries != 1 || m.ID != wantID {
			t.Errorf("msg %+v", m)
		}
	}
}

// Source: "A message that decode rejects is terminated (and dead-lettered)
// at once and never enters the pipeline".
func TestReview14RejectedByDecodeNeverEntersThePipeline(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "1", "bad", "2")
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	decode := func(b []byte) (int, error) { return strconv.Atoi(string(b)) }
	seen := 0
	err := sink.ForEach(ctx, stage.Until(natsjs.Source(w.cons, decode, natsjs.DeadLetter(w.js, "dlq")), stop), func(_ context.Context, m natsjs.Msg[int]) error {
		if m.Value != 1 && m.Value != 2 {
			t.Errorf("got %+v", m)
		}
		if seen++; seen == 2 {
			drain()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r14WaitFor(t, "the dead letter", func() bool { return w.streamMsgs(t, "DLQ") == 1 })
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
	dl := w.dlq(t)[0]
	if string(dl.Data) != "bad" || dl.Header.Get("Sluice-Stream-Seq") != "2" || dl.Header.Get("Sluice-Deliveries") != "1" {
		t.Fatalf("dead letter %q %v", dl.Data, dl.Header)
	}
}

// Outcomes: "a FailFast error at this message: Nak"; on its last allowed
// delivery: Term to the dead-letter subject. Two runs, each failing at the
// message with the sink's error; MaxDeliver 2.
func TestReview14FailFastAtTheLastDeliveryDeadLetters(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 2})
	w.pub(t, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := natsjs.Source(w.cons, r14Str, natsjs.DeadLetter(w.js, "dlq"), natsjs.Backoff(time.Millisecond, time.Millisecond))
	for run := 1; run <= 2; run++ {
		err := sink.ForEach(ctx, src, func(_ context.Context, m natsjs.Msg[string]) error {
			if m.Deliveries != uint64(run) {
				t.Errorf("run %d: delivery %d", run, m.Deliveries)
			}
			return errors.New("commit failed")
		})
		var se *stage.Error
		if !errors.As(err, &se) {
			t.Fatalf("run %d: %v", run, err)
		}
	}
	r14WaitFor(t, "the dead letter", func() bool { return w.streamMsgs(t, "DLQ") == 1 })
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
	if dl := w.dlq(t)[0]; dl.Header.Get("Sluice-Deliveries") != "2" {
		t.Fatalf("headers %v", dl.Header)
	}
}

// Consumer settings: MaxAckPending below the read-ahead only starves other
// replicas; one replica must still get through all the work, as its
// acknowledgements free places.
func TestReview14MaxAckPendingBelowReadAheadStillMakesProgress(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxAckPending: 2})
	all := w.pubN(t, 30)
	seen := r14Collect(t, w.cons, func(s *r14Seen) bool { return len(s.snapshot()) == len(all) }, natsjs.ReadAhead(50))
	for v, d := range seen.snapshot() {
		if len(d) != 1 {
			t.Fatalf("%q seen %d times", v, len(d))
		}
	}
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// Source: "If the server cannot be asked then (the ask gives up after the
// JetStream context's default timeout, 5 s unless set, or when the run's
// context ends), the run goes on and waits for it." A run that starts while
// the server is down gets the work once the server is back.
func TestReview14RunStartedDuringAnOutageWaitsForTheServer(t *testing.T) {
	dir := t.TempDir()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true}
	s1, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s1.Start()
	if !s1.ReadyForConnections(10 * time.Second) {
		t.Fatal("server did not start")
	}
	port := s1.Addr().(*net.TCPAddr).Port
	nc, js := connect(t, s1.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"w.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "WORK", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s1.Shutdown()
	s1.WaitForShutdown()
	r14WaitFor(t, "the connection to notice", func() bool { return !nc.IsConnected() })

	runCtx, cancel := context.WithTimeout(ctx, 90*time.Second) // a hang bound
	defer cancel()
	errc := make(chan error, 1)
	var got string
	go func() {
		errc <- sink.ForEach(runCtx, natsjs.Source(cons, r14Str), func(_ context.Context, m natsjs.Msg[string]) error {
			got = m.Value
			return stage.ErrStop
		})
	}()
	time.Sleep(500 * time.Millisecond) // let the run start asking; no verdict depends on it

	o2 := *opts
	o2.Port = port
	s2, err := server.NewServer(&o2)
	if err != nil {
		t.Fatal(err)
	}
	go s2.Start()
	t.Cleanup(func() { s2.Shutdown(); s2.WaitForShutdown() })
	if !s2.ReadyForConnections(10 * time.Second) {
		t.Fatal("server did not restart")
	}
	r14WaitFor(t, "the reconnection", nc.IsConnected)
	r14WaitFor(t, "JetStream to come back", func() bool {
		_, err := js.Publish(ctx, "w.x", []byte("after"))
		return err == nil
	})
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
	if got != "after" {
		t.Fatalf("got %q", got)
	}
}
