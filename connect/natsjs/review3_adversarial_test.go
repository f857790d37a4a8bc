package natsjs_test

// Review 3: adversarial tests written from the documentation alone (doc.go,
// the doc comments of natsjs's exported names, and the stage/sink contracts).
// Every test runs against a real NATS server on loopback. Durations are hang
// watchdogs or, where noted, windows in which a broken promise would show
// (a window can only make a broken promise pass unnoticed, never make a kept
// one fail). Messages given back at a stop are checked by fetching them with
// a second client of the same durable consumer: AckWait is an hour, so only
// a Nak explains a prompt redelivery. Scenarios that could crash the process
// run in a child process (TestReview3Child, started by TestReview3NoCrash).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const r3Watchdog = 60 * time.Second

// ---------------------------------------------------------------- helpers

// r3Other returns the durable consumer "c" of stream through a second,
// independent client connection.
func r3Other(t *testing.T, url, stream string) jetstream.Consumer {
	t.Helper()
	_, js := connect(t, url)
	cons, err := js.Consumer(context.Background(), stream, "c")
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

// r3FetchAll fetches with cons (a second client) until it got every value
// in want, acknowledging each; a value outside want is an error. It returns
// each value's delivery count. With AckWait an hour, messages come within the
// watchdog only if they were nak'ed (or never delivered).
func r3FetchAll(t *testing.T, cons jetstream.Consumer, want map[string]bool) map[string]uint64 {
	t.Helper()
	return r3FetchSet(t, cons, want, nil)
}

// r3FetchSet is r3FetchAll where the values in maybe may come too.
func r3FetchSet(t *testing.T, cons jetstream.Consumer, want, maybe map[string]bool) map[string]uint64 {
	t.Helper()
	got := map[string]uint64{}
	have := 0
	deadline := time.Now().Add(r3Watchdog)
	for have < len(want) {
		left := time.Until(deadline)
		if left < time.Second {
			var missing []string
			for v := range want {
				if _, ok := got[v]; !ok {
					missing = append(missing, v)
				}
			}
			t.Fatalf("a second client got %d of the %d messages expected at once within %v; missing %v (they wait for AckWait: not given back)",
				have, len(want), r3Watchdog, missing)
		}
		batch, err := cons.Fetch(len(want)-have, jetstream.FetchMaxWait(min(left, 10*time.Second)))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			v := string(m.Data())
			md, _ := m.Metadata()
			var n uint64
			if md != nil {
				n = md.NumDelivered
			}
			switch {
			case want[v]:
				got[v] = n
				have++
			case maybe[v]:
				got[v] = n
			default:
				t.Errorf("a second client got %q (delivery %d), which should not come back now", v, n)
			}
			_ = m.Ack()
		}
	}
	return got
}

// r3NoneFor asks for one message with cons for window: a negative check.
func r3NoneFor(t *testing.T, cons jetstream.Consumer, window time.Duration) (string, bool) {
	t.Helper()
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(window))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := <-batch.Messages() // closed without a message: none came within window
	if !ok {
		return "", false
	}
	d := uint64(0)
	if md, _ := m.Metadata(); md != nil {
		d = md.NumDelivered
	}
	return fmt.Sprintf("%q (delivery %d)", m.Data(), d), true
}

// r3WaitFor polls cond with a 30 s watchdog.
func r3WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// r3SweepWait waits (30 s watchdog) for the work queue name to empty while a
// run takes redeliveries; giving up, it reports the stream's and the
// consumer's state, so that a failure says which side holds what.
//
// After a server restart (restarted), the sweep is also over when the
// consumer has nothing left to deliver or to wait for (no pending, no ack
// pending, its ack floor at the stream's last message) and every message
// still in the stream is one the first run committed (committed reports
// it): the server then applied the message's ack to its consumer but not
// its removal to the work-queue stream before it stopped. Seen in CI: the
// consumer's ack floor at 100 of 100, one committed message left in the
// stream; nothing a client can ack again.
func r3SweepWait(t *testing.T, js jetstream.JetStream, cons jetstream.Consumer, name string, restarted bool, committed func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		si, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if si.State.Msgs == 0 {
			return
		}
		ci := rvInfo(t, cons)
		var left []string
		allCommitted := true
		for seq := si.State.FirstSeq; seq <= si.State.LastSeq && len(left) < 10; seq++ {
			if m, err := s.GetMsg(context.Background(), seq); err == nil {
				left = append(left, fmt.Sprintf("seq %d %q", seq, m.Data))
				allCommitted = allCommitted && committed(string(m.Data))
			}
		}
		if restarted && ci.NumPending == 0 && ci.NumAckPending == 0 && ci.AckFloor.Stream >= si.State.LastSeq && allCommitted && si.State.Msgs <= 10 {
			t.Logf("the restarted server kept %d acknowledged messages in the work queue: %v (consumer ack floor %+v)", si.State.Msgs, left, ci.AckFloor)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for the work queue to empty: stream %+v, left %v; consumer delivered %+v, ack floor %+v, pending %d, ack pending %d, redelivered %d, waiting %d",
				si.State, left, ci.Delivered, ci.AckFloor, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func r3Vals(n int) []string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = strconv.Itoa(i)
	}
	return vs
}

// r3Held starts a server with stream name (AckWait an hour) and publishes
// vals to it: the connection, its JetStream, the consumer, a second
// client's consumer (to see what goes back), each value's sequence, and a
// tap on the connection.
func r3Held(t *testing.T, name string, vals []string) (*nats.Conn, jetstream.JetStream, jetstream.Consumer, jetstream.Consumer, map[string]uint64, *tap) {
	t.Helper()
	url := startServer(t)
	ncS, js, tp := tapConnect(t, url)
	cons := rvSetup(t, js, name, time.Hour, 0)
	other := r3Other(t, url, name)
	seqOf := map[string]uint64{}
	for _, v := range vals {
		seqOf[v] = rvPub(t, js, name+".job", v)
	}
	return ncS, js, cons, other, seqOf, tp
}

func r3PanicMsg(f func()) (msg string, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			msg, panicked = fmt.Sprint(r), true
		}
	}()
	f()
	return "", false
}

// ---------------------------------------------------------------- child processes

const r3ChildEnv = "SLUICE_REVIEW3_CHILD"

func r3Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// r3InChild runs TestReview3Child in a child process with mode: a crash or a
// deadlock there fails this test, not the package.
func r3InChild(t *testing.T, mode string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // watchdog
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestReview3Child$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), r3ChildEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "CHILD:") {
			t.Log(strings.TrimSpace(line))
		}
	}
	if err != nil {
		t.Errorf("child process %q failed (%v):\n%s", mode, err, r3Tail(string(out), 5000))
	}
}

// ---------------------------------------------------------------- options

// SourceOption: "Options are checked when they are made: an invalid one
// panics there." ReadAhead panics if n < 1; KeepAlive if d <= 0; Backoff if
// base < 0 or max < base; DeadLetter if subject is empty. Valid extreme values
// must not panic.
func TestReview3OptionMisusePanics(t *testing.T) {
	_, js := connect(t, startServer(t))
	bad := map[string][]func(){
		"natsjs.ReadAhead":  {func() { natsjs.ReadAhead(0) }, func() { natsjs.ReadAhead(-1) }, func() { natsjs.ReadAhead(math.MinInt) }, func() { natsjs.ReadAhead(natsjs.MaxReadAhead + 1) }, func() { natsjs.ReadAhead(math.MaxInt) }},
		"natsjs.KeepAlive":  {func() { natsjs.KeepAlive(-1) }, func() { natsjs.KeepAlive(math.MinInt64) }},
		"natsjs.Backoff":    {func() { natsjs.Backoff(-1, time.Second) }, func() { natsjs.Backoff(-time.Second, -time.Second) }, func() { natsjs.Backoff(0, -1) }},
		"natsjs.DeadLetter": {func() { natsjs.DeadLetter(js, "") }},
	}
	for name, fs := range bad {
		for i, f := range fs {
			msg, ok := r3PanicMsg(f)
			if !ok || !strings.HasPrefix(msg, "sluice: "+name+":") {
				t.Errorf("%s case %d: panic %v %q, want one starting with %q", name, i, ok, msg, "sluice: "+name+":")
			}
		}
	}
	good := map[string]func(){
		"ReadAhead(1)":                func() { natsjs.ReadAhead(1) },
		"ReadAhead(MaxReadAhead)":     func() { natsjs.ReadAhead(natsjs.MaxReadAhead) },
		"KeepAlive(1ns)":              func() { natsjs.KeepAlive(1) },
		"KeepAlive(MaxInt64)":         func() { natsjs.KeepAlive(math.MaxInt64) },
		"Backoff(0, 0)":               func() { natsjs.Backoff(0, 0) },
		"Backoff(0, MaxInt64)":        func() { natsjs.Backoff(0, math.MaxInt64) },
		"Backoff(MaxInt64, MaxInt64)": func() { natsjs.Backoff(math.MaxInt64, math.MaxInt64) },
		"DeadLetter(js, \"x\")":       func() { natsjs.DeadLetter(js, "x") },
		"OnAckError(func(error) {})":  func() { natsjs.OnAckError(func(error) {}) },
		"Permanent(err).Error()":      func() { _ = natsjs.Permanent(errors.New("x")).Error() },
	}
	for name, f := range good {
		if msg, ok := r3PanicMsg(f); ok {
			t.Errorf("%s panicked: %s", name, msg)
		}
	}
	if natsjs.DefaultReadAhead != 100 {
		t.Errorf("DefaultReadAhead = %d, the docs say 100", natsjs.DefaultReadAhead)
	}
}

// Permanent: "wraps err so that the message it concerns is terminated (and
// dead-lettered) instead of redelivered." The error stays visible through
// further wrapping: a stage that wraps a Permanent error again (fmt.Errorf
// %w, errors.Join) and a sink whose commit returns one still get Term + a
// dead letter, on the first delivery.
func TestReview3PermanentThroughWrapping(t *testing.T) {
	p := natsjs.Permanent(errPerm)
	if !errors.Is(p, natsjs.ErrPermanent) || !errors.Is(p, errPerm) || !strings.Contains(p.Error(), errPerm.Error()) {
		t.Fatalf("Permanent(errPerm) = %v: Is(ErrPermanent) %v, Is(errPerm) %v", p, errors.Is(p, natsjs.ErrPermanent), errors.Is(p, errPerm))
	}
	url := startServer(t)
	_, js := connect(t, url)
	cons := rvSetup(t, js, "R3PERM", time.Hour, 0)
	other := r3Other(t, url, "R3PERM")
	for _, v := range []string{"wrapped", "joined", "ok", "sink"} {
		rvPub(t, js, "R3PERM.job", v)
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := natsjs.Source(cons, decodeString, natsjs.DeadLetter(js, "dlq.R3PERM"), natsjs.Backoff(time.Hour, time.Hour))
	work := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		switch m.Value {
		case "wrapped":
			return "", fmt.Errorf("while working: %w", natsjs.Permanent(errPerm))
		case "joined":
			return "", errors.Join(errRetry, natsjs.Permanent(errPerm))
		}
		return m.Value, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	// No drain: "sink", the last message (one worker, in order), ends the run
	// with its failed commit.
	err := stage.Run(context.Background(), work, func(_ context.Context, v string, err error) error {
		if v == "sink" {
			return fmt.Errorf("commit: %w", natsjs.Permanent(errPerm))
		}
		return nil
	})
	if !errors.Is(err, errPerm) || !errors.Is(err, natsjs.ErrPermanent) {
		t.Errorf("run error %v, want the sink's error", err)
	}
	r3WaitFor(t, "every message settled", func() bool {
		return rvStreamMsgs(t, js, "R3PERM") == 0 && rvStreamMsgs(t, js, "R3PERM_DLQ") == 3
	})
	if v, ok := r3NoneFor(t, other, 2*time.Second); ok {
		t.Errorf("a permanently failed message came back: %s", v)
	}
	dlq, err := js.Stream(context.Background(), "R3PERM_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	dead := map[string]string{}
	for seq := uint64(1); seq <= rvStreamMsgs(t, js, "R3PERM_DLQ"); seq++ {
		m, err := dlq.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		dead[string(m.Data)] = m.Header.Get("Sluice-Deliveries")
	}
	for _, v := range []string{"wrapped", "joined"} {
		if dead[v] != "1" {
			t.Errorf("%s: dead letters %v, want %s dead-lettered on delivery 1", v, dead, v)
		}
	}
	// "sink" ended the run (FailFast at the sink): its commit failed
	// permanently, so it is terminated too.
	if dead["sink"] != "1" {
		t.Errorf("the message whose commit failed with a Permanent error was not dead-lettered: %v", dead)
	}
}

// ---------------------------------------------------------------- payloads

// Msg: Value (decode's result of the exact payload), Subject, Sequence,
// Deliveries (1 on the first delivery), ID (its Nats-Msg-Id header, if it
// has one). Hostile payloads: nil, empty with headers only, ~1 MB.
func TestReview3PayloadsAndMetadata(t *testing.T) {
	_, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "R3PAY", time.Hour, 0)
	big := make([]byte, 1_000_000)
	for i := range big {
		big[i] = byte(i % 251)
	}
	type want struct {
		data []byte
		id   string
		seq  uint64
	}
	ctx := context.Background()
	msgs := []*nats.Msg{
		{Subject: "R3PAY.nil", Data: nil, Header: nats.Header{jetstream.MsgIDHeader: {"id-nil"}}},
		{Subject: "R3PAY.empty", Data: []byte{}, Header: nats.Header{"X-Only": {"header"}}},
		{Subject: "R3PAY.big", Data: big, Header: nats.Header{jetstream.MsgIDHeader: {"id-big"}}},
		{Subject: "R3PAY.x", Data: []byte("x")},
	}
	wants := map[string]want{}
	for _, m := range msgs {
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		wants[m.Subject] = want{m.Data, m.Header.Get(jetstream.MsgIDHeader), ack.Sequence}
	}
	stop, drain := context.WithCancel(ctx)
	defer drain()
	var mu sync.Mutex
	got := map[string]natsjs.Msg[[]byte]{}
	decode := func(b []byte) ([]byte, error) { return append([]byte(nil), b...), nil }
	err := sink.ForEach(ctx, stage.Until(natsjs.Source(cons, decode), stop), func(_ context.Context, m natsjs.Msg[[]byte]) error {
		mu.Lock()
		defer mu.Unlock()
		got[m.Subject] = m
		if len(got) == len(msgs) {
			drain()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("drained run: %v", err)
	}
	for subj, w := range wants {
		m, ok := got[subj]
		if !ok {
			t.Errorf("%s: not delivered", subj)
			continue
		}
		if string(m.Value) != string(w.data) || m.ID != w.id || m.Sequence != w.seq || m.Deliveries != 1 {
			t.Errorf("%s: value of %d bytes (want %d, equal %v), ID %q (want %q), seq %d (want %d), deliveries %d (want 1)",
				subj, len(m.Value), len(w.data), string(m.Value) == string(w.data), m.ID, w.id, m.Sequence, w.seq, m.Deliveries)
		}
	}
	r3WaitFor(t, "every message acknowledged", func() bool { return rvStreamMsgs(t, js, "R3PAY") == 0 })
}

// "AckPolicy: AckExplicitPolicy (required; the source checks)": an AckAll
// consumer is refused too, with a *stage.SourceError, and nothing is acked.
func TestReview3AckAllPolicyRefused(t *testing.T) {
	_, js := connect(t, startServer(t))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3ALL", Subjects: []string{"R3ALL.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "R3ALL", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckAllPolicy, AckWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		rvPub(t, js, "R3ALL.job", strconv.Itoa(i))
	}
	runCtx, cancel := context.WithTimeout(ctx, r3Watchdog)
	defer cancel()
	var committed atomic.Int64
	err = sink.ForEach(runCtx, natsjs.Source(cons, decodeString), func(context.Context, natsjs.Msg[string]) error {
		committed.Add(1)
		return nil
	})
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("run over an AckAll consumer: %v (%d committed), want a *stage.SourceError", err, committed.Load())
	}
	if info := rvInfo(t, cons); info.AckFloor.Stream != 0 {
		t.Fatalf("ack floor %d, want 0 (none acknowledged)", info.AckFloor.Stream)
	}
}

// ---------------------------------------------------------------- stops

// A stop before the first message, three ways: the caller's ctx cancelled
// before the run; stop (Until) done before the run; a drain while the
// source waits on an empty consumer, with messages published after the run
// ended. In every case nothing may be left waiting for AckWait (an hour): a
// second client gets every message at once. No goroutine is left and the
// subscription is gone when the sink returns.
func TestReview3StopBeforeTheFirstMessage(t *testing.T) {
	for _, how := range []string{"cancelled-before", "drained-before", "drain-while-waiting"} {
		t.Run(how, func(t *testing.T) {
			const n = 8
			url := startServer(t)
			ncS, js := connect(t, url)
			name := "R3PRE" + strings.ToUpper(strings.ReplaceAll(how, "-", ""))
			cons := rvSetup(t, js, name, time.Hour, 0)
			other := r3Other(t, url, name)
			if how != "drain-while-waiting" {
				for _, v := range r3Vals(n) {
					rvPub(t, js, name+".job", v)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			switch how {
			case "cancelled-before":
				cancel()
			case "drained-before":
				drain()
			}
			baseSubs := ncS.NumSubscriptions()
			leaks := goleak.IgnoreCurrent()
			var mu sync.Mutex
			committed := map[string]bool{}
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, stage.Until(natsjs.Source(cons, decodeString, natsjs.DeadLetter(js, "dlq."+name)), stop),
					func(_ context.Context, m natsjs.Msg[string]) error {
						mu.Lock()
						committed[m.Value] = true
						mu.Unlock()
						return nil
					})
			}()
			if how == "drain-while-waiting" {
				r3WaitFor(t, "the source's pull request", func() bool { return rvInfo(t, cons).NumWaiting > 0 })
				drain()
			}
			err := rvRecv(t, "the run", errc)
			switch how {
			case "cancelled-before":
				if !errors.Is(err, context.Canceled) {
					t.Errorf("run error %v, want context.Canceled", err)
				}
			default:
				if err != nil {
					t.Errorf("drained run: %v, want nil", err)
				}
			}
			if err := goleak.Find(leaks); err != nil {
				t.Errorf("goroutines left after the sink returned: %v", err)
			}
			r3WaitFor(t, "the run's subscription to go", func() bool { return ncS.NumSubscriptions() <= baseSubs })
			if how == "drain-while-waiting" {
				for _, v := range r3Vals(n) {
					rvPub(t, js, name+".job", v)
				}
			}
			want := map[string]bool{}
			mu.Lock()
			for _, v := range r3Vals(n) {
				if !committed[v] {
					want[v] = true
				}
			}
			t.Logf("%d committed by the stopped run", len(committed))
			mu.Unlock()
			r3FetchAll(t, other, want)
		})
	}
}

// The run ends while it holds messages: some in its read-ahead (received,
// not taken), one or two in the pipeline. "the run ended first (cancelled, a
// FailFast error at another message, drained before the message was handed
// to the pipeline): Nak, when the run stops, so that another consumer gets
// it at once"; a retryable failure (FailFast error at this message, a failed
// commit) is a Nak with the Backoff delay (an hour here): that one must not
// come back now, must stay in the stream and not be dead-lettered.
func TestReview3HeldMessagesGoBackAtOnce(t *testing.T) {
	for _, how := range []string{"failfast", "sink-error", "cancel", "drain", "drain-then-cancel"} {
		t.Run(how, func(t *testing.T) {
			const n = 30
			name := "R3HELD" + strings.ToUpper(strings.ReplaceAll(how, "-", ""))
			ncS, js, cons, other, seqOf, tp := r3Held(t, name, r3Vals(n))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			var entries atomic.Int32
			roleA, roleH := make(chan string, 1), make(chan string, 1)
			ready, drained := make(chan struct{}), make(chan struct{})
			baseSubs := ncS.NumSubscriptions()
			leaks := goleak.IgnoreCurrent()
			src := natsjs.Source(cons, decodeString, natsjs.ReadAhead(8), natsjs.Backoff(time.Hour, time.Hour), natsjs.DeadLetter(js, "dlq."+name))
			work := stage.Map(stage.Until(src, stop), func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
				switch entries.Add(1) {
				case 1: // A: fails, or commits, or is cut short
					roleA <- m.Value
					select {
					case <-ready:
					case <-ctx.Done():
						return "", ctx.Err()
					}
					switch how {
					case "failfast":
						return "", errTarget
					case "cancel", "drain-then-cancel":
						<-ctx.Done()
						return "", ctx.Err()
					}
					return m.Value, nil
				case 2: // H: held in the pipeline
					roleH <- m.Value
					if how == "drain" {
						select {
						case <-drained:
							return m.Value, nil
						case <-ctx.Done():
							return "", ctx.Err()
						}
					}
					<-ctx.Done()
					return "", ctx.Err()
				}
				return m.Value, nil
			}, stage.Workers(2), stage.Buffer(1))
			var mu sync.Mutex
			committed := map[string]bool{}
			var calls atomic.Int32
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, work, func(_ context.Context, v string) error {
					if how == "sink-error" && calls.Add(1) == 1 {
						return errTarget // A's commit fails
					}
					mu.Lock()
					committed[v] = true
					mu.Unlock()
					return nil
				})
			}()
			a := rvRecv(t, "A in the stage", roleA)
			h := rvRecv(t, "H in the stage", roleH)
			r3WaitFor(t, "messages in the read-ahead", func() bool { return rvInfo(t, cons).NumAckPending >= 3 })
			waitReceived(t, tp, func() *jetstream.ConsumerInfo { return rvInfo(t, cons) })
			switch how {
			case "cancel":
				cancel()
			case "drain":
				drain()
				close(drained)
			case "drain-then-cancel":
				drain()
			}
			close(ready)
			if how == "drain-then-cancel" {
				cancel()
			}
			err := rvRecv(t, "the run", errc)
			switch how {
			case "failfast", "sink-error":
				var se *stage.Error
				if !errors.Is(err, errTarget) || !errors.As(err, &se) {
					t.Errorf("run error %v, want the *stage.Error of the target", err)
				}
			case "cancel", "drain-then-cancel":
				if !errors.Is(err, context.Canceled) {
					t.Errorf("run error %v, want context.Canceled", err)
				}
			case "drain":
				if err != nil {
					t.Errorf("drained run: %v, want nil", err)
				}
			}
			if err := goleak.Find(leaks); err != nil {
				t.Errorf("goroutines left after the sink returned: %v", err)
			}
			r3WaitFor(t, "the run's subscription to go", func() bool { return ncS.NumSubscriptions() <= baseSubs })
			failed := how == "failfast" || how == "sink-error"
			want := map[string]bool{}
			mu.Lock()
			for _, v := range r3Vals(n) {
				if !committed[v] && !(failed && v == a) {
					want[v] = true
				}
			}
			t.Logf("A=%s H=%s, committed %v", a, h, committed)
			mu.Unlock()
			got := r3FetchAll(t, other, want)
			if failed {
				if v, ok := r3NoneFor(t, other, 2*time.Second); ok {
					t.Errorf("the failed message came back at once (%s), want a Nak with the Backoff delay (an hour)", v)
				}
				if !rvHas(t, js, name, seqOf[a]) {
					t.Errorf("the failed message %s was acknowledged or terminated", a)
				}
				if d := rvStreamMsgs(t, js, name+"_DLQ"); d != 0 {
					t.Errorf("%d dead letters for a retryable failure", d)
				}
			} else {
				r3WaitFor(t, "the work queue to empty", func() bool { return rvStreamMsgs(t, js, name) == 0 })
			}
			if d, ok := got[h]; ok && d != 2 {
				t.Errorf("H (%s) came back as delivery %d, want 2", h, d)
			}
		})
	}
}

// A message on its last allowed delivery (MaxDeliver 2) that the run holds
// in its read-ahead (received, not taken: the only worker is busy) when it
// stops: "One on its last allowed delivery, which the server would not
// deliver again, goes to the dead-letter subject instead, if one is set".
// Both stops: cancel (the message in the stage is cut short and nak'ed: a
// second client gets it at once) and drain (it commits).
func TestReview3LastDeliveryHeldInReadAhead(t *testing.T) {
	for _, how := range []string{"cancel", "drain"} {
		t.Run(how, func(t *testing.T) {
			url := startServer(t)
			_, js := connect(t, url)
			name := "R3LAST" + strings.ToUpper(how)
			cons := rvSetup(t, js, name, time.Hour, 2)
			other := r3Other(t, url, name)
			seqX := rvPub(t, js, name+".job", "x")
			// x's first delivery goes to the other client, which holds it.
			batch, err := other.Fetch(1, jetstream.FetchMaxWait(r3Watchdog))
			if err != nil {
				t.Fatal(err)
			}
			var x jetstream.Msg
			for m := range batch.Messages() {
				x = m
			}
			if x == nil || string(x.Data()) != "x" {
				t.Fatalf("the other client did not get x: %v", batch.Error())
			}
			seqA := rvPub(t, js, name+".job", "a")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			entered := make(chan string, 4)
			gate := make(chan struct{})
			var ackErrs sync.Map // what the source could not settle, for the failure message
			onAckErr := func(err error) { ackErrs.Store(err.Error(), true) }
			// The run pulls on a connection of its own, so that the test
			// can see x arrive there (the server counts a delivery before
			// its send queue writes it to the connection).
			_, jsRun, tp := tapConnect(t, url)
			consRun, err := jsRun.Consumer(context.Background(), name, "c")
			if err != nil {
				t.Fatal(err)
			}
			src := natsjs.Source(consRun, decodeString, natsjs.ReadAhead(10), natsjs.DeadLetter(js, "dlq."+name), natsjs.Backoff(time.Hour, time.Hour), natsjs.OnAckError(onAckErr))
			work := stage.Map(stage.Until(src, stop), func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
				entered <- m.Value
				if m.Value == "a" {
					select {
					case <-ctx.Done():
						return "", ctx.Err()
					case <-gate:
					}
				}
				return m.Value, nil
			}, stage.Workers(1))
			var committed sync.Map
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, work, func(_ context.Context, v string) error {
					committed.Store(v, true)
					return nil
				})
			}()
			if v := rvRecv(t, "a in the stage", entered); v != "a" {
				t.Fatalf("%s entered the stage first, want a", v)
			}
			received := tp.received()
			if err := x.Nak(); err != nil { // x comes back: its last delivery, to the run
				t.Fatal(err)
			}
			r3WaitFor(t, "x's second delivery", func() bool { return rvInfo(t, cons).Delivered.Consumer >= 3 })
			r3WaitFor(t, "x at the run's client", func() bool { return tp.received() > received })
			select {
			case v := <-entered:
				t.Fatalf("%s entered the stage while its only worker was busy", v)
			default:
			}
			if how == "cancel" {
				cancel()
			} else {
				drain()
				close(gate)
			}
			err = rvRecv(t, "the run", errc)
			if how == "cancel" && !errors.Is(err, context.Canceled) {
				t.Errorf("run error %v, want context.Canceled", err)
			}
			if how == "drain" && err != nil {
				t.Errorf("drained run: %v, want nil", err)
			}
			if _, ok := committed.Load("x"); ok {
				t.Fatalf("x was committed: the scenario did not hold it in the read-ahead")
			}
			info := rvInfo(t, cons)
			deadline := time.Now().Add(30 * time.Second)
			for rvStreamMsgs(t, js, name+"_DLQ") == 0 || rvHas(t, js, name, seqX) {
				if time.Now().After(deadline) {
					var errs []string
					ackErrs.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return true })
					t.Fatalf("x, on its last delivery and held in the read-ahead at the stop, was not dead-lettered: DLQ holds %d, x still in the work queue %v (NumAckPending %d, NumPending %d, NumRedelivered %d); acknowledgement errors: %q",
						rvStreamMsgs(t, js, name+"_DLQ"), rvHas(t, js, name, seqX), info.NumAckPending, info.NumPending, info.NumRedelivered, errs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			dlq, err := js.Stream(context.Background(), name+"_DLQ")
			if err != nil {
				t.Fatal(err)
			}
			dead, err := dlq.GetLastMsgForSubject(context.Background(), "dlq."+name)
			if err != nil {
				t.Fatal(err)
			}
			if string(dead.Data) != "x" || dead.Header.Get("Sluice-Deliveries") != "2" || dead.Header.Get("Sluice-Stream-Seq") != strconv.FormatUint(seqX, 10) {
				t.Errorf("dead letter %q with headers %v", dead.Data, dead.Header)
			}
			if how == "cancel" {
				r3FetchAll(t, other, map[string]bool{"a": true})
			} else {
				r3WaitFor(t, "a acknowledged", func() bool { return !rvHas(t, js, name, seqA) })
			}
		})
	}
}

// ---------------------------------------------------------------- backoff

// ---------------------------------------------------------------- read-ahead

// ReadAhead: "one replica holds at most n messages beyond what its pipeline
// works on" (100 by default). Held = delivered by the server (its
// Delivered.Consumer; no redelivery here) minus committed minus the one in
// the sink. Checked with the sink blocked (default read-ahead), and step by
// step while the sink takes one message at a time (ReadAhead(10): the source
// asks for more as the pipeline takes them, never more than n).
func TestReview3ReadAheadBound(t *testing.T) {
	for _, c := range []struct {
		name      string
		readAhead int // 0: default
		n, steps  int
	}{{"default-blocked", 0, 300, 1}, {"10-stepwise", 10, 80, 40}} {
		t.Run(c.name, func(t *testing.T) {
			url := startServer(t)
			_, js := connect(t, url)
			name := "R3RA" + strings.ToUpper(strings.ReplaceAll(c.name, "-", ""))
			cons := rvSetup(t, js, name, time.Hour, 0)
			for _, v := range r3Vals(c.n) {
				rvPub(t, js, name+".job", v)
			}
			bound := c.readAhead
			var opts []natsjs.SourceOption
			if bound == 0 {
				bound = natsjs.DefaultReadAhead
			} else {
				opts = append(opts, natsjs.ReadAhead(bound))
			}
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			entered := make(chan struct{}, c.steps)
			next := make(chan struct{})
			var committed atomic.Int64
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(context.Background(), stage.Until(natsjs.Source(cons, decodeString, opts...), stop),
					func(context.Context, natsjs.Msg[string]) error {
						if committed.Load() < int64(c.steps) {
							entered <- struct{}{}
							<-next
						}
						if committed.Add(1) == int64(c.n) {
							drain()
						}
						return nil
					})
			}()
			maxHeld := 0
			for step := range c.steps {
				rvRecv(t, fmt.Sprintf("message %d in the sink", step), entered)
				for range 5 { // a window in which an excess would show
					held := int(rvInfo(t, cons).Delivered.Consumer) - step - 1
					maxHeld = max(maxHeld, held)
					if held > bound {
						drain()
						close(next)
						<-errc
						t.Fatalf("step %d: the source holds %d messages beyond the one in the sink (ReadAhead %d)", step, held, bound)
					}
					time.Sleep(20 * time.Millisecond)
				}
				next <- struct{}{}
			}
			close(next)
			if err := rvRecv(t, "the drained run", errc); err != nil {
				t.Fatalf("drained run: %v", err)
			}
			t.Logf("held at most %d beyond the sink (bound %d)", maxHeld, bound)
			r3WaitFor(t, "the work queue to empty", func() bool { return rvStreamMsgs(t, js, name) == 0 })
		})
	}
}

// Each run of a Source stream keeps its own subscription: the same stream
// value run by two sinks at once shares the consumer's work, every message
// committed once, both runs drained to nil.
func TestReview3OneStreamTwoConcurrentRuns(t *testing.T) {
	const n = 300
	_, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "R3TWO", time.Hour, 0)
	for _, v := range r3Vals(n) {
		rvPub(t, js, "R3TWO.job", v)
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	s := stage.Map(stage.Until(natsjs.Source(cons, decodeString, natsjs.ReadAhead(20)), stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		return m.Value, nil
	}, stage.Workers(2))
	var mu sync.Mutex
	seen := map[string]int{}
	var per [2]int
	errc := make(chan error, 2)
	for i := range 2 {
		go func() {
			errc <- sink.ForEach(context.Background(), s, func(_ context.Context, v string) error {
				mu.Lock()
				defer mu.Unlock()
				seen[v]++
				per[i]++
				if len(seen) == n {
					drain()
				}
				return nil
			})
		}()
	}
	for range 2 {
		if err := rvRecv(t, "a run", errc); err != nil {
			t.Fatalf("a drained run returned %v", err)
		}
	}
	t.Logf("runs committed %v", per)
	checkDrained(t, "two runs", cons, seen, n)
}

// ---------------------------------------------------------------- keep-alive

// KeepAlive: "sends an in-progress acknowledgement every d for each message
// still on its way through the pipeline". On its way: waiting in a partial
// Batch, and in a stage call that goes on after a drain (Until: "calls in
// flight finish"). Meanwhile a second client asks for work for three times
// AckWait; with KeepAlive the message is not delivered again (to anyone:
// the consumer's delivery count stays 1). The control without KeepAlive
// shows that the scenario does hold the message past AckWait. (A stall of
// the process that outlasts the keep-alive's margin lets AckWait pass for
// the kept-alive message too: that redelivery is the machine's, and the
// run then checks nothing; see runcheck.Stalls.)
func TestReview3KeepAliveWhileHeld(t *testing.T) {
	for _, where := range []string{"in-a-batch", "after-drain"} {
		for _, keep := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/keepAlive=%v", where, keep), func(t *testing.T) {
				const ackWait, every = 2 * time.Second, 200 * time.Millisecond
				url := startServer(t)
				_, js := connect(t, url)
				name := "R3KA" + strings.ToUpper(strings.ReplaceAll(where, "-", "")) + strconv.FormatBool(keep)
				cons := rvSetup(t, js, name, ackWait, 0)
				other := r3Other(t, url, name)
				stalls := runcheck.WatchStalls(t)
				seq := rvPub(t, js, name+".job", "x")
				stop, drain := context.WithCancel(context.Background())
				defer drain()
				var opts []natsjs.SourceOption
				if keep {
					opts = append(opts, natsjs.KeepAlive(every))
				}
				entered := make(chan struct{}, 2)
				gate := make(chan struct{})
				m := stage.Map(stage.Until(natsjs.Source(cons, decodeString, opts...), stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
					entered <- struct{}{}
					if where == "after-drain" {
						<-gate
					}
					return m.Value, nil
				}, stage.Workers(1), stage.Buffer(1))
				size := 1
				if where == "in-a-batch" {
					size = 5 // never full: the message waits in the batch
				}
				var committed atomic.Int64
				errc := make(chan error, 1)
				go func() {
					errc <- sink.ForEach(context.Background(), stage.Batch(m, size, 0), func(_ context.Context, b []string) error {
						committed.Add(int64(len(b)))
						return nil
					})
				}()
				rvRecv(t, "x in the pipeline", entered)
				if where == "after-drain" {
					drain()
				}
				fetched := make(chan []jetstream.Msg, 1)
				window := 3 * ackWait
				if !keep {
					window = r3Watchdog
				}
				go func() {
					var got []jetstream.Msg
					batch, err := other.Fetch(1, jetstream.FetchMaxWait(window))
					if err == nil {
						for m := range batch.Messages() {
							got = append(got, m)
						}
					}
					fetched <- got
				}()
				var got []jetstream.Msg
				redelivered := false
				deadline := time.After(window + r3Watchdog)
			wait:
				for {
					select {
					case got = <-fetched:
						redelivered = redelivered || len(got) > 0
						break wait
					case <-deadline:
						t.Fatal("the fetch never returned")
					case <-time.After(50 * time.Millisecond):
						if !keep && rvInfo(t, cons).Delivered.Consumer >= 2 {
							redelivered = true // to the run's own subscription; the fetch returns after its window
						}
					}
				}
				if rvInfo(t, cons).Delivered.Consumer >= 2 {
					redelivered = true
				}
				stalled := keep && redelivered && stalls.Excuse(ackWait-every)
				if keep && redelivered && !stalled {
					t.Errorf("with KeepAlive the message was delivered again while on its way (fetched %d, delivered %d times)", len(got), rvInfo(t, cons).Delivered.Consumer)
				}
				if !keep && !redelivered {
					t.Fatalf("control: without KeepAlive the message was not delivered again after AckWait: the scenario does not hold it")
				}
				for _, m := range got {
					_ = m.Term() // the control's copy: not the run's concern
				}
				if where == "in-a-batch" {
					drain()
				} else {
					close(gate)
				}
				err := rvRecv(t, "the drained run", errc)
				// Kept alive until committed: a redelivery after the check
				// above is excused by a stall alike.
				stalled = stalled || keep && rvInfo(t, cons).Delivered.Consumer >= 2 && stalls.Excuse(ackWait-every)
				if stalled {
					t.Skipf("with KeepAlive the message was delivered again (fetched %d, delivered %d times), but the process stalled for %v (AckWait %v, KeepAlive %v): not checked",
						len(got), rvInfo(t, cons).Delivered.Consumer, stalls.Longest(), ackWait, every)
				}
				if keep {
					if err != nil || committed.Load() != 1 {
						t.Fatalf("drained run: %v, %d committed; want nil and 1", err, committed.Load())
					}
					r3WaitFor(t, "x acknowledged", func() bool { return !rvHas(t, js, name, seq) })
				}
			})
		}
	}
}

// ---------------------------------------------------------------- fan-out

// Outcomes with fan-out (stage.Ack): an item is acknowledged when all its
// outputs are committed, or when it had none; a forwarded error from one of
// its outputs is a Nak with the Backoff delay (not redelivered now, not
// dead-lettered), a Permanent one a Term with a dead letter.
func TestReview3FanOutOutcomes(t *testing.T) {
	_, js, cons, other, seqOf, _ := r3Held(t, "R3FAN", []string{"all", "none", "onefails", "permfails"})
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := natsjs.Source(cons, decodeString, natsjs.Backoff(time.Hour, time.Hour), natsjs.DeadLetter(js, "dlq.R3FAN"))
	outs := stage.FlatMap(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) ([]string, error) {
		if m.Value == "none" {
			return nil, nil
		}
		return []string{m.Value + "/0", m.Value + "/1", m.Value + "/2"}, nil
	}, stage.Workers(2))
	checked := stage.Map(outs, func(_ context.Context, v string) (string, error) {
		switch v {
		case "onefails/1":
			return "", errRetry
		case "permfails/1":
			return "", natsjs.Permanent(errPerm)
		}
		return v, nil
	}, stage.Workers(2), stage.OnError(stage.Forward))
	var calls atomic.Int64
	err := stage.Run(context.Background(), checked, func(context.Context, string, error) error {
		if calls.Add(1) == 3+2+2+2 {
			drain()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("drained run: %v", err)
	}
	r3WaitFor(t, "all and none acknowledged, permfails dead-lettered", func() bool {
		return !rvHas(t, js, "R3FAN", seqOf["all"]) && !rvHas(t, js, "R3FAN", seqOf["none"]) &&
			!rvHas(t, js, "R3FAN", seqOf["permfails"]) && rvStreamMsgs(t, js, "R3FAN_DLQ") == 1
	})
	if !rvHas(t, js, "R3FAN", seqOf["onefails"]) {
		t.Fatal("onefails, one of whose outputs failed, was acknowledged")
	}
	if v, ok := r3NoneFor(t, other, 2*time.Second); ok {
		t.Fatalf("%s came back at once; want onefails nak'ed with an hour's delay", v)
	}
}

// ---------------------------------------------------------------- consumer errors

// "An error of the consumer ends the run with a *stage.SourceError": the
// consumer deleted, its stream deleted, while the source waits for
// messages. And a connection closed for good must end the run with an
// error, not leave it waiting for ever or end it as if the input were done.
func TestReview3ConsumerGoneEndsTheRun(t *testing.T) {
	for _, how := range []string{"delete-consumer", "delete-stream", "close-connection", "closed-before-run"} {
		t.Run(how, func(t *testing.T) {
			url := startServer(t)
			_, js := connect(t, url)
			name := "R3GONE" + strings.ToUpper(strings.ReplaceAll(how, "-", ""))
			admin := rvSetup(t, js, name, time.Hour, 0)
			ncS, jsS := connect(t, url)
			cons, err := jsS.Consumer(context.Background(), name, "c")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if how == "closed-before-run" {
				ncS.Close()
			}
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, natsjs.Source(cons, decodeString), func(context.Context, natsjs.Msg[string]) error { return nil })
			}()
			if how != "closed-before-run" {
				r3WaitFor(t, "the source's pull request", func() bool { return rvInfo(t, admin).NumWaiting > 0 })
			}
			switch how {
			case "delete-consumer":
				err = js.DeleteConsumer(context.Background(), name, "c")
			case "delete-stream":
				err = js.DeleteStream(context.Background(), name)
			case "close-connection":
				ncS.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errc:
				var se *stage.SourceError
				if !strings.HasPrefix(how, "close") && !errors.As(err, &se) {
					t.Fatalf("run error %v (%T), want a *stage.SourceError", err, err)
				}
				if err == nil {
					t.Fatalf("the run ended with nil after its connection closed: as if its input were done")
				}
				t.Logf("run error: %v", err)
			case <-time.After(r3Watchdog):
				cancel()
				err := rvRecv(t, "the run after cancelling it", errc)
				t.Fatalf("the run did not end within %v after %s (it ended with %v once cancelled)", r3Watchdog, how, err)
			}
		})
	}
}

// ---------------------------------------------------------------- Publish

// Publish: "a failed publish ... ends the run with a *stage.Error (Stage
// "foreach")": a payload over the server's maximum is such a failure (not a
// hang, not a panic), and the source message it came from is not acked.
func TestReview3PublishOversizedPayload(t *testing.T) {
	_, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "R3BIG", time.Hour, 0)
	rpStream(t, js, jetstream.StreamConfig{Name: "R3BIGOUT", Subjects: []string{"r3big.out"}})
	seq := rvPub(t, js, "R3BIG.job", "x")
	ctx, cancel := context.WithTimeout(context.Background(), r3Watchdog)
	defer cancel()
	var counts natsjs.Published
	err := natsjs.Publish(ctx, js, natsjs.Source(cons, decodeString), func(m natsjs.Msg[string]) (*nats.Msg, error) {
		return &nats.Msg{Subject: "r3big.out", Data: make([]byte, 4<<20)}, nil
	}, func(m natsjs.Msg[string]) string { return "id-" + m.Value }, &counts)
	se := rpStageError(t, err)
	t.Logf("error: %v", se)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish hung until the watchdog: %v", err)
	}
	if !rvHas(t, js, "R3BIG", seq) {
		t.Fatal("the source message was acknowledged although its publish failed")
	}
	if s, d := rpLoad(&counts); s != 0 || d != 0 {
		t.Fatalf("counts %d stored %d duplicates, want none", s, d)
	}
}

// ---------------------------------------------------------------- no crash

// A panic in user code never crashes the process and surfaces as an error;
// misuse panics (if at all) with a message prefixed "sluice:"; a valid option
// value works. Each scenario runs in a child process.
func TestReview3NoCrash(t *testing.T) {
	for _, mode := range []string{
		"decode-panic-nil", "decode-panic-runtime", "decode-panic-gives-back",
		"onackerror-panic-keepalive", "onackerror-panic-commit",
		"zero-option", "source-nil-decode", "source-nil-consumer",
		"publish-nil-js", "publish-nil-msg", "publish-nil-id", "publish-msg-returns-nil",
		"readahead-max",
	} {
		t.Run(mode, func(t *testing.T) { r3InChild(t, mode) })
	}
}

func TestReview3Child(t *testing.T) {
	mode := os.Getenv(r3ChildEnv)
	if mode == "" {
		t.Skip("run in a child process by TestReview3NoCrash")
	}
	url := startServer(t)
	ncS, js := connect(t, url)
	name := "R3CHILD"
	cons := rvSetup(t, js, name, time.Hour, 0)
	ctx, cancel := context.WithTimeout(context.Background(), r3Watchdog)
	defer cancel()
	pub := func(vs ...string) map[string]uint64 {
		seqs := map[string]uint64{}
		for _, v := range vs {
			seqs[v] = rvPub(t, js, name+".job", v)
		}
		return seqs
	}
	logf := func(format string, args ...any) { t.Logf("CHILD: "+mode+": "+format, args...) }
	// buildOrRun: building may panic with "sluice: ..."; else the run must
	// end with an error (a nil error would mean it silently did nothing).
	buildOrRun := func(build func() stage.Stream[natsjs.Msg[string]]) {
		var s stage.Stream[natsjs.Msg[string]]
		msg, panicked := r3PanicMsg(func() { s = build() })
		if panicked {
			if !strings.HasPrefix(msg, "sluice: ") {
				t.Fatalf("building panicked with %q, not a \"sluice:\" message", msg)
			}
			logf("build panicked: %s", msg)
			return
		}
		err := sink.ForEach(ctx, s, func(context.Context, natsjs.Msg[string]) error { return nil })
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the run of a misbuilt source returned %v, want an error", err)
		}
		logf("run error: %v", err)
	}
	switch mode {
	case "decode-panic-nil", "decode-panic-runtime":
		seqs := pub("0", "1", "bad", "2")
		var m map[string]int
		decode := func(b []byte) (string, error) {
			if string(b) == "bad" {
				if mode == "decode-panic-nil" {
					panic(nil)
				}
				m["x"]++ // assignment to entry in nil map
			}
			return string(b), nil
		}
		stop, drain := context.WithCancel(ctx)
		defer drain()
		var committed atomic.Int64
		errc := make(chan error, 1)
		go func() {
			errc <- sink.ForEach(ctx, stage.Until(natsjs.Source(cons, decode, natsjs.DeadLetter(js, "dlq."+name)), stop),
				func(context.Context, natsjs.Msg[string]) error { committed.Add(1); return nil })
		}()
		var err error
		returned := false
		r3WaitFor(t, "the run to fail or bad to be dead-lettered", func() bool {
			select {
			case err = <-errc:
				returned = true
				return true
			default:
			}
			return committed.Load() == 3 && rvStreamMsgs(t, js, name+"_DLQ") == 1
		})
		if !returned {
			drain()
			err = rvRecv(t, "the drained run", errc)
			logf("the panic was treated as undecodable (dead-lettered); run error %v", err)
			return
		}
		var pe *stage.PanicError
		if !errors.As(err, &pe) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("run error %v, want one wrapping a *stage.PanicError", err)
		}
		if !rvHas(t, js, name, seqs["bad"]) {
			t.Fatal("the message whose decode panicked was acknowledged")
		}
		logf("run error: %v", err)

	case "decode-panic-gives-back":
		// The run that a decode panic ends still gives back at once what
		// it held and did not settle (Source: "every message the run held
		// but did not settle ... is nak'ed once the run's goroutines have
		// exited").
		const n = 20
		other := r3Other(t, url, name)
		pub(r3Vals(n)...)
		entered := make(chan struct{}, 1)
		exploded := make(chan struct{})
		decode := func(b []byte) (string, error) {
			if string(b) == "5" {
				close(exploded)
				panic("decode exploded")
			}
			return string(b), nil
		}
		var mu sync.Mutex
		committed := map[string]bool{}
		work := stage.Map(natsjs.Source(cons, decode, natsjs.ReadAhead(8)), func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
			if m.Value == "0" {
				entered <- struct{}{}
				<-exploded // held until decode panicked (a source error lets it finish)
				return m.Value, nil
			}
			return m.Value, nil
		}, stage.Workers(2), stage.Buffer(1)) // Buffer: "0" must not hold the sink's goroutine
		err := sink.ForEach(ctx, work, func(_ context.Context, v string) error {
			mu.Lock()
			committed[v] = true
			mu.Unlock()
			return nil
		})
		var pe *stage.PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("run error %v, want one wrapping the decode's *stage.PanicError", err)
		}
		select {
		case <-entered:
		default:
			logf("0 never reached the stage")
		}
		want, maybe := map[string]bool{}, map[string]bool{"5": true}
		for _, v := range r3Vals(n) {
			if !committed[v] && v != "5" {
				want[v] = true
			}
		}
		logf("run error %v; committed %d; expecting %d back at once", err, len(committed), len(want))
		got := r3FetchSet(t, other, want, maybe)
		_, back := got["5"]
		logf("the message whose decode panicked came back at once: %v", back)

	case "onackerror-panic-keepalive", "onackerror-panic-commit":
		pub("x")
		calls := make(chan error, 100)
		opts := []natsjs.SourceOption{natsjs.OnAckError(func(err error) {
			calls <- err
			panic("OnAckError exploded")
		})}
		if mode == "onackerror-panic-keepalive" {
			opts = append(opts, natsjs.KeepAlive(20*time.Millisecond))
		}
		entered := make(chan struct{}, 1)
		gate := make(chan struct{})
		work := stage.Map(natsjs.Source(cons, decodeString, opts...), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
			entered <- struct{}{}
			<-gate
			return m.Value, nil
		}, stage.Workers(1))
		errc := make(chan error, 1)
		go func() {
			errc <- sink.ForEach(ctx, work, func(context.Context, string) error { return nil })
		}()
		rvRecv(t, "x in the stage", entered)
		ncS.Close() // every acknowledgement from now on cannot be sent
		if mode == "onackerror-panic-keepalive" {
			select {
			case err := <-calls:
				logf("OnAckError called for an in-progress ack: %v", err)
			case <-time.After(10 * time.Second):
				logf("OnAckError not called for in-progress acks within 10 s")
			}
		}
		close(gate)
		err := rvRecv(t, "the run", errc)
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("run error %v, want an error", err)
		}
		var pe *stage.PanicError
		logf("run error: %v (wraps the panic: %v); OnAckError calls: %d", err, errors.As(err, &pe), len(calls))

	case "zero-option":
		pub("0", "1", "2")
		var s stage.Stream[natsjs.Msg[string]]
		msg, panicked := r3PanicMsg(func() { s = natsjs.Source(cons, decodeString, natsjs.SourceOption{}) })
		if panicked {
			if !strings.HasPrefix(msg, "sluice: ") {
				t.Fatalf("the zero SourceOption panicked with %q, not a \"sluice:\" message", msg)
			}
			logf("build panicked: %s", msg)
			return
		}
		stop, drain := context.WithCancel(ctx)
		defer drain()
		var n atomic.Int64
		err := sink.ForEach(ctx, stage.Until(s, stop), func(context.Context, natsjs.Msg[string]) error {
			if n.Add(1) == 3 {
				drain()
			}
			return nil
		})
		logf("run with the zero SourceOption: %v, %d committed", err, n.Load())
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the run hung: %v", err)
		}

	case "source-nil-decode":
		pub("0")
		buildOrRun(func() stage.Stream[natsjs.Msg[string]] { return natsjs.Source[string](cons, nil) })

	case "source-nil-consumer":
		buildOrRun(func() stage.Stream[natsjs.Msg[string]] { return natsjs.Source[string](nil, decodeString) })

	case "publish-nil-js", "publish-nil-msg", "publish-nil-id", "publish-msg-returns-nil":
		rpStream(t, js, jetstream.StreamConfig{Name: "R3OUT", Subjects: []string{"r3.out"}})
		pjs := js
		msgf := func(i int) (*nats.Msg, error) {
			return &nats.Msg{Subject: "r3.out", Data: []byte(strconv.Itoa(i))}, nil
		}
		idf := func(i int) string { return "id-" + strconv.Itoa(i) }
		switch mode {
		case "publish-nil-js":
			pjs = nil
		case "publish-nil-msg":
			msgf = nil
		case "publish-nil-id":
			idf = nil
		case "publish-msg-returns-nil":
			msgf = func(int) (*nats.Msg, error) { return nil, nil }
		}
		var err error
		msg, panicked := r3PanicMsg(func() {
			err = natsjs.Publish(ctx, pjs, source.Slice([]int{1, 2}), msgf, idf, nil)
		})
		if mode != "publish-msg-returns-nil" { // misuse: "Publish panics, before it runs s, if js, msg or id is nil"
			if !panicked || !strings.HasPrefix(msg, "sluice: natsjs.Publish:") {
				t.Fatalf("Publish with %s: panicked %v with %q, want a \"sluice: natsjs.Publish:\" panic", mode, panicked, msg)
			}
			if stored := rvStreamMsgs(t, js, "R3OUT"); stored != 0 {
				t.Fatalf("Publish with %s stored %d messages before it panicked", mode, stored)
			}
			logf("panicked: %s", msg)
			return
		}
		var se *stage.Error
		if panicked || !errors.As(err, &se) || se.Stage != "foreach" || !errors.Is(err, natsjs.ErrNilMsg) {
			t.Fatalf("msg returned a nil message: Publish panicked %v (%q), returned %v; want a *stage.Error (Stage foreach) wrapping ErrNilMsg", panicked, msg, err)
		}
		logf("Publish returned %v", err)

	case "readahead-max":
		const n = 20
		pub(r3Vals(n)...)
		ra := natsjs.MaxReadAhead // the largest valid read-ahead runs (a larger one panics when made)
		stop, drain := context.WithCancel(ctx)
		defer drain()
		var k atomic.Int64
		err := sink.ForEach(ctx, stage.Until(natsjs.Source(cons, decodeString, natsjs.ReadAhead(ra)), stop), func(context.Context, natsjs.Msg[string]) error {
			if k.Add(1) == n {
				drain()
			}
			return nil
		})
		if err != nil || k.Load() != n {
			t.Fatalf("ReadAhead(%d), a valid option: run returned %v after %d of %d messages", ra, err, k.Load(), n)
		}
		logf("ok")

	default:
		t.Fatalf("unknown mode %q", mode)
	}
}

// ---------------------------------------------------------------- the acknowledgements on the wire

// r3AckLog records the acknowledgements sent for one stream's messages, by
// delivery (the ack subject names one delivery of one message): a plain
// subscriber on $JS.ACK.> sees every client's acks. It is a channel
// subscription, which the client fills from its read loop: once a flush of
// its connection returns, every ack routed to it before is in the channel.
type r3AckLog struct {
	nc     *nats.Conn
	stream string
	ch     chan *nats.Msg
	bySubj map[string][]string
	total  int
}

func r3WatchAcks(t *testing.T, url, stream string) *r3AckLog {
	t.Helper()
	nc, _ := connect(t, url)
	l := &r3AckLog{nc: nc, stream: stream, ch: make(chan *nats.Msg, 1<<16), bySubj: map[string][]string{}}
	if _, err := nc.ChanSubscribe("$JS.ACK.>", l.ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return l
}

// sync makes sure every ack the source's connection sent has reached the log.
func (l *r3AckLog) sync(t *testing.T, src *nats.Conn) {
	t.Helper()
	if err := src.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// snapshot takes what arrived (call it from the test's goroutine only).
func (l *r3AckLog) snapshot() (map[string][]string, int) {
	for {
		select {
		case m := <-l.ch:
			if strings.Contains(m.Subject, "."+l.stream+".") {
				l.bySubj[m.Subject] = append(l.bySubj[m.Subject], string(m.Data))
				l.total++
			}
			continue
		default:
		}
		break
	}
	c := make(map[string][]string, len(l.bySubj))
	for k, v := range l.bySubj {
		c[k] = append([]string(nil), v...)
	}
	return c, l.total
}

// r3AckSeq returns the stream sequence and delivery count an ack subject
// names ($JS.ACK.[<domain>.<hash>.]<stream>.<consumer>.<delivered>.<sseq>...).
func r3AckSeq(subject, stream string) (seq, delivered uint64) {
	toks := strings.Split(subject, ".")
	for i, tk := range toks {
		if tk == stream && i+3 < len(toks) {
			delivered, _ = strconv.ParseUint(toks[i+2], 10, 64)
			seq, _ = strconv.ParseUint(toks[i+3], 10, 64)
			return
		}
	}
	return 0, 0
}

// r3Terminal classifies an ack body: "ack", "term", "nak" (with its delay,
// -1 when none), or "" for an in-progress or unknown one.
func r3Terminal(body string) (kind string, delay time.Duration) {
	switch {
	case strings.HasPrefix(body, "+ACK"), strings.HasPrefix(body, "+NXT"), body == "":
		return "ack", 0
	case strings.HasPrefix(body, "+TERM"):
		return "term", 0
	case strings.HasPrefix(body, "-NAK"):
		var d struct {
			Delay int64 `json:"delay"`
		}
		rest := strings.TrimSpace(strings.TrimPrefix(body, "-NAK"))
		if rest == "" || json.Unmarshal([]byte(rest), &d) != nil {
			return "nak", -1
		}
		return "nak", time.Duration(d.Delay)
	}
	return "", 0
}

// Every delivery the run got is settled at most once (Ack, Nak or Term;
// stage.Ack: "Done is called at most once per item"), in-progress acks
// (KeepAlive) never follow a delivery's settlement, nothing at all is sent
// once the sink has returned, each settlement matches the outcome table (an
// Ack only for a committed or dropped message, a Term only for an
// undecodable or permanently failed one, a delayed Nak only for a retryable
// failure, an immediate Nak for a message the run cut short), and every
// message the run held and did not settle comes back at once to a second
// client (Source: it "is nak'ed once the run's goroutines have exited").
func TestReview3OneSettlementPerDelivery(t *testing.T) {
	const n = 40
	kinds := []string{"ok", "retry", "perm", "garbage", "drop"}
	url := startServer(t)
	var asyncErrs atomic.Int64
	ncS, err := nats.Connect(url, dialWait, nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		asyncErrs.Add(1)
		t.Logf("async error: %v", err)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ncS.Close)
	js, err := jetstream.New(ncS)
	if err != nil {
		t.Fatal(err)
	}
	cons := rvSetup(t, js, "R3SET", time.Hour, 0)
	other := r3Other(t, url, "R3SET")
	kindOf, valueOf := map[uint64]string{}, map[uint64]string{}
	for i := range n {
		k := kinds[i%len(kinds)]
		v := fmt.Sprintf("%s-%d", k, i)
		seq := rvPub(t, js, "R3SET.job", v)
		kindOf[seq], valueOf[seq] = k, v
	}
	log := r3WatchAcks(t, url, "R3SET")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	decode := func(b []byte) (string, error) {
		if strings.HasPrefix(string(b), "garbage") {
			return "", errors.New("undecodable")
		}
		return string(b), nil
	}
	src := natsjs.Source(cons, decode, natsjs.ReadAhead(6), natsjs.KeepAlive(10*time.Millisecond),
		natsjs.Backoff(time.Hour, time.Hour), natsjs.DeadLetter(js, "dlq.R3SET"))
	kept := stage.Filter(src, func(_ context.Context, m natsjs.Msg[string]) (bool, error) {
		return !strings.HasPrefix(m.Value, "drop"), nil
	}, stage.Workers(2))
	var oks atomic.Int64
	work := stage.Map(kept, func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
		switch {
		case strings.HasPrefix(m.Value, "retry"):
			return "", errRetry
		case strings.HasPrefix(m.Value, "perm"):
			return "", natsjs.Permanent(errPerm)
		}
		if oks.Add(1) > 4 { // later ones are held until the run is cancelled
			<-ctx.Done()
			return "", ctx.Err()
		}
		return m.Value, nil
	}, stage.Workers(3), stage.OnError(stage.Forward))
	var committed atomic.Int64
	err = sink.ForEach(ctx, work, func(context.Context, string) error {
		if committed.Add(1) == 4 {
			go func() {
				// cancel once the pipeline holds messages: a fifth ok one in
				// the stage (the ack log shows the read-ahead is refilled)
				for oks.Load() <= 4 && ctx.Err() == nil {
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
			}()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run error %v, want context.Canceled", err)
	}
	log.sync(t, ncS)

	acks, total := log.snapshot()
	delivered := rvInfo(t, cons).Delivered.Consumer
	// A window: nothing more may be sent for a run that has returned (a
	// KeepAlive every 10 ms would show at once; so would a late Nak).
	time.Sleep(500 * time.Millisecond)
	log.sync(t, ncS)
	if later, after := log.snapshot(); after != total {
		var late []string
		for subj, bodies := range later {
			seq, d := r3AckSeq(subj, "R3SET")
			for _, b := range bodies[len(acks[subj]):] {
				late = append(late, fmt.Sprintf("seq %d (%s) delivery %d: %q", seq, kindOf[seq], d, b))
			}
		}
		t.Errorf("%d acknowledgements sent after the sink returned: %v", after-total, late)
	}

	settled := 0
	byOutcome := map[string]int{}
	defer func() { t.Logf("%d deliveries; settlements by kind and body: %v", delivered, byOutcome) }()
	for subj, bodies := range acks {
		seq, d := r3AckSeq(subj, "R3SET")
		kind := kindOf[seq]
		var terms []string
		for _, b := range bodies {
			k, delay := r3Terminal(b)
			if k == "" {
				if len(terms) > 0 {
					t.Errorf("seq %d (%s) delivery %d: %q after its settlement %v", seq, kind, d, b, terms)
				}
				continue
			}
			terms = append(terms, b)
			byOutcome[kind+" "+b]++
			ok := false
			switch k {
			case "ack":
				ok = kind == "ok" || kind == "drop"
			case "term":
				ok = kind == "garbage" || kind == "perm"
			case "nak":
				ok = delay <= 0 || (kind == "retry" && delay == time.Hour)
			}
			if !ok {
				t.Errorf("seq %d (%s) delivery %d settled with %q, which its outcome does not allow", seq, kind, d, b)
			}
		}
		switch len(terms) {
		case 0:
		case 1:
			settled++
		default:
			t.Errorf("seq %d (%s) delivery %d settled %d times: %v", seq, kind, d, len(terms), terms)
		}
	}
	// A delivery that got no settlement at all (the server delivered it to
	// the run's pull request as the run stopped) must not be stranded: it
	// comes back at once, as the ones nak'ed at the stop do. Deliveries
	// here are those of sequences 1..delivered (no redelivery during the
	// run: AckWait and Backoff are an hour).
	want, maybe := map[string]bool{}, map[string]bool{}
	var void []uint64
	for seq := uint64(1); seq <= n; seq++ {
		final := ""
		var delay time.Duration
		for subj, bodies := range acks {
			if s, _ := r3AckSeq(subj, "R3SET"); s == seq {
				for _, b := range bodies {
					if k, d := r3Terminal(b); k != "" {
						final, delay = k, d
					}
				}
			}
		}
		switch {
		case final == "" && seq <= delivered:
			want[valueOf[seq]] = true
			void = append(void, seq)
		case final == "", final == "nak" && delay <= 0:
			maybe[valueOf[seq]] = true
		}
	}
	t.Logf("%d of %d deliveries settled by the run; delivered and never settled: %v", settled, delivered, void)
	r3FetchSet(t, other, want, maybe)
}

// Backoff on the wire: the Nak of a retryable failure at the n-th delivery
// carries the delay base·2^(n-1), capped at max ("The default is 1 s, capped
// at 1 min"). Earlier deliveries are made (and nak'ed at once) by another
// client; the ack log then sees only the run's Nak.
func TestReview3BackoffDelayOnTheWire(t *testing.T) {
	for _, c := range []struct {
		base, max time.Duration // base < 0: the default
		n         int
		want      time.Duration
	}{
		{time.Second, time.Minute, 1, time.Second},
		{time.Second, time.Minute, 2, 2 * time.Second},
		{time.Second, time.Minute, 3, 4 * time.Second},
		{time.Second, time.Minute, 6, 32 * time.Second},
		{time.Second, time.Minute, 7, time.Minute},
		{time.Second, time.Minute, 41, time.Minute},
		{-1, 0, 1, time.Second},
		{-1, 0, 4, 8 * time.Second},
		{-1, 0, 41, time.Minute},
		{time.Millisecond, time.Hour, 70, time.Hour},
		{1, time.Hour, 40, 1 << 39},
		{1, time.Hour, 63, time.Hour},
		{1, time.Hour, 64, time.Hour},
		{1, time.Hour, 65, time.Hour},
		{0, time.Hour, 5, 0},
		{3 * time.Hour, 10 * time.Hour, 3, 10 * time.Hour},
		{3 * time.Hour, 10 * time.Hour, 21, 10 * time.Hour},
		{math.MaxInt64, math.MaxInt64, 2, math.MaxInt64},
	} {
		t.Run(fmt.Sprintf("base=%v,max=%v,delivery=%d", c.base, c.max, c.n), func(t *testing.T) {
			url := startServer(t)
			ncS, js := connect(t, url)
			cons := rvSetup(t, js, "R3WIRE", time.Hour, 0)
			other := r3Other(t, url, "R3WIRE")
			rvPub(t, js, "R3WIRE.job", "x")
			for i := range c.n - 1 {
				batch, err := other.Fetch(1, jetstream.FetchMaxWait(r3Watchdog))
				if err != nil {
					t.Fatal(err)
				}
				got := false
				for m := range batch.Messages() {
					got = true
					if err := m.Nak(); err != nil {
						t.Fatal(err)
					}
				}
				if !got {
					t.Fatalf("delivery %d did not come", i+1)
				}
			}
			log := r3WatchAcks(t, url, "R3WIRE") // from here on, only the run acks
			var opts []natsjs.SourceOption
			if c.base >= 0 {
				opts = append(opts, natsjs.Backoff(c.base, c.max))
			}
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			var deliveries atomic.Uint64
			work := stage.Map(stage.Until(natsjs.Source(cons, decodeString, opts...), stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
				// The first delivery the run saw: with no delay (base 0),
				// the Nak'ed message may come back before the drain.
				deliveries.CompareAndSwap(0, m.Deliveries)
				return "", errRetry
			}, stage.OnError(stage.Forward))
			if err := stage.Run(context.Background(), work, func(_ context.Context, _ string, err error) error {
				if err != nil {
					drain()
				}
				return nil
			}); err != nil {
				t.Fatalf("drained run: %v", err)
			}
			if d := deliveries.Load(); d != uint64(c.n) {
				t.Fatalf("Msg.Deliveries = %d, want %d", d, c.n)
			}
			log.sync(t, ncS)
			acks, _ := log.snapshot()
			var bodies []string
			for subj, bs := range acks {
				if _, d := r3AckSeq(subj, "R3WIRE"); d == uint64(c.n) { // the run's delivery (another client's last Nak may arrive late)
					bodies = append(bodies, bs...)
				}
			}
			if len(bodies) != 1 {
				t.Fatalf("the run sent %v, want one Nak", bodies)
			}
			k, delay := r3Terminal(bodies[0])
			if delay < 0 {
				delay = 0 // a Nak without delay: redelivered at once
			}
			if k != "nak" || delay != c.want {
				t.Fatalf("the run sent %q (delay %v) for a retryable failure at delivery %d, want a Nak with delay %v", bodies[0], delay, c.n, c.want)
			}
		})
	}
}

// ---------------------------------------------------------------- last delivery

// "failed on its last allowed delivery (MaxDeliver) ...: Term, after
// publishing it to the dead-letter subject": whatever the failure is (a
// FailFast error or a panic at this message in a stage, a failed commit).
func TestReview3FailureOnLastDelivery(t *testing.T) {
	for _, how := range []string{"stage-failfast", "stage-panic", "sink-error"} {
		t.Run(how, func(t *testing.T) {
			url := startServer(t)
			_, js := connect(t, url)
			name := "R3LF" + strings.ToUpper(strings.ReplaceAll(how, "-", ""))
			cons := rvSetup(t, js, name, time.Hour, 2)
			other := r3Other(t, url, name)
			seq := rvPub(t, js, name+".job", "x")
			batch, err := other.Fetch(1, jetstream.FetchMaxWait(r3Watchdog))
			if err != nil {
				t.Fatal(err)
			}
			got := false
			for m := range batch.Messages() {
				got = true
				if err := m.Nak(); err != nil { // delivery 1 fails elsewhere
					t.Fatal(err)
				}
			}
			if !got {
				t.Fatal("the first delivery did not come")
			}
			var deliveries atomic.Uint64
			work := stage.Map(natsjs.Source(cons, decodeString, natsjs.DeadLetter(js, "dlq."+name), natsjs.Backoff(time.Hour, time.Hour)),
				func(_ context.Context, m natsjs.Msg[string]) (string, error) {
					deliveries.Store(m.Deliveries)
					switch how {
					case "stage-failfast":
						return "", errRetry
					case "stage-panic":
						panic("boom on the last delivery")
					}
					return m.Value, nil
				})
			ctx, cancel := context.WithTimeout(context.Background(), r3Watchdog)
			defer cancel()
			err = sink.ForEach(ctx, work, func(context.Context, string) error { return errRetry })
			var se *stage.Error
			if !errors.As(err, &se) {
				t.Fatalf("run error %v, want a *stage.Error", err)
			}
			if deliveries.Load() != 2 {
				t.Fatalf("the run saw delivery %d, want 2 (the last)", deliveries.Load())
			}
			r3WaitFor(t, "x dead-lettered and gone from the work queue", func() bool {
				return rvStreamMsgs(t, js, name+"_DLQ") == 1 && !rvHas(t, js, name, seq)
			})
		})
	}
}

// ---------------------------------------------------------------- liveness

// A replica makes progress whatever the read-ahead and the consumer's
// MaxAckPending (smaller than ReadAhead here, or ReadAhead(1) under many
// workers): every message committed once, the drained run returns nil.
func TestReview3ProgressWithTightLimits(t *testing.T) {
	for _, c := range []struct {
		name                     string
		maxAckPending, readAhead int
		workers, n               int
	}{{"maxackpending-2", 2, 0, 4, 60}, {"readahead-1", 1000, 1, 8, 200}} {
		t.Run(c.name, func(t *testing.T) {
			_, js := connect(t, startServer(t))
			ctx := context.Background()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3TIGHT", Subjects: []string{"R3TIGHT.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
				t.Fatal(err)
			}
			cons, err := js.CreateOrUpdateConsumer(ctx, "R3TIGHT", jetstream.ConsumerConfig{
				Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour, MaxAckPending: c.maxAckPending,
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range r3Vals(c.n) {
				rvPub(t, js, "R3TIGHT.job", v)
			}
			var opts []natsjs.SourceOption
			if c.readAhead > 0 {
				opts = append(opts, natsjs.ReadAhead(c.readAhead))
			}
			stop, drain := context.WithCancel(ctx)
			defer drain()
			runCtx, cancel := context.WithTimeout(ctx, r3Watchdog)
			defer cancel()
			var mu sync.Mutex
			seen := map[string]int{}
			err = sink.ForEach(runCtx, stage.Map(stage.Until(natsjs.Source(cons, decodeString, opts...), stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
				return m.Value, nil
			}, stage.Workers(c.workers)), func(_ context.Context, v string) error {
				mu.Lock()
				defer mu.Unlock()
				if seen[v]++; len(seen) == c.n {
					drain()
				}
				return nil
			})
			if err != nil {
				t.Fatalf("run: %v after %d of %d messages", err, len(seen), c.n)
			}
			checkDrained(t, c.name, cons, seen, c.n)
		})
	}
}

// ---------------------------------------------------------------- early stops by the sink

// stage.Ack: "the sink committed it (its callback returned nil or ErrStop;
// the item sink.First returns, or the one before a break out of sink.All,
// counts)": those are acknowledged; every other message the run held is
// given back at once (a second client gets it; AckWait is an hour). A panic
// in the body of a range over sink.All stops the run and continues.
func TestReview3EarlyStopBySink(t *testing.T) {
	for _, how := range []string{"errstop", "first", "all-break", "all-panic"} {
		t.Run(how, func(t *testing.T) {
			const n = 20
			name := "R3ES" + strings.ToUpper(strings.ReplaceAll(how, "-", ""))
			ncS, js, cons, other, seqOf, _ := r3Held(t, name, r3Vals(n))
			ctx, cancel := context.WithTimeout(context.Background(), r3Watchdog)
			defer cancel()
			leaks := goleak.IgnoreCurrent()
			baseSubs := ncS.NumSubscriptions()
			src := natsjs.Source(cons, decodeString, natsjs.ReadAhead(5))
			var yielded []string
			var err error
			switch how {
			case "errstop":
				err = sink.ForEach(ctx, src, func(_ context.Context, m natsjs.Msg[string]) error {
					yielded = append(yielded, m.Value)
					if len(yielded) == 3 {
						return stage.ErrStop
					}
					return nil
				})
			case "first":
				var m natsjs.Msg[string]
				var ok bool
				m, ok, err = sink.First(ctx, src)
				if !ok {
					t.Fatalf("First: %v", err)
				}
				yielded = append(yielded, m.Value)
			case "all-break":
				for m, e := range sink.All(ctx, src) {
					if e != nil {
						err = e
						break
					}
					yielded = append(yielded, m.Value)
					if len(yielded) == 3 {
						break
					}
				}
			case "all-panic":
				msg, panicked := r3PanicMsg(func() {
					for m, e := range sink.All(ctx, src) {
						if e != nil {
							err = e
							return
						}
						yielded = append(yielded, m.Value)
						if len(yielded) == 3 {
							panic("loop body exploded")
						}
					}
				})
				if !panicked || msg != "loop body exploded" {
					t.Fatalf("the loop's panic: %v %q", panicked, msg)
				}
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if err := goleak.Find(leaks); err != nil {
				t.Errorf("goroutines left after the sink returned: %v", err)
			}
			r3WaitFor(t, "the run's subscription to go", func() bool { return ncS.NumSubscriptions() <= baseSubs })
			want, maybe := map[string]bool{}, map[string]bool{}
			done := map[string]bool{}
			for i, v := range yielded {
				if how == "all-panic" && i == len(yielded)-1 {
					maybe[v] = true // its fate is not documented
				} else {
					done[v] = true
				}
			}
			for _, v := range r3Vals(n) {
				if !done[v] && !maybe[v] {
					want[v] = true
				}
			}
			for v := range done {
				if rvHas(t, js, name, seqOf[v]) {
					r3WaitFor(t, "the committed message "+v+" acknowledged", func() bool { return !rvHas(t, js, name, seqOf[v]) })
				}
			}
			r3FetchSet(t, other, want, maybe)
		})
	}
}

// decode is called for one message at a time (stage.Source: "The run calls
// next only when a stage (or the sink) is ready ..., never concurrently"):
// a decode that is not safe for concurrent use works under many workers.
func TestReview3DecodeNeverConcurrent(t *testing.T) {
	const n = 300
	_, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "R3DEC", time.Hour, 0)
	for _, v := range r3Vals(n) {
		rvPub(t, js, "R3DEC.job", v)
	}
	var inside, overlaps atomic.Int32
	calls := 0 // a plain counter: the race detector sees concurrent calls
	decode := func(b []byte) (string, error) {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		calls++
		inside.Add(-1)
		return string(b), nil
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var committed atomic.Int64
	err := sink.ForEach(context.Background(), stage.Map(stage.Until(natsjs.Source(cons, decode), stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		return m.Value, nil
	}, stage.Workers(8)), func(context.Context, string) error {
		if committed.Add(1) == n {
			drain()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if o := overlaps.Load(); o > 0 {
		t.Fatalf("decode was called concurrently %d times", o)
	}
	t.Logf("%d decode calls", calls)
}

// A drain while decode runs (decode ignores contexts): "A drained run takes
// no more messages and settles what it took", the sink returns nil, and
// every message not committed is given back at once.
func TestReview3DrainDuringDecode(t *testing.T) {
	const n = 12
	url := startServer(t)
	_, js := connect(t, url)
	cons := rvSetup(t, js, "R3DD", time.Hour, 0)
	other := r3Other(t, url, "R3DD")
	for _, v := range r3Vals(n) {
		rvPub(t, js, "R3DD.job", v)
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	entered := make(chan string, 1)
	release := make(chan struct{})
	var calls atomic.Int32
	decode := func(b []byte) (string, error) {
		if calls.Add(1) == 3 {
			entered <- string(b)
			<-release
		}
		return string(b), nil
	}
	var mu sync.Mutex
	committed := map[string]bool{}
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(context.Background(), stage.Until(natsjs.Source(cons, decode, natsjs.ReadAhead(4)), stop), func(_ context.Context, m natsjs.Msg[string]) error {
			mu.Lock()
			committed[m.Value] = true
			mu.Unlock()
			return nil
		})
	}()
	v := rvRecv(t, "the third decode", entered)
	drain()
	close(release)
	if err := rvRecv(t, "the drained run", errc); err != nil {
		t.Fatalf("drained run: %v", err)
	}
	want := map[string]bool{}
	mu.Lock()
	for _, x := range r3Vals(n) {
		if !committed[x] {
			want[x] = true
		}
	}
	t.Logf("decoding %s at the drain; committed %v", v, committed)
	mu.Unlock()
	r3FetchAll(t, other, want)
	r3WaitFor(t, "the work queue to empty", func() bool { return rvStreamMsgs(t, js, "R3DD") == 0 })
}

// The connection drops and comes back under a running replica: the server
// restarts, or the TCP connection is cut and the client reconnects to the
// same server. The subscription misses its heartbeats; Source: "the source
// asks the server again on the same subscription and goes on, and messages
// the server delivered into the stall are taken when they arrive", and it
// "holds up to ReadAhead messages". Every message must be committed (at
// least once: with a short AckWait an ack lost in the outage, or a message
// nats.go dropped for want of room, is a redelivery), the drained run
// returns nil, nothing is left. (With an AckWait of an hour, a message
// nats.go dropped would wait an hour: the Source doc says so.)
func TestReview3Reconnect(t *testing.T) {
	for _, how := range []string{"server-restart", "connection-cut"} {
		for _, ackWait := range []time.Duration{2 * time.Second} {
			t.Run(how+"/ackWait="+ackWait.String(), func(t *testing.T) { r3Reconnect(t, how, ackWait) })
		}
	}
}

func r3Reconnect(t *testing.T, how string, ackWait time.Duration) {
	const n = 100
	var srv *server.Server
	var start func() *server.Server
	var url, connectURL string
	var proxy *stallProxy
	if how == "server-restart" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		opts := &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, ServerName: "r3"}
		start = func() *server.Server {
			s, err := server.NewServer(opts)
			if err != nil {
				t.Fatal(err)
			}
			go s.Start()
			if !s.ReadyForConnections(10 * time.Second) {
				t.Fatal("the NATS server did not start")
			}
			return s
		}
		srv = start()
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		url = srv.ClientURL()
		connectURL = url
	} else {
		url = startServer(t)
		proxy = newStallProxy(t, strings.TrimPrefix(url, "nats://"))
		connectURL = proxy.url()
	}
	var asyncErrs atomic.Int64
	nc, err := nats.Connect(connectURL, dialWait, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			asyncErrs.Add(1)
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			t.Logf("async error on %q: %v", subj, err)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons := rvSetup(t, js, "R3RS", ackWait, 0)
	for _, v := range r3Vals(n) {
		rvPub(t, js, "R3RS.job", v)
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	paused := make(chan struct{})
	resume := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(context.Background(), stage.Until(natsjs.Source(cons, decodeString, natsjs.ReadAhead(10)), stop), func(_ context.Context, m natsjs.Msg[string]) error {
			mu.Lock()
			seen[m.Value]++
			k := len(seen)
			mu.Unlock()
			if k == 30 && seen[m.Value] == 1 {
				close(paused)
				<-resume
			}
			if k == n {
				drain()
			}
			return nil
		})
	}()
	rvRecv(t, "30 messages committed", paused)
	if how == "server-restart" {
		srv.Shutdown()
		srv.WaitForShutdown()
		srv = start()
	} else {
		proxy.mu.Lock()
		for _, c := range proxy.conns {
			c.Close()
		}
		proxy.mu.Unlock()
	}
	r3WaitFor(t, "the client to reconnect", func() bool { return nc.Stats().Reconnects >= 1 && nc.IsConnected() })
	close(resume)
	select {
	case err := <-errc:
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if err != nil || got != n {
			t.Fatalf("after the %s the run returned %v with %d of %d messages committed", how, err, got, n)
		}
	case <-time.After(r3Watchdog):
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		drain()
		err := rvRecv(t, "the drained run", errc)
		info := rvInfo(t, cons)
		t.Fatalf("after the %s the run committed %d of %d messages within %v and stalled; drained, it returned %v and left NumAckPending %d (%d async errors)",
			how, got, n, r3Watchdog, err, info.NumAckPending, asyncErrs.Load())
	}
	// An ack sent as the connection went down may be lost (an ack gets no
	// reply: delivery is at least once); the server then redelivers its
	// message after AckWait, to whoever pulls. A second run takes such
	// redeliveries until the work queue is empty: each must be a message
	// the first run committed.
	late, stopLate := context.WithCancel(context.Background())
	lateErr := make(chan error, 1)
	go func() {
		lateErr <- sink.ForEach(late, natsjs.Source(cons, decodeString, natsjs.ReadAhead(10)), func(_ context.Context, m natsjs.Msg[string]) error {
			mu.Lock()
			defer mu.Unlock()
			if seen[m.Value] == 0 {
				return fmt.Errorf("the next run got %q, which the first never committed", m.Value)
			}
			seen[m.Value]++
			return nil
		})
	}()
	r3SweepWait(t, js, cons, "R3RS", how == "server-restart", func(v string) bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[v] > 0
	})
	stopLate()
	if err := rvRecv(t, "the run taking redeliveries", lateErr); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("the run taking redeliveries: %v", err)
	}
	mu.Lock()
	dups := 0
	for _, k := range seen {
		dups += k - 1
	}
	mu.Unlock()
	t.Logf("%d redelivered duplicates, %d async errors", dups, asyncErrs.Load())
}

// A stalled connection (nothing passes, nothing is closed) under a slow
// pipeline: the server delivers ReadAhead messages into the stall, the
// source misses its heartbeats and asks again; when the stall ends the
// client receives both. Source: "messages the server delivered into the
// stall are taken when they arrive, as far as the subscription has room
// for them"; nats.go drops the rest, which the server redelivers after
// AckWait (3 s here): "none is lost". The sink is held on its first
// message until the server has delivered what the source asked for, then
// everything must be committed, at least once (the stall outlasts AckWait,
// so some messages come twice).
func TestReview3StallUnderASlowPipeline(t *testing.T) {
	const readAhead, n = 10, 30
	url := startServer(t)
	_, js := connect(t, url)
	cons := rvSetup(t, js, "R3STALL", 3*time.Second, 0)
	proxy := newStallProxy(t, strings.TrimPrefix(url, "nats://"))
	var asyncErrs atomic.Int64
	pcons, pnc := proxy.consumer(t, "R3STALL", nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		asyncErrs.Add(1)
		t.Logf("async error: %v", err)
	}))
	proxy.armPause("CONSUMER.MSG.NEXT.R3STALL.c")
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]int{}
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(context.Background(), stage.Until(natsjs.Source(pcons, decodeString, natsjs.ReadAhead(readAhead)), stop), func(_ context.Context, m natsjs.Msg[string]) error {
			mu.Lock()
			seen[m.Value]++
			k := len(seen)
			mu.Unlock()
			if k == 1 {
				entered <- struct{}{}
				<-release
			}
			if k == n {
				drain()
			}
			return nil
		})
	}()
	rvRecv(t, "the source's first pull request", proxy.paused1)
	for _, v := range r3Vals(n) {
		rvPub(t, js, "R3STALL.job", v)
	}
	waitFor(t, "the server to deliver into the stall", func() bool { return rvInfo(t, cons).Delivered.Consumer >= readAhead })
	waitFor(t, "the source to ask again", func() bool { return proxy.sentSincePause("$JS.API.CONSUMER.MSG.NEXT") })
	proxy.resume()
	rvRecv(t, "the first message in the sink", entered)
	// Hold the sink until the server has delivered everything the source
	// asked for, and the client has received it.
	r3WaitFor(t, "the server's deliveries after the stall", func() bool {
		return rvInfo(t, cons).Delivered.Consumer >= 2*readAhead || asyncErrs.Load() > 0
	})
	if err := pnc.Flush(); err != nil {
		t.Fatal(err)
	}
	delivered := rvInfo(t, cons).Delivered.Consumer
	close(release)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("the run failed after the stall: %v", err)
		}
	case <-time.After(r3Watchdog):
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		drain()
		err := rvRecv(t, "the drained run", errc)
		info := rvInfo(t, cons)
		t.Fatalf("after the stall the server had delivered %d messages to a replica with ReadAhead(%d) whose pipeline held 1; the run committed %d of %d within %v (%d async errors); drained, it returned %v and left NumAckPending %d: messages delivered into the stall were dropped, stranded until AckWait",
			delivered, readAhead, got, n, r3Watchdog, asyncErrs.Load(), err, info.NumAckPending)
	}
	mu.Lock()
	defer mu.Unlock()
	checkAtLeastOnce(t, "stall", cons, seen, n) // a message delivered into the stall may have outlived its AckWait: a duplicate
}
