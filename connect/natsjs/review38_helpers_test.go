package natsjs_test

import (
	"bytes"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// r38Watchdog bounds every wait of the review-38 tests: a hang detector,
// never a duration a verdict depends on.
const r38Watchdog = 60 * time.Second

// r38Gid is the calling goroutine's id.
func r38Gid() int64 {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	f := bytes.Fields(b[:n])
	id, _ := strconv.ParseInt(string(f[1]), 10, 64)
	return id
}

// r38Recv waits for c, or fails the test after the watchdog.
func r38Recv[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(r38Watchdog):
		t.Fatalf("hang: gave up after %v waiting for %s", r38Watchdog, what)
		panic("unreachable")
	}
}

// r38WaitFor polls cond, or fails the test after the watchdog.
func r38WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(r38Watchdog)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("hang: gave up after %v waiting for %s", r38Watchdog, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// r38Watch counts the occurrences of a byte pattern in what a connection
// reads (only its read loop calls Read).
type r38Watch struct {
	pat  []byte
	n    atomic.Int64
	tail []byte
}

type r38Dialer struct{ w *r38Watch }

func (d r38Dialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &r38Conn{Conn: c, w: d.w}, nil
}

type r38Conn struct {
	net.Conn
	w *r38Watch
}

func (c *r38Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		w := c.w
		buf := append(w.tail, p[:n]...)
		w.n.Add(int64(bytes.Count(buf, w.pat)))
		keep := min(len(w.pat)-1, len(buf))
		w.tail = append(w.tail[:0], buf[len(buf)-keep:]...)
	}
	return n, err
}

// r38WatchConnect connects with the connection's reads watched for pat.
func r38WatchConnect(t *testing.T, url, pat string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream, *r38Watch) {
	t.Helper()
	w := &r38Watch{pat: []byte(pat)}
	nc, js := connect(t, url, append(opts, nats.SetCustomDialer(r38Dialer{w}))...)
	return nc, js, w
}

// r38Cons is a user's wrapper of a consumer (Source takes any
// jetstream.Consumer): its subscriptions' Next calls go through hook,
// which calls next (the real Next) and may look at what it returned, or
// order it against the test's events.
type r38Cons struct {
	jetstream.Consumer
	hook func(next func() (jetstream.Msg, error)) (jetstream.Msg, error)
}

func (c *r38Cons) Messages(opts ...jetstream.PullMessagesOpt) (jetstream.MessagesContext, error) {
	it, err := c.Consumer.Messages(opts...)
	if err != nil {
		return nil, err
	}
	return &r38Iter{MessagesContext: it, c: c}, nil
}

type r38Iter struct {
	jetstream.MessagesContext
	c *r38Cons
}

func (it *r38Iter) Next(opts ...jetstream.NextOpt) (jetstream.Msg, error) {
	if it.c.hook == nil {
		return it.MessagesContext.Next(opts...)
	}
	return it.c.hook(func() (jetstream.Msg, error) { return it.MessagesContext.Next(opts...) })
}

// r38Once is a latch closed once.
type r38Once struct {
	once sync.Once
	ch   chan struct{}
}

func newR38Once() *r38Once { return &r38Once{ch: make(chan struct{})} }
func (o *r38Once) fire()   { o.once.Do(func() { close(o.ch) }) }

// after is time.After, for watchdogs only.
func after(d time.Duration) <-chan time.Time { return time.After(d) }
