package natsjs_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r14 is one test's world: a server, a connection, a work-queue stream WORK
// (subject "w.>"), a dead-letter stream DLQ (subject "dlq") and a durable
// consumer "c" on WORK.
type r14 struct {
	url  string
	nc   *nats.Conn
	js   jetstream.JetStream
	cons jetstream.Consumer
}

func r14World(t *testing.T, cfg jetstream.ConsumerConfig) *r14 {
	t.Helper()
	url := startServer(t)
	nc, js := connect(t, url)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"w.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DLQ", Subjects: []string{"dlq"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OUT", Subjects: []string{"out"}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	cfg.Durable = "c"
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	if cfg.AckWait == 0 {
		cfg.AckWait = time.Hour // nothing comes back by AckWait: only a Nak brings it back
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "WORK", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &r14{url: url, nc: nc, js: js, cons: cons}
}

func (w *r14) pub(t *testing.T, vals ...string) {
	t.Helper()
	for _, v := range vals {
		if _, err := w.js.Publish(context.Background(), "w.x", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
}

func (w *r14) pubN(t *testing.T, n int) []string {
	t.Helper()
	var vals []string
	for i := range n {
		vals = append(vals, strconv.Itoa(i))
	}
	w.pub(t, vals...)
	return vals
}

func (w *r14) streamMsgs(t *testing.T, name string) uint64 {
	t.Helper()
	s, err := w.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (w *r14) info(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	info, err := w.cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// dlq returns the dead letters stored so far.
func (w *r14) dlq(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := w.js.Stream(context.Background(), "DLQ")
	if err != nil {
		t.Fatal(err)
	}
	n := w.streamMsgs(t, "DLQ")
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); uint64(len(out)) < n && seq < n+100; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			continue
		}
		out = append(out, m)
	}
	return out
}

func r14Str(b []byte) (string, error) { return string(b), nil }

// r14Seen is what a collecting run received.
type r14Seen struct {
	mu   sync.Mutex
	vals map[string][]uint64 // value -> deliveries of each time it was seen
}

func (s *r14Seen) add(m natsjs.Msg[string]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vals == nil {
		s.vals = map[string][]uint64{}
	}
	s.vals[m.Value] = append(s.vals[m.Value], m.Deliveries)
}

func (s *r14Seen) has(v string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.vals[v]
	return ok
}

func (s *r14Seen) snapshot() map[string][]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]uint64{}
	for k, v := range s.vals {
		out[k] = append([]uint64(nil), v...)
	}
	return out
}

// collect runs a plain consuming pipeline over cons until done(seen) holds
// (then it drains) and returns what it saw. A hang is a failure.
func r14Collect(t *testing.T, cons jetstream.Consumer, done func(*r14Seen) bool, opts ...natsjs.SourceOption) *r14Seen {
	t.Helper()
	seen := &r14Seen{}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second) // a hang bound
	defer cancel()
	src := natsjs.Source(cons, r14Str, opts...)
	err := sink.ForEach(ctx, stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) error {
		seen.add(m)
		if done(seen) {
			drain()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("collecting run: %v (saw %v)", err, seen.snapshot())
	}
	return seen
}

// r14WaitFor polls cond; the deadline only turns a hang into a failure.
func r14WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
