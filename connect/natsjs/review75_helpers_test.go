package natsjs_test

// Review 75: shared helpers of the review-75 black-box tests. Every wait is
// ordered by a channel or by server state; durations are hang watchdogs only.

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// r75Watchdog turns a hang into a failure; no verdict depends on it.
const r75Watchdog = 90 * time.Second

var errR75 = errors.New("review75: boom")

// r75HangCtx is a run's context that ends only after the watchdog.
func r75HangCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r75Watchdog)
}

// r75Recv waits for c, or fails the test after the watchdog.
func r75Recv[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(r75Watchdog):
		t.Fatalf("hang: gave up waiting for %s", what)
		panic("unreachable")
	}
}

// r75Bump takes the one message of cons n times with a plain fetch and
// naks it without delay each time, so that the next delivery is its
// (n+1)-th. It returns the message's stream sequence.
func r75Bump(t *testing.T, cons jetstream.Consumer, n int) uint64 {
	t.Helper()
	var seq uint64
	for i := range n {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(r75Watchdog))
		if err != nil {
			t.Fatal(err)
		}
		var got jetstream.Msg
		for m := range b.Messages() {
			got = m
		}
		if got == nil {
			t.Fatalf("bump %d: no message (%v)", i, b.Error())
		}
		md, err := got.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if md.NumDelivered != uint64(i+1) {
			t.Fatalf("bump %d: delivery %d", i, md.NumDelivered)
		}
		seq = md.Sequence.Stream
		if err := got.Nak(); err != nil {
			t.Fatal(err)
		}
	}
	return seq
}

// r75JS is a user's wrapper of a JetStream context whose publishes go
// through hook (all four publish methods, so that whichever a sink uses is
// seen).
type r75JS struct {
	jetstream.JetStream
	hook func(ctx context.Context, m *nats.Msg, next func(context.Context, *nats.Msg) (*jetstream.PubAck, error)) (*jetstream.PubAck, error)

	inflight, maxInflight atomic.Int64
	asyncUsed             atomic.Bool
}

func (j *r75JS) enter() func() {
	n := j.inflight.Add(1)
	for {
		m := j.maxInflight.Load()
		if n <= m || j.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { j.inflight.Add(-1) }
}

func (j *r75JS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	defer j.enter()()
	next := func(ctx context.Context, m *nats.Msg) (*jetstream.PubAck, error) {
		return j.JetStream.PublishMsg(ctx, m, opts...)
	}
	if j.hook == nil {
		return next(ctx, m)
	}
	return j.hook(ctx, m, next)
}

func (j *r75JS) Publish(ctx context.Context, subj string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	m := nats.NewMsg(subj)
	m.Data = data
	return j.PublishMsg(ctx, m, opts...)
}

func (j *r75JS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	j.asyncUsed.Store(true)
	if j.hook != nil {
		if _, err := j.hook(context.Background(), m, func(context.Context, *nats.Msg) (*jetstream.PubAck, error) { return nil, nil }); err != nil {
			return nil, err
		}
	}
	return j.JetStream.PublishMsgAsync(m, opts...)
}

func (j *r75JS) PublishAsync(subj string, data []byte, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	m := nats.NewMsg(subj)
	m.Data = data
	return j.PublishMsgAsync(m, opts...)
}

// r75Gate is a latch closed once.
type r75Gate struct {
	once sync.Once
	ch   chan struct{}
}

func newR75Gate() *r75Gate            { return &r75Gate{ch: make(chan struct{})} }
func (g *r75Gate) open()              { g.once.Do(func() { close(g.ch) }) }
func (g *r75Gate) c() <-chan struct{} { return g.ch }

// r75UpdateConsumer replaces consumer "c"'s config (through the test's own
// handle, not the run's).
func r75UpdateConsumer(t *testing.T, js jetstream.JetStream, cfg jetstream.ConsumerConfig) {
	t.Helper()
	cfg.Durable = "c"
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	if cfg.AckWait == 0 {
		cfg.AckWait = time.Hour
	}
	if _, err := js.UpdateConsumer(context.Background(), "WORK", cfg); err != nil {
		t.Fatalf("update consumer to %+v: %v", cfg, err)
	}
}

// r75Writes counts the occurrences of pat in what a connection writes.
type r75Writes struct {
	pat  []byte
	mu   sync.Mutex
	tail []byte
	n    atomic.Int64
}

type r75WConn struct {
	net.Conn
	w *r75Writes
}

func (c *r75WConn) Write(p []byte) (int, error) {
	c.w.mu.Lock()
	buf := append(c.w.tail, p...)
	c.w.n.Add(int64(bytes.Count(buf, c.w.pat)))
	keep := min(len(c.w.pat)-1, len(buf))
	c.w.tail = append([]byte(nil), buf[len(buf)-keep:]...)
	c.w.mu.Unlock()
	return c.Conn.Write(p)
}

type r75WDialer struct{ w *r75Writes }

func (d r75WDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &r75WConn{Conn: c, w: d.w}, nil
}

func r75CountWrites(w *r75Writes) nats.Option { return nats.SetCustomDialer(r75WDialer{w}) }
