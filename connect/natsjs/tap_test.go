package natsjs_test

import (
	"bytes"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// tap counts the JetStream messages a connection has received: each
// delivery's MSG or HMSG line carries a reply subject "$JS.ACK.…", and
// nothing else a test's connection receives does (heartbeats and other
// status messages have no reply subject; API replies and publish acks are
// JSON without it; payloads in these tests are short values).
//
// Why tests need it: the server counts a delivery (ConsumerInfo.Delivered,
// NumAckPending) before its send queue writes the message to the
// connection, and drops one still queued when the subscription goes. A
// test that stops a run to see what it does with the messages it holds
// must first wait until the run's client has them all, or a message the
// run never saw waits out AckWait and the test fails by watchdog, more
// often the more loaded the machine (the Source doc states this edge).
type tap struct{ n atomic.Int64 }

// received is how many JetStream deliveries the connection has read.
func (tp *tap) received() int64 { return tp.n.Load() }

var jsAckPrefix = []byte("$JS.ACK.")

// tapConnect is connect with the connection's reads counted by a tap.
func tapConnect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream, *tap) {
	t.Helper()
	tp := &tap{}
	nc, js := connect(t, url, nats.SetCustomDialer(tapDialer{tp}))
	return nc, js, tp
}

type tapDialer struct{ tp *tap }

func (d tapDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: c, tp: d.tp}, nil
}

// tapConn counts the prefix in what it reads. Only the connection's read
// loop calls Read, so tail (the end of the last read, where a prefix split
// across two reads begins) needs no lock.
type tapConn struct {
	net.Conn
	tp   *tap
	tail []byte
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		buf := append(c.tail, p[:n]...)
		c.tp.n.Add(int64(bytes.Count(buf, jsAckPrefix)))
		keep := min(len(jsAckPrefix)-1, len(buf)) // too short to hold a whole prefix: never counted twice
		c.tail = append(c.tail[:0], buf[len(buf)-keep:]...)
	}
	return n, err
}

// waitReceived waits until the tap has read at least as many deliveries as
// the consumer's Delivered count, read twice alike (the server delivers no
// more meanwhile). It is for a test whose run is the consumer's only client.
func waitReceived(t *testing.T, tp *tap, info func() *jetstream.ConsumerInfo) {
	t.Helper()
	waitFor(t, "the run's client to receive every message the server delivered", func() bool {
		d := info().Delivered.Consumer
		return uint64(tp.received()) >= d && info().Delivered.Consumer == d
	})
}

// The tap counts every delivery once, also when a read splits a line or
// holds many, and nothing else: not the consumer-info reply, not the
// publish acks, not a fetch's end-of-batch status.
func TestTapCountsDeliveries(t *testing.T) {
	_, js, tp := tapConnect(t, startServer(t))
	cons := rvSetup(t, js, "TAP", time.Hour, 0)
	const n = 500
	for i := range n {
		rvPub(t, js, "TAP.job", strconv.Itoa(i))
	}
	rvInfo(t, cons)
	if got := tp.received(); got != 0 {
		t.Fatalf("the tap counted %d before any delivery", got)
	}
	got := 0
	for got < n {
		batch, err := cons.Fetch(5, jetstream.FetchMaxWait(30*time.Second)) // a watchdog: the messages are there
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			got++
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if r := tp.received(); r != int64(got) {
			t.Fatalf("%d received, the tap counted %d", got, r)
		}
	}
}
