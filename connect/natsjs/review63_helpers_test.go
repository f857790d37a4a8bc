package natsjs_test

// Review 63: shared helpers. The source under test is a stage.Interruptible
// AckSource; these helpers let the tests decide everything by channels and
// server state, never by a duration: r63Watchdog only turns a hang into a
// failure.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r63Watchdog bounds every wait: a hang detector, never a duration a verdict
// depends on.
const r63Watchdog = 60 * time.Second

var errR63 = errors.New("review63: boom")

// r63WaitFor polls cond, or fails the test after the watchdog.
func r63WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := r63Poll(context.Background(), what, cond); err != nil {
		t.Fatal(err)
	}
}

// r63Poll polls cond until it holds, ctx ends or the watchdog fires; it may
// be called from any goroutine.
func r63Poll(ctx context.Context, what string, cond func() bool) error {
	deadline := time.Now().Add(r63Watchdog)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("hang: gave up after %v waiting for %s", r63Watchdog, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// r63Env is one test's world: r14World's server, streams (WORK "w.>",
// DLQ "dlq", OUT "out") and consumer "c", plus a connection of the run's own
// (src), whose reads are counted so that a test can wait until the run's
// client holds every message the server delivered to it.
type r63Env struct {
	*r14
	src     *nats.Conn
	srcJS   jetstream.JetStream
	srcCons jetstream.Consumer
	reads   *r63Reads
}

func r63New(t *testing.T, cfg jetstream.ConsumerConfig) *r63Env {
	t.Helper()
	w := r14World(t, cfg)
	rd := &r63Reads{}
	nc, js := connect(t, w.url, nats.SetCustomDialer(r63Dialer{rd}))
	cons, err := js.Consumer(context.Background(), "WORK", "c")
	if err != nil {
		t.Fatal(err)
	}
	return &r63Env{r14: w, src: nc, srcJS: js, srcCons: cons, reads: rd}
}

// r63Vals is "v0".."v(n-1)", offset by from.
func r63Vals(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "v" + strconv.Itoa(from+i)
	}
	return out
}

// count is the number of messages stream name holds (safe off the test
// goroutine).
func (e *r63Env) count(name string) (uint64, error) {
	st, err := e.state(name)
	return st.Msgs, err
}

// state is stream name's state (safe off the test goroutine).
func (e *r63Env) state(name string) (jetstream.StreamState, error) {
	s, err := e.js.Stream(context.Background(), name)
	if err != nil {
		return jetstream.StreamState{}, err
	}
	info, err := s.Info(context.Background())
	if err != nil {
		return jetstream.StreamState{}, err
	}
	return info.State, nil
}

// lastSeq is the sequence of the last message stream name stored (safe off
// the test goroutine).
func (e *r63Env) lastSeq(name string) (uint64, error) {
	st, err := e.state(name)
	return st.LastSeq, err
}

func (e *r63Env) cinfo() (*jetstream.ConsumerInfo, error) {
	return e.cons.Info(context.Background())
}

// waitWork waits until WORK holds want messages.
func (e *r63Env) waitWork(t *testing.T, want uint64, why string) {
	t.Helper()
	r63WaitFor(t, fmt.Sprintf("WORK to hold %d messages (%s)", want, why), func() bool {
		n, err := e.count("WORK")
		return err == nil && n == want
	})
}

// quiet waits until the server has nothing left to deliver and the run's
// connection has read every message the server delivered, read twice alike.
// Then stopping the run leaves no message on its way to the run (the Source
// doc's one exception to "nak'ed at once"). It may be called from any
// goroutine.
//
// "Nothing left" is the consumer's delivered stream sequence at WORK's last
// one, not NumPending 0 alone: the server counts a stored message into its
// consumer's NumPending only once the stream has signalled the consumer,
// after the publish was acknowledged, so right after a publish NumPending
// can read 0 for a message the consumer has not yet seen (one run in about
// 150 of TestReview63EndsWhileIdle/first_w8-buf4 ended before two such
// messages were delivered, and expected them settled).
func (e *r63Env) quiet(ctx context.Context) error {
	return r63Poll(ctx, "the run's client to receive everything", func() bool {
		last, err := e.lastSeq("WORK")
		if err != nil {
			return false
		}
		i, err := e.cinfo()
		if err != nil || i.NumPending != 0 || i.Delivered.Stream < last {
			return false
		}
		d := i.Delivered.Consumer
		if uint64(e.reads.n.Load()) < d {
			return false
		}
		j, err := e.cinfo()
		return err == nil && j.Delivered.Consumer == d && j.NumPending == 0
	})
}

// waiting waits until the run has a pull request waiting on the server
// (the source waits on an empty stream).
func (e *r63Env) waiting(t *testing.T) {
	t.Helper()
	r63WaitFor(t, "a pull request waiting on the server", func() bool {
		i, err := e.cinfo()
		return err == nil && i.NumWaiting > 0 && i.NumPending == 0
	})
}

// r63Reads counts the deliveries a connection read: each carries a reply
// subject "$JS.ACK.…".
type r63Reads struct{ n atomic.Int64 }

type r63Dialer struct{ rd *r63Reads }

func (d r63Dialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &r63Conn{Conn: c, rd: d.rd}, nil
}

var r63AckPrefix = []byte("$JS.ACK.")

type r63Conn struct {
	net.Conn
	rd   *r63Reads
	tail []byte
}

func (c *r63Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		buf := append(c.tail, p[:n]...)
		c.rd.n.Add(int64(bytes.Count(buf, r63AckPrefix)))
		keep := min(len(r63AckPrefix)-1, len(buf))
		c.tail = append(c.tail[:0], buf[len(buf)-keep:]...)
	}
	return n, err
}

// r63AckLog records every acknowledgement sent for WORK's messages, as a
// plain subscriber of "$JS.ACK.>" on a connection of its own sees them.
type r63AckLog struct {
	nc *nats.Conn
	ch chan *nats.Msg
	mu sync.Mutex
	by map[uint64][]string // stream sequence -> "ack", "nak", "term", "wpi"
	// delays holds each nak's delay (0 when it asks for none), by sequence.
	delays map[uint64][]time.Duration
}

func r63WatchAcks(t *testing.T, url string) *r63AckLog {
	t.Helper()
	nc, _ := connect(t, url)
	l := &r63AckLog{nc: nc, ch: make(chan *nats.Msg, 1<<16), by: map[uint64][]string{}, delays: map[uint64][]time.Duration{}}
	_, err := nc.ChanSubscribe("$JS.ACK.>", l.ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return l
}

// sync makes every acknowledgement that src wrote before the call visible
// in the log: src's flush puts them at the server before its PONG, the log's
// flush brings whatever the server routed to the log before its own PONG.
func (l *r63AckLog) sync(src *nats.Conn) error {
	if err := src.Flush(); err != nil {
		return err
	}
	if err := l.nc.Flush(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		select {
		case m := <-l.ch:
			l.add(m)
		default:
			return nil
		}
	}
}

func (l *r63AckLog) add(m *nats.Msg) {
	tok := strings.Split(m.Subject, ".")
	var stream, sseq string
	switch {
	case len(tok) == 9: // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>
		stream, sseq = tok[2], tok[5]
	case len(tok) >= 11: // $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>...
		stream, sseq = tok[4], tok[7]
	default:
		return
	}
	if stream != "WORK" {
		return
	}
	seq, err := strconv.ParseUint(sseq, 10, 64)
	if err != nil {
		return
	}
	body := string(m.Data)
	var kind string
	switch {
	case strings.HasPrefix(body, "+ACK"):
		kind = "ack"
	case strings.HasPrefix(body, "-NAK"):
		kind = "nak"
		var d struct {
			Delay time.Duration `json:"delay"`
		}
		if rest := strings.TrimSpace(strings.TrimPrefix(body, "-NAK")); rest != "" {
			if err := json.Unmarshal([]byte(rest), &d); err != nil {
				d.Delay = -1 // unparsable: no delay a test would expect
			}
		}
		l.delays[seq] = append(l.delays[seq], d.Delay)
	case strings.HasPrefix(body, "+TERM"):
		kind = "term"
	case strings.HasPrefix(body, "+WPI"):
		kind = "wpi"
	default:
		kind = "other:" + body
	}
	l.by[seq] = append(l.by[seq], kind)
}

// of returns the settlements of seq seen so far (wpi left out).
func (l *r63AckLog) of(seq uint64) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, k := range l.by[seq] {
		if k != "wpi" {
			out = append(out, k)
		}
	}
	return out
}

// nakDelays returns the delays of seq's naks seen so far.
func (l *r63AckLog) nakDelays(seq uint64) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Duration(nil), l.delays[seq]...)
}

// all returns a copy of the log (wpi left out).
func (l *r63AckLog) all() map[uint64][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[uint64][]string{}
	for s, ks := range l.by {
		for _, k := range ks {
			if k != "wpi" {
				out[s] = append(out[s], k)
			}
		}
	}
	return out
}

// r63Commits records what a sink committed (its callback returned nil or
// ErrStop for it).
type r63Commits struct {
	mu   sync.Mutex
	vals map[string]int
	seqs map[uint64]int
	redl []string // values committed from a delivery > 1
}

func (c *r63Commits) add(m natsjs.Msg[string]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.vals == nil {
		c.vals, c.seqs = map[string]int{}, map[uint64]int{}
	}
	c.vals[m.Value]++
	c.seqs[m.Sequence]++
	if m.Deliveries != 1 {
		c.redl = append(c.redl, m.Value)
	}
}

// consume starts a sink.ForEach over work that records each message in c
// and signals committed, and sends the run's error on errc.
func (c *r63Commits) consume(ctx context.Context, work stage.Stream[natsjs.Msg[string]], committed chan<- struct{}, errc chan<- error) {
	go func() {
		errc <- sink.ForEach(ctx, work, func(_ context.Context, m natsjs.Msg[string]) error {
			c.add(m)
			committed <- struct{}{}
			return nil
		})
	}()
}

func (c *r63Commits) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.vals)
}

func (c *r63Commits) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.vals {
		out[k] = v
	}
	return out
}

// checkOnce fails t unless the sink committed each value of want exactly
// once, each from its first delivery (nothing given back or delivered
// twice), and nothing else.
func (c *r63Commits) checkOnce(t *testing.T, what string, want []string) {
	t.Helper()
	r63CheckSet(t, what, c.snapshot(), want)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.redl) != 0 {
		t.Fatalf("%s from a redelivery (given back or delivered twice): %v", what, c.redl)
	}
}

// r63CheckSet fails t unless got holds each value of want exactly once and
// nothing else.
func r63CheckSet(t *testing.T, what string, got map[string]int, want []string) {
	t.Helper()
	w := map[string]bool{}
	for _, v := range want {
		w[v] = true
	}
	var missing, extra, twice []string
	for _, v := range want {
		if got[v] == 0 {
			missing = append(missing, v)
		}
	}
	for v, c := range got {
		if !w[v] {
			extra = append(extra, v)
		} else if c > 1 {
			twice = append(twice, fmt.Sprintf("%s×%d", v, c))
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(twice)
	if len(missing)+len(extra)+len(twice) > 0 {
		t.Fatalf("%s: missing %v, unexpected %v, more than once %v", what, missing, extra, twice)
	}
}

// r63Rest runs a plain second run on the consumer until WORK is empty (each
// message acknowledged) and returns what it committed. AckWait is an hour in
// these tests: a message that an earlier run neither acknowledged nor gave
// back makes this run hang, and the watchdog fails the test with what is
// missing.
func r63Rest(t *testing.T, e *r63Env, want []string) map[string]int {
	t.Helper()
	var got r63Commits
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), r63Watchdog)
	defer cancel()
	go func() {
		_ = r63Poll(stop, "WORK to empty", func() bool {
			n, err := e.count("WORK")
			return err == nil && n == 0
		})
		drain()
	}()
	err := sink.ForEach(ctx, stage.Until(natsjs.Source(e.cons, r14Str, natsjs.Backoff(0, 0)), stop),
		func(_ context.Context, m natsjs.Msg[string]) error {
			got.add(m)
			return nil
		})
	if err != nil {
		var missing []string
		s := got.snapshot()
		for _, v := range want {
			if s[v] == 0 {
				missing = append(missing, v)
			}
		}
		n, _ := e.count("WORK")
		i, _ := e.cinfo()
		t.Fatalf("second run: %v; WORK holds %d, missing %v (stranded?), consumer %+v", err, n, missing, i)
	}
	return got.snapshot()
}

// r63Minus returns all without the values in done.
func r63Minus(all []string, done map[string]int) []string {
	var out []string
	for _, v := range all {
		if done[v] == 0 {
			out = append(out, v)
		}
	}
	return out
}

// r63Shape is a pipeline over the source: a Map of Workers(workers), with
// Buffer(buffer) if buffer > 0, whose calls are cheap (the stage may run in
// its consumer's goroutines) or slow (about 50 µs each, so that they keep
// to the stage's own goroutines), optionally followed by a second cheap Map
// of as many workers (the first stage's consumer is then a stage's workers).
type r63Shape struct {
	workers, buffer int
	slow, chain     bool
}

func (s r63Shape) String() string {
	name := fmt.Sprintf("w%d", s.workers)
	if s.buffer > 0 {
		name += fmt.Sprintf("-buf%d", s.buffer)
	}
	if s.slow {
		name += "-slow"
	}
	if s.chain {
		name += "-chain"
	}
	return name
}

type r63Fn = func(ctx context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error)

func (s r63Shape) build(src stage.Stream[natsjs.Msg[string]], f r63Fn) stage.Stream[natsjs.Msg[string]] {
	opts := []stage.Option{stage.Workers(s.workers)}
	if s.buffer > 0 {
		opts = append(opts, stage.Buffer(s.buffer))
	}
	g := f
	if s.slow {
		g = func(ctx context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
			for start := time.Now(); time.Since(start) < 50*time.Microsecond; {
				// a slow call (busy, so that it is timed as slow)
			}
			return f(ctx, m)
		}
	}
	out := stage.Map(src, g, opts...)
	if s.chain {
		out = stage.Map(out, func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
			return m, nil
		}, stage.Workers(s.workers))
	}
	return out
}

func r63Ident(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) { return m, nil }

// r63Shapes is the usual matrix: 1, 2 and 8 workers, fused (cheap, no
// Buffer) or not (a Buffer; slow calls), and two cheap stages in a row.
func r63Shapes() []r63Shape {
	var out []r63Shape
	for _, w := range []int{1, 2, 8} {
		out = append(out,
			r63Shape{workers: w},
			r63Shape{workers: w, buffer: 4},
			r63Shape{workers: w, slow: true},
			r63Shape{workers: w, chain: true},
		)
	}
	return out
}

// r63Run is runcheck.Run for a run whose NATS server is in process: it fails
// t if a goroutine that started during run is still alive when run returns
// (run calls a sink, which returns only when every goroutine of its run has
// exited), leaving out the server's own goroutines (created by the server,
// which starts some on its own timers: they are no part of the run). A hang
// fails t after the watchdog.
func r63Run(t *testing.T, label string, run func()) {
	t.Helper()
	var leaked []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, before := runcheck.Goroutines()
		run()
		for _, st := range runcheck.LeakedSince(before) {
			// The in-process server's goroutines, its timers' callbacks
			// (created by time.goFunc) among them, are not the run's: no
			// goroutine of a run executes server code.
			if strings.Contains(st, "github.com/nats-io/nats-server/") {
				continue
			}
			leaked = append(leaked, st)
		}
	}()
	select {
	case <-done:
	case <-time.After(r63Watchdog):
		t.Fatalf("%s: hung", label)
	}
	if len(leaked) > 0 {
		t.Errorf("%s: %d goroutine(s) started by the run still alive when the sink returned:\n%s",
			label, len(leaked), strings.Join(leaked, "\n\n"))
	}
}
