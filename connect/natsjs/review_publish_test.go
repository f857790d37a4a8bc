package natsjs_test

// Adversarial tests of Publish and Published, written from their
// documentation only. A real NATS server runs on loopback. Where a test must
// hold a publish's acknowledgement back, a plain NATS subscriber on the
// subject (no stream captures it) plays the stream's part: it gets the
// publish request and answers it with a PubAck (or an error) when the test
// says so. Durations are hang watchdogs, or windows in which a broken
// promise would show; never conditions for passing.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// rpDone records one stage.Ack.Done call.
type rpDone struct {
	i   int
	err error
}

type rpAck struct {
	i    int
	done chan<- rpDone
}

func (a rpAck) Done(err error) { a.done <- rpDone{a.i, err} }

// rpSource yields 0..n-1, each with an Ack that reports to the returned
// channel (buffered for every item).
func rpSource(n int) (stage.Stream[int], <-chan rpDone) {
	done := make(chan rpDone, n)
	s := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == n {
				return 0, nil, io.EOF
			}
			i++
			return i - 1, rpAck{i - 1, done}, nil
		}, nil
	})
	return s, done
}

// rpNoDone checks that no Done call is waiting in done (after a flush of
// the window in which one would have come).
func rpNoDone(t *testing.T, done <-chan rpDone, what string) {
	t.Helper()
	select {
	case d := <-done:
		t.Fatalf("%s: Done(%v) for item %d", what, d.err, d.i)
	default:
	}
}

// rpResponder subscribes to subject on nc and returns the publish requests
// it gets, unanswered.
func rpResponder(t *testing.T, nc *nats.Conn, subject string) <-chan *nats.Msg {
	t.Helper()
	reqs := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(subject, reqs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return reqs
}

func rpReply(t *testing.T, req *nats.Msg, body any) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Respond(data); err != nil {
		t.Fatal(err)
	}
}

func rpAckBody(seq uint64, dup bool) map[string]any {
	return map[string]any{"stream": "FAKE", "seq": seq, "duplicate": dup}
}

// rpLoad reads the counters as a concurrent reader must.
func rpLoad(c *natsjs.Published) (stored, dups int64) {
	return c.Stored.Load(), c.Duplicates.Load()
}

// rpReader reads counts in a loop until stop is closed, checking that they
// never go down nor past max, and reports a violation on the returned
// channel (closed when the reader ends). Under -race, a counter written
// without atomics fails the test.
func rpReader(counts *natsjs.Published, max int64, stop <-chan struct{}) <-chan string {
	bad := make(chan string, 1)
	go func() {
		defer close(bad)
		var ls, ld int64
		for {
			s, d := rpLoad(counts)
			if s < ls || d < ld || s+d > max {
				bad <- fmt.Sprintf("counters went from (%d, %d) to (%d, %d), max %d", ls, ld, s, d, max)
				return
			}
			ls, ld = s, d
			runtime.Gosched()
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	return bad
}

func rpStream(t *testing.T, js jetstream.JetStream, cfg jetstream.StreamConfig) jetstream.Stream {
	t.Helper()
	s, err := js.CreateStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rpStageError checks that err is a *stage.Error of the sink ("foreach")
// and returns it.
func rpStageError(t *testing.T, err error) *stage.Error {
	t.Helper()
	var se *stage.Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want a *stage.Error", err, err)
	}
	if se.Stage != "foreach" {
		t.Fatalf("stage.Error.Stage = %q, want \"foreach\" (err %v)", se.Stage, err)
	}
	return se
}

// 1. An item is committed only once its publish is acknowledged, with
// Nats-Msg-Id id(item), as the message msg made; items are published one
// at a time; a duplicate acknowledgement counts as committed; the counters
// may be read meanwhile (a reader goroutine under -race).
func TestReviewPublishCommitsOnlyAfterTheAck(t *testing.T) {
	const n = 4
	nc, js := connect(t, startServer(t))
	reqs := rpResponder(t, nc, "fake.>")
	src, done := rpSource(n)
	var counts natsjs.Published
	stopReader := make(chan struct{})
	bad := rpReader(&counts, n, stopReader)
	errc := make(chan error, 1)
	go func() {
		errc <- natsjs.Publish(context.Background(), js, src, func(i int) (*nats.Msg, error) {
			m := nats.NewMsg("fake." + strconv.Itoa(i))
			m.Data = []byte("v" + strconv.Itoa(i))
			m.Header.Set("X-Review", "h"+strconv.Itoa(i))
			m.Header.Set(jetstream.MsgIDHeader, "from-msg") // id(item) is the message id, whatever msg says
			return m, nil
		}, func(i int) string { return "id-" + strconv.Itoa(i) }, &counts)
	}()
	for k := range n {
		req := rvRecv(t, fmt.Sprintf("publish request %d", k), reqs)
		if req.Subject != "fake."+strconv.Itoa(k) || string(req.Data) != "v"+strconv.Itoa(k) {
			t.Fatalf("request %d: subject %q data %q", k, req.Subject, req.Data)
		}
		if got := req.Header.Get(jetstream.MsgIDHeader); got != "id-"+strconv.Itoa(k) {
			t.Fatalf("request %d: Nats-Msg-Id %q, want id-%d", k, got, k)
		}
		if got := req.Header.Get("X-Review"); got != "h"+strconv.Itoa(k) {
			t.Fatalf("request %d: the header msg set is %q, want h%d", k, got, k)
		}
		// The window: the publish is not acknowledged yet, so the item is
		// not committed, and no other item is published meanwhile.
		for range 5 {
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		rpNoDone(t, done, fmt.Sprintf("item %d before its publish was acknowledged", k))
		select {
		case r := <-reqs:
			t.Fatalf("item %d: a second publish (%s) while the first waits for its ack: not one at a time", k, r.Subject)
		default:
		}
		if s, d := rpLoad(&counts); s+d != int64(k) {
			t.Fatalf("before ack %d: counts (%d stored, %d duplicates), want %d in all", k, s, d, k)
		}
		rpReply(t, req, rpAckBody(uint64(k+1), k%2 == 1))
		d := rvRecv(t, fmt.Sprintf("Done for item %d after its ack", k), done)
		if d.i != k || d.err != nil {
			t.Fatalf("after ack %d: Done(%v) for item %d, want Done(nil) for item %d", k, d.err, d.i, k)
		}
	}
	if err := rvRecv(t, "Publish to return", errc); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	close(stopReader)
	if msg, ok := <-bad; ok {
		t.Fatal(msg)
	}
	if s, d := rpLoad(&counts); s != n/2 || d != n/2 {
		t.Fatalf("counts %d stored, %d duplicates; want %d and %d", s, d, n/2, n/2)
	}
}

// 2. The same with the connector's own source: while a publish waits for
// its ack, the source message stays unacknowledged in the work queue; once
// the ack came (stored or duplicate), it is acknowledged.
func TestReviewPublishAcksTheSourceMessageAfterThePubAck(t *testing.T) {
	nc, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "PSRC", time.Hour, 0)
	seqs := []uint64{rvPub(t, js, "PSRC.job", "a"), rvPub(t, js, "PSRC.job", "b")}
	reqs := rpResponder(t, nc, "fake.>")
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var counts natsjs.Published
	errc := make(chan error, 1)
	go func() {
		errc <- natsjs.Publish(context.Background(), js, stage.Until(natsjs.Source(cons, decodeString), stop),
			func(m natsjs.Msg[string]) (*nats.Msg, error) {
				return &nats.Msg{Subject: "fake." + m.Value, Data: []byte(m.Value)}, nil
			}, func(m natsjs.Msg[string]) string { return m.Value }, &counts)
	}()
	for k, seq := range seqs {
		req := rvRecv(t, fmt.Sprintf("publish request %d", k), reqs)
		for range 5 {
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !rvHas(t, js, "PSRC", seq) {
			t.Fatalf("source message %d was acknowledged before its publish was", seq)
		}
		rpReply(t, req, rpAckBody(uint64(k+1), k == 1))
		waitFor(t, fmt.Sprintf("source message %d acknowledged after its publish", seq), func() bool { return !rvHas(t, js, "PSRC", seq) })
	}
	drain()
	if err := rvRecv(t, "Publish to return", errc); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if s, d := rpLoad(&counts); s != 1 || d != 1 {
		t.Fatalf("counts %d stored, %d duplicates; want 1 and 1", s, d)
	}
	if info := rvInfo(t, cons); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("consumer: %d ack pending, %d pending", info.NumAckPending, info.NumPending)
	}
}

// 3. Duplicates against a real stream: an id the stream has seen (before the
// run, or earlier in it) is not stored twice, counts as a duplicate, and its
// source message is acknowledged.
func TestReviewPublishDuplicatesAreCommittedNotStored(t *testing.T) {
	_, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "PDUP", time.Hour, 0)
	res := rpStream(t, js, jetstream.StreamConfig{Name: "PRES", Subjects: []string{"pres.>"}, Duplicates: time.Minute})
	ctx := context.Background()
	if _, err := js.Publish(ctx, "pres.b", []byte("before"), jetstream.WithMsgID("b")); err != nil {
		t.Fatal(err)
	}
	values := []string{"a", "b", "a", "c", "c"}
	for _, v := range values {
		rvPub(t, js, "PDUP.job", v)
	}
	stop, drain := context.WithCancel(ctx)
	defer drain()
	var counts natsjs.Published
	seen := 0
	tail := stage.Map(stage.Until(natsjs.Source(cons, decodeString), stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		if seen++; seen == len(values) {
			drain() // the last one: drain once it is through
		}
		return m.Value, nil
	}, stage.Workers(1))
	err := natsjs.Publish(ctx, js, tail, func(v string) (*nats.Msg, error) {
		return &nats.Msg{Subject: "pres." + v, Data: []byte(v)}, nil
	}, func(v string) string { return v }, &counts)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if s, d := rpLoad(&counts); s != 2 || d != 3 {
		t.Fatalf("counts %d stored, %d duplicates; want 2 (a, c) and 3 (b, a, c)", s, d)
	}
	info, err := res.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("PRES holds %d messages, want 3 (b before the run, a, c)", info.State.Msgs)
	}
	ids := map[string]string{}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := res.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		ids[m.Header.Get(jetstream.MsgIDHeader)] = m.Subject + "=" + string(m.Data)
	}
	if ids["a"] != "pres.a=a" || ids["b"] != "pres.b=before" || ids["c"] != "pres.c=c" {
		t.Fatalf("PRES by message id: %v", ids)
	}
	waitFor(t, "every source message acknowledged", func() bool {
		i := rvInfo(t, cons)
		return rvStreamMsgs(t, js, "PDUP") == 0 && i.NumAckPending == 0 && i.NumPending == 0
	})
}

var (
	errReviewMsg = errors.New("review: msg failed")
	errReviewFwd = errors.New("review: forwarded")
)

// 4. A failed publish, or an error or panic in msg or id, ends the run with
// a *stage.Error (Stage "foreach") wrapping it; the item is not committed
// (its Ack is not told nil; nothing is stored for it), the items before it
// are.
func TestReviewPublishFailureEndsTheRun(t *testing.T) {
	type tc struct {
		name  string
		dest  string                                         // where item 1 goes: "cap" (refused), "nostream", "fake"
		msg   func(pfx string, i int) (*nats.Msg, error)     // nil: the default
		id    func(i int) string                             // nil: the default
		reply func(t *testing.T, req *nats.Msg)              // the fake stream's answer to item 1
		check func(t *testing.T, err error, se *stage.Error) // the cause
	}
	panicValue := "review: boom"
	isPanic := func(t *testing.T, err error, se *stage.Error) {
		var pe *stage.PanicError
		if !errors.As(err, &pe) || pe.Value != panicValue {
			t.Fatalf("err = %v, want a *stage.PanicError with value %q", err, panicValue)
		}
	}
	cases := []tc{
		{name: "rejected by the stream", dest: "cap", check: func(t *testing.T, err error, se *stage.Error) {
			var ae *jetstream.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want the stream's *jetstream.APIError", err)
			}
		}},
		{name: "no stream", dest: "nostream", check: func(t *testing.T, err error, se *stage.Error) {
			if !errors.Is(err, jetstream.ErrNoStreamResponse) {
				t.Fatalf("err = %v, want jetstream.ErrNoStreamResponse", err)
			}
		}},
		{name: "error reply", dest: "fake", reply: func(t *testing.T, req *nats.Msg) {
			rpReply(t, req, map[string]any{"error": map[string]any{"code": 503, "err_code": 10077, "description": "review refusal"}})
		}, check: func(t *testing.T, err error, se *stage.Error) {
			var ae *jetstream.APIError
			if !errors.As(err, &ae) || ae.ErrorCode != 10077 {
				t.Fatalf("err = %v, want the *jetstream.APIError with code 10077", err)
			}
		}},
		{name: "invalid ack", dest: "fake", reply: func(t *testing.T, req *nats.Msg) {
			if err := req.Respond([]byte("not an ack")); err != nil {
				t.Fatal(err)
			}
		}, check: func(t *testing.T, err error, se *stage.Error) {
			if !errors.Is(err, jetstream.ErrInvalidJSAck) {
				t.Fatalf("err = %v, want jetstream.ErrInvalidJSAck", err)
			}
		}},
		{name: "msg error", msg: func(pfx string, i int) (*nats.Msg, error) {
			if i == 1 {
				return nil, errReviewMsg
			}
			return &nats.Msg{Subject: pfx + "." + strconv.Itoa(i)}, nil
		}, check: func(t *testing.T, err error, se *stage.Error) {
			if !errors.Is(err, errReviewMsg) || !errors.Is(se, errReviewMsg) {
				t.Fatalf("err = %v, want one wrapping the msg error", err)
			}
		}},
		{name: "msg panic", msg: func(pfx string, i int) (*nats.Msg, error) {
			if i == 1 {
				panic(panicValue)
			}
			return &nats.Msg{Subject: pfx + "." + strconv.Itoa(i)}, nil
		}, check: isPanic},
		{name: "id panic", id: func(i int) string {
			if i == 1 {
				panic(panicValue)
			}
			return "id-" + strconv.Itoa(i)
		}, check: isPanic},
	}
	url := startServer(t)
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			nc, js := connect(t, url)
			// One stored message, then refusals.
			res, pfx := fmt.Sprintf("CAP%d", ci), fmt.Sprintf("cap%d", ci)
			rpStream(t, js, jetstream.StreamConfig{Name: res, Subjects: []string{pfx + ".>"}, MaxMsgs: 1, Discard: jetstream.DiscardNew})
			reqs := rpResponder(t, nc, "fake.>")
			msg := func(i int) (*nats.Msg, error) {
				if c.msg != nil {
					return c.msg(pfx, i)
				}
				subj := pfx + "." + strconv.Itoa(i)
				if i == 1 && c.dest != "cap" {
					subj = c.dest + ".1"
				}
				return &nats.Msg{Subject: subj, Data: []byte(strconv.Itoa(i))}, nil
			}
			id := c.id
			if id == nil {
				id = func(i int) string { return "id-" + strconv.Itoa(i) }
			}
			src, done := rpSource(3)
			var counts natsjs.Published
			errc := make(chan error, 1)
			go func() { errc <- natsjs.Publish(context.Background(), js, src, msg, id, &counts) }()
			if c.reply != nil {
				c.reply(t, rvRecv(t, "the publish of item 1", reqs))
			}
			err := rvRecv(t, "Publish to return", errc)
			se := rpStageError(t, err)
			if v, ok := se.Input.(int); !ok || v != 1 {
				t.Errorf("stage.Error.Input = %v (%T), want item 1", se.Input, se.Input)
			}
			c.check(t, err, se)
			got := map[int]error{}
			for len(done) > 0 {
				d := <-done
				if _, twice := got[d.i]; twice {
					t.Fatalf("Done called twice for item %d", d.i)
				}
				got[d.i] = d.err
			}
			if e, ok := got[0]; !ok || e != nil {
				t.Errorf("item 0 (stored before the failure): Done called %v with %v, want Done(nil)", ok, e)
			}
			if e, ok := got[1]; ok && e == nil {
				t.Errorf("item 1 (failed): Done(nil), want its error or no call")
			}
			if e, ok := got[2]; ok && e == nil {
				t.Errorf("item 2 (after the failure): Done(nil)")
			}
			if s, d := rpLoad(&counts); s != 1 || d != 0 {
				t.Errorf("counts %d stored, %d duplicates; want 1 and 0", s, d)
			}
			if n := rvStreamMsgs(t, js, res); n != 1 {
				t.Errorf("%s holds %d messages, want 1 (item 0)", res, n)
			}
		})
	}
}

// 5. The same with the connector's source: the message whose publish failed
// is not acknowledged; it stays in the work queue (it is not terminated
// either: a failed commit is retryable), and the one before it is gone.
func TestReviewPublishFailureKeepsTheSourceMessage(t *testing.T) {
	nc, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "PKEEP", time.Hour, 0)
	rpStream(t, js, jetstream.StreamConfig{Name: "KRES", Subjects: []string{"kres.>"}})
	okSeq := rvPub(t, js, "PKEEP.job", "good")
	badSeq := rvPub(t, js, "PKEEP.job", "bad")
	var counts natsjs.Published
	ctx, cancel := context.WithTimeout(context.Background(), rvWatchdog)
	defer cancel()
	src := stage.Map(natsjs.Source(cons, decodeString), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		return m.Value, nil
	}, stage.Workers(1))
	err := natsjs.Publish(ctx, js, src, func(v string) (*nats.Msg, error) {
		if v == "bad" {
			return &nats.Msg{Subject: "nowhere.bad"}, nil // no stream: the publish fails
		}
		return &nats.Msg{Subject: "kres." + v}, nil
	}, func(v string) string { return v }, &counts)
	if ctx.Err() != nil {
		t.Fatalf("the run did not end at the failed publish: %v", err)
	}
	rpStageError(t, err)
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("err = %v, want jetstream.ErrNoStreamResponse inside", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the committed message acknowledged", func() bool { return !rvHas(t, js, "PKEEP", okSeq) })
	if !rvHas(t, js, "PKEEP", badSeq) {
		t.Fatal("the message whose publish failed was acknowledged (or terminated)")
	}
	if s, _ := rpLoad(&counts); s != 1 {
		t.Fatalf("Stored = %d, want 1", s)
	}
}

// 6. Forwarded errors come back in a *sink.ForwardedError (count and a
// sample), the run goes on, and every other item is published.
func TestReviewPublishReturnsForwardedErrors(t *testing.T) {
	const n = 40
	_, js := connect(t, startServer(t))
	res := rpStream(t, js, jetstream.StreamConfig{Name: "FRES", Subjects: []string{"fres.>"}, Duplicates: time.Minute})
	src, done := rpSource(n)
	odd := stage.Map(src, func(_ context.Context, i int) (int, error) {
		if i%2 == 1 {
			return 0, fmt.Errorf("item %d: %w", i, errReviewFwd)
		}
		return i, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))
	var counts natsjs.Published
	err := natsjs.Publish(context.Background(), js, odd, func(i int) (*nats.Msg, error) {
		return &nats.Msg{Subject: "fres." + strconv.Itoa(i)}, nil
	}, func(i int) string { return strconv.Itoa(i) }, &counts)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v (%T), want a *sink.ForwardedError", err, err)
	}
	if fe.Count != n/2 || len(fe.Sample) != sink.SampleSize {
		t.Fatalf("ForwardedError: count %d, %d in the sample; want %d and %d", fe.Count, len(fe.Sample), n/2, sink.SampleSize)
	}
	if !errors.Is(err, errReviewFwd) {
		t.Fatalf("errors.Is does not see the forwarded error through %v", err)
	}
	var se *stage.Error
	if !errors.As(fe.Sample[0], &se) || se.Stage == "foreach" {
		t.Fatalf("sample[0] = %v, want the map stage's *stage.Error", fe.Sample[0])
	}
	if s, d := rpLoad(&counts); s != n/2 || d != 0 {
		t.Fatalf("counts %d stored, %d duplicates; want %d and 0", s, d, n/2)
	}
	info, err := res.Info(context.Background())
	if err != nil || info.State.Msgs != n/2 {
		t.Fatalf("FRES: %v messages (%v), want %d", info, err, n/2)
	}
	for range n {
		d := rvRecv(t, "every item's Done", done)
		if (d.err == nil) != (d.i%2 == 0) {
			t.Fatalf("item %d: Done(%v)", d.i, d.err)
		}
	}
}

// 6b. A failed publish after forwarded errors: the run's error is both the
// *stage.Error (Stage "foreach", Input the item) and a *sink.ForwardedError
// with the errors forwarded before it (joined).
func TestReviewPublishFailureJoinsForwardedErrors(t *testing.T) {
	const n = 10
	_, js := connect(t, startServer(t))
	rpStream(t, js, jetstream.StreamConfig{Name: "JRES", Subjects: []string{"jres.>"}, MaxMsgs: 3, Discard: jetstream.DiscardNew})
	src, _ := rpSource(n)
	odd := stage.Map(src, func(_ context.Context, i int) (int, error) {
		if i%2 == 1 {
			return 0, errReviewFwd
		}
		return i, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var counts natsjs.Published
	err := natsjs.Publish(context.Background(), js, odd, func(i int) (*nats.Msg, error) {
		return &nats.Msg{Subject: "jres." + strconv.Itoa(i)}, nil
	}, func(i int) string { return strconv.Itoa(i) }, &counts)
	se := rpStageError(t, err) // 0, 2, 4 stored; 6 refused
	if v, ok := se.Input.(int); !ok || v != 6 {
		t.Fatalf("stage.Error.Input = %v, want item 6 (err %v)", se.Input, err)
	}
	var ae *jetstream.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want the stream's refusal inside", err)
	}
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count < 3 || !errors.Is(err, errReviewFwd) {
		t.Fatalf("err = %v, want it joined with a *sink.ForwardedError of at least the 3 errors before item 6", err)
	}
	if s, _ := rpLoad(&counts); s != 3 {
		t.Fatalf("Stored = %d, want 3", s)
	}
}

// 7. Cancelling the run while a publish waits for its ack: Publish returns
// (context.Canceled), the item is not committed (neither counted nor its
// source message acknowledged), and an ack that arrives afterwards changes
// nothing.
func TestReviewPublishCancelWhileAPublishWaits(t *testing.T) {
	nc, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "PCAN", time.Hour, 0)
	seq := rvPub(t, js, "PCAN.job", "x")
	reqs := rpResponder(t, nc, "fake.>")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var counts natsjs.Published
	errc := make(chan error, 1)
	go func() {
		errc <- natsjs.Publish(ctx, js, natsjs.Source(cons, decodeString), func(m natsjs.Msg[string]) (*nats.Msg, error) {
			return &nats.Msg{Subject: "fake." + m.Value}, nil
		}, func(m natsjs.Msg[string]) string { return m.Value }, &counts)
	}()
	req := rvRecv(t, "the publish request", reqs)
	cancel()
	err := rvRecv(t, "Publish to return after the cancellation", errc)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	rpReply(t, req, rpAckBody(1, false)) // too late
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if s, d := rpLoad(&counts); s != 0 || d != 0 {
		t.Fatalf("counts %d stored, %d duplicates after a cancelled publish; want 0", s, d)
	}
	if !rvHas(t, js, "PCAN", seq) {
		t.Fatal("the source message of the cancelled publish was acknowledged")
	}
	// It was nak'ed when the run stopped: a new run gets it at once (AckWait
	// is an hour) and commits it.
	got := rvDrainRest(t, cons, map[string]bool{"x": true})
	if got["x"] != 1 {
		t.Fatalf("next run: %v", got)
	}
}

// 8. Many items, half of them duplicates, against a real stream, with the
// counters read all along: the totals add up, the counters never go down.
func TestReviewPublishCountersUnderLoad(t *testing.T) {
	const n = 300
	_, js := connect(t, startServer(t))
	res := rpStream(t, js, jetstream.StreamConfig{Name: "LRES", Subjects: []string{"lres"}, Duplicates: time.Minute})
	var counts natsjs.Published
	stopReader := make(chan struct{})
	bad := rpReader(&counts, n, stopReader)
	src, _ := rpSource(n)
	err := natsjs.Publish(context.Background(), js, src, func(i int) (*nats.Msg, error) {
		return &nats.Msg{Subject: "lres", Data: []byte(strconv.Itoa(i))}, nil
	}, func(i int) string { return strconv.Itoa(i / 2) }, &counts)
	close(stopReader)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if msg, ok := <-bad; ok {
		t.Fatal(msg)
	}
	if s, d := rpLoad(&counts); s != n/2 || d != n/2 {
		t.Fatalf("counts %d stored, %d duplicates; want %d each", s, d, n/2)
	}
	if info, err := res.Info(context.Background()); err != nil || info.State.Msgs != n/2 {
		t.Fatalf("LRES: %v (%v), want %d messages", info, err, n/2)
	}
}

// pubCounts formats what Publish counted.
func pubCounts(p *natsjs.Published) string {
	return fmt.Sprintf("{Stored:%d Duplicates:%d}", p.Stored.Load(), p.Duplicates.Load())
}
