package natsjs_test

// Adversarial tests written from the documentation of natsjs (doc.go, the doc
// comments of its exported names, example_test.go), the README and the sluice
// core docs. Every test runs a real NATS server on loopback (startServer).
//
// Conventions: AckWait is an hour unless a test is about AckWait, so that a
// message comes back at once only if it was nak'ed; durations are only
// watchdogs (r6Watch) or lower bounds on a delay the server itself enforces.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

const (
	r6Watch   = 30 * time.Second
	r6Stream  = "R6W"
	r6Subject = "r6w.job"
	r6DLQ     = "r6dlq.bad"
)

var errR6Boom = errors.New("r6: boom")

// r6Env is one server, a work stream R6W (subjects r6w.>), a dead-letter
// stream R6DLQ (subjects r6dlq.>), and one durable consumer seen through two
// connections: nc/js/cons for the Source, nc2/js2/obs for the test's own
// observations.
type r6Env struct {
	t    *testing.T
	url  string
	nc   *nats.Conn
	js   jetstream.JetStream
	tap  *tap // counts what nc receives
	cons jetstream.Consumer
	nc2  *nats.Conn
	js2  jetstream.JetStream
	obs  jetstream.Consumer
	work jetstream.Stream
	dlq  jetstream.Stream
	seq  map[string]uint64 // payload -> stream sequence
}

func r6New(t *testing.T, cc jetstream.ConsumerConfig, retention jetstream.RetentionPolicy) *r6Env {
	t.Helper()
	e := &r6Env{t: t, url: startServer(t), seq: map[string]uint64{}}
	e.nc, e.js, e.tap = tapConnect(t, e.url)
	e.nc2, e.js2 = connect(t, e.url)
	ctx := context.Background()
	var err error
	e.work, err = e.js2.CreateStream(ctx, jetstream.StreamConfig{Name: r6Stream, Subjects: []string{"r6w.>"}, Retention: retention})
	if err != nil {
		t.Fatal(err)
	}
	e.dlq, err = e.js2.CreateStream(ctx, jetstream.StreamConfig{Name: "R6DLQ", Subjects: []string{"r6dlq.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if cc.Durable == "" {
		cc.Durable = "r6c"
	}
	if cc.AckWait == 0 {
		cc.AckWait = time.Hour
	}
	e.obs, err = e.js2.CreateOrUpdateConsumer(ctx, r6Stream, cc)
	if err != nil {
		t.Fatal(err)
	}
	e.cons, err = e.js.Consumer(ctx, r6Stream, cc.Durable)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *r6Env) pub(payloads ...string) {
	e.t.Helper()
	for _, p := range payloads {
		ack, err := e.js2.Publish(context.Background(), r6Subject, []byte(p))
		if err != nil {
			e.t.Fatal(err)
		}
		e.seq[p] = ack.Sequence
	}
}

func (e *r6Env) pubN(n int) {
	e.t.Helper()
	for i := range n {
		e.pub(strconv.Itoa(i))
	}
}

func (e *r6Env) info() *jetstream.ConsumerInfo {
	e.t.Helper()
	ci, err := e.obs.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return ci
}

func (e *r6Env) msgs(s jetstream.Stream) uint64 {
	e.t.Helper()
	si, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return si.State.Msgs
}

// r6WaitFor polls cond until it holds; the 30 s are a hang watchdog only.
func r6WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(r6Watch)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("watchdog: %s did not happen within %v", what, r6Watch)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not a wait for an event
	}
}

// fetch pulls n messages from the durable consumer through the observer's
// connection. With AckWait an hour, a message held by a stopped run comes
// back at once only if the run nak'ed it: otherwise this fails by watchdog.
func (e *r6Env) fetch(n int) []jetstream.Msg {
	e.t.Helper()
	var got []jetstream.Msg
	deadline := time.Now().Add(r6Watch)
	for len(got) < n {
		left := time.Until(deadline)
		if left < time.Second {
			e.t.Fatalf("watchdog: only %d of %d messages were deliverable (the others were neither nak'ed nor undelivered)", len(got), n)
		}
		b, err := e.obs.Fetch(n-len(got), jetstream.FetchMaxWait(left))
		if err != nil {
			e.t.Fatal(err)
		}
		for m := range b.Messages() {
			got = append(got, m)
		}
	}
	return got
}

func r6Meta(t *testing.T, m jetstream.Msg) *jetstream.MsgMetadata {
	t.Helper()
	md, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// r6Go runs f in a goroutine; the returned function waits for its result,
// failing (after cancelling) if it does not come within the watchdog.
func r6Go(t *testing.T, cancel context.CancelFunc, f func() error) func() error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return func() error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(r6Watch):
			cancel()
			select {
			case <-done:
			case <-time.After(r6Watch):
			}
			t.Fatalf("watchdog: the run did not return within %v", r6Watch)
			return nil
		}
	}
}

func r6Wait(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(r6Watch):
		t.Fatalf("watchdog: %s did not happen within %v", what, r6Watch)
	}
}

func r6Atoi(b []byte) (int, error) { return strconv.Atoi(string(b)) }

// checkRest: once the run has stopped, every message left in the stream is
// deliverable at once (never delivered, or nak'ed), and exactly the
// committed ones are gone. It returns the fetched messages by payload.
func (e *r6Env) checkRest(total int, committed map[string]bool) map[string]jetstream.Msg {
	e.t.Helper()
	want := uint64(total - len(committed))
	r6WaitFor(e.t, fmt.Sprintf("the stream to hold the %d uncommitted messages (committed ones acked)", want), func() bool {
		return e.msgs(e.work) == want
	})
	got := map[string]jetstream.Msg{}
	for _, m := range e.fetch(int(want)) {
		p := string(m.Data())
		if committed[p] {
			e.t.Errorf("message %q was committed by the sink but delivered again", p)
		}
		if _, dup := got[p]; dup {
			e.t.Errorf("message %q fetched twice", p)
		}
		got[p] = m
	}
	return got
}

// ---------------------------------------------------------------------------

// Promise: a run holds at most ReadAhead messages beyond what its pipeline
// works on (DefaultReadAhead when not set); when the run is cancelled every
// message it held is nak'ed (back at once), and the naks have been sent by
// the time the sink returns (the source's connection is closed right after).
func TestReview6ReadAheadBoundAndNakOnCancel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		n    int
		opts []natsjs.SourceOption
	}{
		{"ReadAhead1", 1, []natsjs.SourceOption{natsjs.ReadAhead(1)}},
		{"ReadAhead7", 7, []natsjs.SourceOption{natsjs.ReadAhead(7)}},
		{"Default", natsjs.DefaultReadAhead, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
			total := tc.n*3 + 20
			e.pubN(total)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			entered := make(chan struct{})
			var calls atomic.Int64
			// A nak "with a delay" would be an hour: held messages must come back at once.
			src := natsjs.Source(e.cons, r6Atoi, append(tc.opts, natsjs.Backoff(time.Hour, time.Hour))...)
			m := stage.Map(src, func(ctx context.Context, m natsjs.Msg[int]) (int, error) {
				if calls.Add(1) == 1 {
					close(entered)
				}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Workers(1))
			wait := r6Go(t, cancel, func() error {
				return sink.ForEach(ctx, m, func(context.Context, int) error { return nil })
			})
			r6Wait(t, "the pipeline to take a message", entered)
			r6WaitFor(t, "the read-ahead to fill", func() bool { return e.info().NumAckPending >= tc.n })
			waitReceived(t, e.tap, e.info)
			cancel()
			err := wait()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("sink error = %v, want context.Canceled", err)
			}
			e.nc.Close() // the naks must already be on their way
			if c := calls.Load(); c != 1 {
				t.Errorf("the pipeline (1 blocked worker) took %d messages, want 1", c)
			}
			rest := e.checkRest(total, nil)
			held := 0
			for p, msg := range rest {
				md := r6Meta(t, msg)
				if md.NumDelivered > 2 {
					t.Errorf("message %s delivered %d times", p, md.NumDelivered)
				}
				if md.NumDelivered == 2 {
					held++
				}
			}
			// The pipeline works on 1 message; the subscription holds at most n more.
			if held > tc.n+1 {
				t.Errorf("the run held %d messages; ReadAhead(%d) + 1 in the pipeline allows %d", held, tc.n, tc.n+1)
			}
			if held < tc.n {
				t.Errorf("only %d held messages came back, yet %d were ack-pending before the cancel", held, tc.n)
			}
		})
	}
}

// Promise: a message is acknowledged only once the sink committed it; a
// failed commit naks it (retryable) and a committed item is acked whatever
// ends the run afterwards; acks and naks are sent before the sink returns.
func TestReview6CommitFailureNaksOnlyTheUncommitted(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	const total = 12
	e.pubN(total)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	committed := map[string]bool{}
	var seen []int
	src := natsjs.Source(e.cons, r6Atoi, natsjs.ReadAhead(4), natsjs.Backoff(0, 0))
	m := stage.Map(src, func(_ context.Context, m natsjs.Msg[int]) (natsjs.Msg[int], error) { return m, nil }, stage.Workers(1))
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, m, func(_ context.Context, m natsjs.Msg[int]) error {
			seen = append(seen, m.Value)
			if len(seen) == 4 {
				return errR6Boom
			}
			committed[strconv.Itoa(m.Value)] = true
			return nil
		})
	})
	err := wait()
	e.nc.Close()
	var se *stage.Error
	if !errors.Is(err, errR6Boom) || !errors.As(err, &se) || se.Stage != "foreach" {
		t.Fatalf("sink error = %v, want a *stage.Error from foreach wrapping errR6Boom", err)
	}
	failed := strconv.Itoa(seen[3])
	rest := e.checkRest(total, committed)
	if m, ok := rest[failed]; !ok {
		t.Errorf("the message whose commit failed (%s) is not back", failed)
	} else if d := r6Meta(t, m).NumDelivered; d < 2 {
		t.Errorf("the message whose commit failed came back with NumDelivered %d, want >= 2 (nak'ed)", d)
	}
}

// Promise: a FailFast error (or panic) at one message, in a stage or in the
// sink, naks that message (retryable, here with no delay) and every other
// message the run held; committed messages are acked; an error wrapped by
// Permanent terms the message and dead-letters it instead.
func TestReview6FailFastOutcomes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"stage-error", "stage-panic", "sink-panic", "permanent"} {
		t.Run(mode, func(t *testing.T) {
			e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
			const total = 20
			e.pubN(total)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var mu sync.Mutex
			committed := map[string]bool{}
			src := natsjs.Source(e.cons, r6Atoi, natsjs.ReadAhead(5), natsjs.Backoff(0, 0), natsjs.DeadLetter(e.js, r6DLQ))
			m := stage.Map(src, func(_ context.Context, m natsjs.Msg[int]) (int, error) {
				if m.Value == 2 {
					switch mode {
					case "stage-error":
						return 0, errR6Boom
					case "stage-panic":
						panic(errR6Boom)
					case "permanent":
						return 0, fmt.Errorf("context: %w", natsjs.Permanent(errR6Boom))
					}
				}
				return m.Value, nil
			}, stage.Workers(3), stage.Name("work"))
			wait := r6Go(t, cancel, func() error {
				return sink.ForEach(ctx, m, func(_ context.Context, v int) error {
					if v == 2 && mode == "sink-panic" {
						panic(errR6Boom)
					}
					mu.Lock()
					committed[strconv.Itoa(v)] = true
					mu.Unlock()
					return nil
				})
			})
			err := wait()
			e.nc.Close()
			var se *stage.Error
			if !errors.Is(err, errR6Boom) || !errors.As(err, &se) {
				t.Fatalf("sink error = %v, want a *stage.Error wrapping errR6Boom", err)
			}
			wantStage := "work"
			if mode == "sink-panic" {
				wantStage = "foreach"
			}
			if se.Stage != wantStage {
				t.Errorf("error's stage = %q, want %q", se.Stage, wantStage)
			}
			var pe *stage.PanicError
			if strings.HasSuffix(mode, "panic") != errors.As(err, &pe) {
				t.Errorf("errors.As(err, *stage.PanicError) = %v in mode %s", !strings.HasSuffix(mode, "panic"), mode)
			}
			if mode == "permanent" {
				if !errors.Is(err, natsjs.ErrPermanent) {
					t.Errorf("the run's error does not wrap ErrPermanent: %v", err)
				}
				r6WaitFor(t, "the permanent failure to reach the dead-letter stream", func() bool { return e.msgs(e.dlq) == 1 })
				r6WaitFor(t, "the terminated message to leave the work queue", func() bool {
					return e.msgs(e.work) == uint64(total-len(committed)-1)
				})
				dm, err := e.dlq.GetMsg(context.Background(), 1)
				if err != nil {
					t.Fatal(err)
				}
				if string(dm.Data) != "2" || dm.Header.Get("Sluice-Deliveries") != "1" {
					t.Errorf("dead letter = %q deliveries %q, want \"2\" after 1 delivery", dm.Data, dm.Header.Get("Sluice-Deliveries"))
				}
				committed["2"] = true // gone from the stream: not to come back
			}
			rest := e.checkRest(total, committed)
			if mode != "permanent" {
				if m, ok := rest["2"]; !ok || r6Meta(t, m).NumDelivered < 2 {
					t.Errorf("the failed message did not come back nak'ed")
				}
				if n := e.msgs(e.dlq); n != 0 {
					t.Errorf("a retryable failure reached the dead-letter stream (%d messages)", n)
				}
			}
		})
	}
}

// Promise: a forwarded *stage.Error that reaches the sink naks the message
// "with a delay that grows with the delivery count": base·2^(n-1) after the
// n-th delivery (Backoff). Checked as lower bounds only (the server enforces
// the delay, so load can only make it longer); the sink returns the
// forwarded errors in a *sink.ForwardedError.
func TestReview6ForwardedErrorNakDelayGrows(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	e.pub("7")
	const base = 150 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var mu sync.Mutex
	at := map[uint64]time.Time{}
	src := natsjs.Source(e.cons, r6Atoi, natsjs.Backoff(base, time.Minute))
	m := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[int]) (int, error) {
		mu.Lock()
		at[m.Deliveries] = time.Now()
		mu.Unlock()
		if m.Deliveries < 4 {
			return 0, errR6Boom
		}
		drain()
		return m.Value, nil
	}, stage.OnError(stage.Forward))
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, m, func(context.Context, int) error { return nil })
	})
	err := wait()
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 3 || !errors.Is(err, errR6Boom) {
		t.Fatalf("sink error = %v, want a *sink.ForwardedError of 3 wrapping errR6Boom", err)
	}
	for n := uint64(1); n < 4; n++ {
		gap := at[n+1].Sub(at[n])
		want := base << (n - 1)
		if gap < want*9/10 {
			t.Errorf("delivery %d came %v after delivery %d; the nak's delay should be %v", n+1, gap, n, want)
		}
	}
	r6WaitFor(t, "the work queue to empty", func() bool { return e.msgs(e.work) == 0 })
}

// Promise: a message that decode rejects is terminated and dead-lettered at
// once (headers Sluice-Reason, Sluice-Subject, Sluice-Stream-Seq,
// Sluice-Deliveries), never enters the pipeline, and the run goes on.
func TestReview6DecodeRejectIsTermedAndDeadLettered(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	e.pub("1", "not-a-number", "3")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var mu sync.Mutex
	var got []int
	src := natsjs.Source(e.cons, r6Atoi, natsjs.DeadLetter(e.js, r6DLQ))
	m := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[int]) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.Value)
		if len(got) == 2 {
			drain()
		}
		return m.Value, nil
	})
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, m, func(context.Context, int) error { return nil })
	})
	if err := wait(); err != nil {
		t.Fatalf("sink error = %v, want nil (the rejected message never enters the pipeline)", err)
	}
	slices.Sort(got)
	if !slices.Equal(got, []int{1, 3}) {
		t.Errorf("the pipeline saw %v, want [1 3]", got)
	}
	r6WaitFor(t, "the dead letter", func() bool { return e.msgs(e.dlq) == 1 })
	dm, err := e.dlq.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(dm.Data) != "not-a-number" {
		t.Errorf("dead letter payload %q", dm.Data)
	}
	h := dm.Header
	if h.Get("Sluice-Reason") == "" || h.Get("Sluice-Subject") != r6Subject ||
		h.Get("Sluice-Stream-Seq") != strconv.FormatUint(e.seq["not-a-number"], 10) || h.Get("Sluice-Deliveries") != "1" {
		t.Errorf("dead letter headers = %v", h)
	}
	r6WaitFor(t, "the consumer to have nothing pending", func() bool {
		ci := e.info()
		return ci.NumAckPending == 0 && ci.NumPending == 0
	})
	if ci := e.info(); ci.Delivered.Consumer != 3 {
		t.Errorf("%d deliveries, want 3 (the rejected message was delivered again)", ci.Delivered.Consumer)
	}
}

// Promise (Until, Batch): a drained run takes no more messages, settles what
// it took (Batch flushes its partial batch, which is committed and acked),
// and naks what it received but never handed to the pipeline, back at once.
func TestReview6DrainSettlesTakenNaksHeld(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	const total = 60
	e.pubN(total)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	gate := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(2)
	var calls atomic.Int64
	var mu sync.Mutex
	committed := map[string]bool{}
	src := natsjs.Source(e.cons, r6Atoi, natsjs.ReadAhead(10), natsjs.Backoff(time.Hour, time.Hour))
	m := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[int]) (int, error) {
		if calls.Add(1) <= 2 {
			entered.Done()
		}
		<-gate
		return m.Value, nil
	}, stage.Workers(2))
	b := stage.Batch(m, 50, 0)
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, b, func(_ context.Context, vs []int) error {
			mu.Lock()
			defer mu.Unlock()
			for _, v := range vs {
				committed[strconv.Itoa(v)] = true
			}
			return nil
		})
	})
	enteredCh := make(chan struct{})
	go func() { entered.Wait(); close(enteredCh) }()
	r6Wait(t, "both workers to take a message", enteredCh)
	r6WaitFor(t, "the read-ahead to fill", func() bool { return e.info().NumAckPending >= 10 })
	waitReceived(t, e.tap, e.info)
	drain()
	close(gate)
	if err := wait(); err != nil {
		t.Fatalf("drained run: sink error = %v, want nil", err)
	}
	e.nc.Close()
	if c := calls.Load(); c != 2 {
		t.Errorf("the pipeline took %d messages; 2 were taken before the drain and none may be after", c)
	}
	if len(committed) != int(calls.Load()) {
		t.Errorf("%d messages taken, %d committed: the drain lost some", calls.Load(), len(committed))
	}
	rest := e.checkRest(total, committed)
	back := 0
	for _, msg := range rest {
		if r6Meta(t, msg).NumDelivered == 2 {
			back++
		}
	}
	if back < 8 {
		t.Errorf("only %d held messages came back nak'ed; at least 8 were in the read-ahead", back)
	}
}

// Promise: sink.First commits the message it returns (Ack) and the run naks
// every other message it held, back at once.
func TestReview6FirstAcksOneNaksTheRest(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	const total = 15
	e.pubN(total)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var m natsjs.Msg[int]
	wait := r6Go(t, cancel, func() error {
		var err error
		m, _, err = sink.First(ctx, natsjs.Source(e.cons, r6Atoi, natsjs.ReadAhead(5), natsjs.Backoff(time.Hour, time.Hour)))
		return err
	})
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	e.nc.Close()
	e.checkRest(total, map[string]bool{strconv.Itoa(m.Value): true})
}

// Promise: Msg carries the JetStream metadata: Subject, Sequence, Deliveries
// (1 on the first delivery) and ID (the Nats-Msg-Id header, if any).
func TestReview6MsgMetadata(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	ctx := context.Background()
	a1, err := e.js2.Publish(ctx, "r6w.a", []byte("1"), jetstream.WithMsgID("id-one"))
	if err != nil {
		t.Fatal(err)
	}
	a2, err := e.js2.Publish(ctx, "r6w.b", []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	var got []natsjs.Msg[int]
	wait := r6Go(t, func() {}, func() error {
		for m, err := range sink.All(ctx, natsjs.Source(e.cons, r6Atoi)) {
			if err != nil {
				return err
			}
			got = append(got, m)
			if len(got) == 2 {
				break
			}
		}
		return nil
	})
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	want := []natsjs.Msg[int]{
		{Value: 1, Subject: "r6w.a", Sequence: a1.Sequence, Deliveries: 1, ID: "id-one"},
		{Value: 2, Subject: "r6w.b", Sequence: a2.Sequence, Deliveries: 1, ID: ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// Promise: a message on its last allowed delivery (MaxDeliver) that fails
// with a retryable error is terminated and dead-lettered; one the run held
// when it was cancelled goes to the dead-letter subject too.
func TestReview6LastDelivery(t *testing.T) {
	t.Parallel()
	t.Run("fails", func(t *testing.T) {
		e := r6New(t, jetstream.ConsumerConfig{MaxDeliver: 2}, jetstream.WorkQueuePolicy)
		e.pub("5")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stop, drain := context.WithCancel(context.Background())
		defer drain()
		var deliveries []uint64
		src := natsjs.Source(e.cons, r6Atoi, natsjs.Backoff(0, 0), natsjs.DeadLetter(e.js, r6DLQ))
		m := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[int]) (int, error) {
			deliveries = append(deliveries, m.Deliveries)
			return 0, errR6Boom
		}, stage.Workers(1), stage.OnError(stage.Forward))
		wait := r6Go(t, cancel, func() error {
			return sink.ForEach(ctx, m, func(context.Context, int) error { return nil })
		})
		r6WaitFor(t, "the dead letter", func() bool { return e.msgs(e.dlq) == 1 })
		r6WaitFor(t, "the consumer to settle", func() bool { return e.info().NumAckPending == 0 })
		drain()
		err := wait()
		var fe *sink.ForwardedError
		if !errors.As(err, &fe) || fe.Count != 2 {
			t.Errorf("sink error = %v, want a *sink.ForwardedError of 2", err)
		}
		if !slices.Equal(deliveries, []uint64{1, 2}) {
			t.Errorf("deliveries %v, want [1 2]", deliveries)
		}
		dm, err := e.dlq.GetMsg(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if string(dm.Data) != "5" || dm.Header.Get("Sluice-Deliveries") != "2" {
			t.Errorf("dead letter %q with Sluice-Deliveries %q", dm.Data, dm.Header.Get("Sluice-Deliveries"))
		}
	})
	for _, how := range []string{"cancel", "drain"} {
		t.Run("held-at-"+how, func(t *testing.T) {
			e := r6New(t, jetstream.ConsumerConfig{MaxDeliver: 1}, jetstream.WorkQueuePolicy)
			const total = 20
			e.pubN(total)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			entered, gate := make(chan struct{}), make(chan struct{})
			var once sync.Once
			var committed atomic.Int64
			var ackErrs sync.Map // what the source could not settle, for the failure message
			onAckErr := func(err error) { ackErrs.Store(err.Error(), true) }
			src := natsjs.Source(e.cons, r6Atoi, natsjs.ReadAhead(5), natsjs.DeadLetter(e.js, r6DLQ), natsjs.OnAckError(onAckErr))
			m := stage.Map(stage.Until(src, stop), func(ctx context.Context, m natsjs.Msg[int]) (int, error) {
				once.Do(func() { close(entered) })
				select {
				case <-ctx.Done():
					return 0, ctx.Err()
				case <-gate:
					return m.Value, nil
				}
			}, stage.Workers(1))
			wait := r6Go(t, cancel, func() error {
				return sink.ForEach(ctx, m, func(context.Context, int) error { committed.Add(1); return nil })
			})
			r6Wait(t, "the pipeline to take a message", entered)
			r6WaitFor(t, "the read-ahead to fill", func() bool { return e.info().NumAckPending >= 5 })
			waitReceived(t, e.tap, e.info)
			if how == "cancel" {
				cancel()
				if err := wait(); !errors.Is(err, context.Canceled) {
					t.Fatalf("sink error = %v, want context.Canceled", err)
				}
			} else {
				drain()
				close(gate)
				if err := wait(); err != nil {
					t.Fatalf("drained: sink error = %v", err)
				}
				if committed.Load() != 1 {
					t.Fatalf("%d committed, want the 1 taken before the drain", committed.Load())
				}
			}
			deadline := time.Now().Add(r6Watch)
			for {
				ci := e.info()
				if ci.NumAckPending == 0 && e.msgs(e.dlq)+uint64(committed.Load()) == ci.Delivered.Consumer {
					break
				}
				if time.Now().After(deadline) {
					var errs []string
					ackErrs.Range(func(k, _ any) bool { errs = append(errs, k.(string)); return true })
					t.Fatalf("held last deliveries not all dead-lettered: delivered %d, ack pending %d, dead letters %d, committed %d, received %d; acknowledgement errors: %q",
						ci.Delivered.Consumer, ci.NumAckPending, e.msgs(e.dlq), committed.Load(), e.tap.received(), errs)
				}
				time.Sleep(5 * time.Millisecond) // poll interval; the deadline is a hang watchdog
			}
			ci := e.info()
			if ci.Delivered.Consumer < 5 || ci.NumPending != uint64(total)-ci.Delivered.Consumer {
				t.Errorf("delivered %d, pending %d of %d", ci.Delivered.Consumer, ci.NumPending, total)
			}
			if n := e.msgs(e.work); n != uint64(total)-ci.Delivered.Consumer {
				t.Errorf("the work queue holds %d, want the %d never delivered", n, uint64(total)-ci.Delivered.Consumer)
			}
		})
	}
}

// Promise: an item whose sink callback returns nil is committed and acked,
// even if the run was cancelled while the callback ran ("a committed item is
// always acknowledged ... whatever ends the run afterwards"); everything else
// the run held is nak'ed, back at once.
func TestReview6CommitDuringCancelIsAcked(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	const total = 10
	e.pubN(total)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	entered := make(chan struct{})
	var got natsjs.Msg[int]
	src := natsjs.Source(e.cons, r6Atoi, natsjs.ReadAhead(4), natsjs.Backoff(time.Hour, time.Hour))
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, src, func(ctx context.Context, m natsjs.Msg[int]) error {
			got = m
			close(entered)
			<-ctx.Done() // the run is cancelled while the commit is under way
			return nil   // ... and the commit succeeds all the same
		})
	})
	r6Wait(t, "the sink to get a message", entered)
	cancel()
	if err := wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("sink error = %v, want context.Canceled", err)
	}
	e.nc.Close()
	e.checkRest(total, map[string]bool{strconv.Itoa(got.Value): true})
}

// Promise: the default Backoff naks a retryable failure with a delay of 1 s
// after the first delivery (a lower bound, which the server enforces).
func TestReview6DefaultBackoff(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	e.pub("1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var first, second time.Time
	m := stage.Map(stage.Until(natsjs.Source(e.cons, r6Atoi), stop), func(_ context.Context, m natsjs.Msg[int]) (int, error) {
		if m.Deliveries == 1 {
			first = time.Now()
			return 0, errR6Boom
		}
		second = time.Now()
		drain()
		return m.Value, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	wait := r6Go(t, cancel, func() error { return sink.ForEach(ctx, m, func(context.Context, int) error { return nil }) })
	var fe *sink.ForwardedError
	if err := wait(); !errors.As(err, &fe) || fe.Count != 1 {
		t.Fatalf("sink error = %v, want a *sink.ForwardedError of 1", err)
	}
	if gap := second.Sub(first); gap < 900*time.Millisecond {
		t.Errorf("redelivered %v after a retryable failure; the default delay is 1 s", gap)
	}
}

// Promise (package doc, Outcomes): a Filter that drops an item, or a Handle
// policy that accepts its failure, acks it; an item that fans out (FlatMap)
// is acked when all its outputs are committed and nak'ed when one of them
// fails (a forwarded error reaching the sink).
func TestReview6FanOutAndDropOutcomes(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	e.pub("1", "2", "3", "4", "5", "6")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	type child struct {
		v int
		d uint64
	}
	var mu sync.Mutex
	deliveries := map[int][]uint64{}
	committed := map[child]bool{}
	src := stage.Until(natsjs.Source(e.cons, r6Atoi, natsjs.Backoff(0, 0)), stop)
	rec := stage.Map(src, func(_ context.Context, m natsjs.Msg[int]) (natsjs.Msg[int], error) {
		mu.Lock()
		deliveries[m.Value] = append(deliveries[m.Value], m.Deliveries)
		mu.Unlock()
		return m, nil
	})
	odd := stage.Filter(rec, func(_ context.Context, m natsjs.Msg[int]) (bool, error) { return m.Value%2 == 1, nil })
	handled := stage.Map(odd, func(_ context.Context, m natsjs.Msg[int]) (natsjs.Msg[int], error) {
		if m.Value == 3 {
			return m, errR6Boom
		}
		return m, nil
	}, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	kids := stage.FlatMap(handled, func(_ context.Context, m natsjs.Msg[int]) ([]child, error) {
		return []child{{m.Value * 10, m.Deliveries}, {m.Value*10 + 1, m.Deliveries}, {m.Value*10 + 2, m.Deliveries}}, nil
	})
	checked := stage.Map(kids, func(_ context.Context, c child) (child, error) {
		if c.v == 51 && c.d == 1 {
			return c, errR6Boom
		}
		return c, nil
	}, stage.OnError(stage.Forward))
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, checked, func(_ context.Context, c child) error {
			mu.Lock()
			defer mu.Unlock()
			committed[c] = true
			if committed[child{10, 1}] && committed[child{11, 1}] && committed[child{12, 1}] &&
				committed[child{50, 2}] && committed[child{51, 2}] && committed[child{52, 2}] {
				drain()
			}
			return nil
		})
	})
	err := wait()
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 1 {
		t.Fatalf("sink error = %v, want a *sink.ForwardedError of 1", err)
	}
	r6WaitFor(t, "every message to be acked", func() bool { return e.msgs(e.work) == 0 })
	for v := 1; v <= 6; v++ {
		want := []uint64{1}
		if v == 5 {
			want = []uint64{1, 2}
		}
		if !slices.Equal(deliveries[v], want) {
			t.Errorf("message %d: deliveries %v, want %v", v, deliveries[v], want)
		}
	}
	if ci := e.info(); ci.Delivered.Consumer != 7 || ci.NumAckPending != 0 {
		t.Errorf("consumer: %d deliveries (want 7), %d ack-pending", ci.Delivered.Consumer, ci.NumAckPending)
	}
}

// Promise: the source checks AckExplicitPolicy; a consumer with another
// policy fails the run with a *stage.SourceError and no message is taken.
// An error of the consumer (deleted before or during the run) ends the run
// with a *stage.SourceError.
func TestReview6ConsumerErrors(t *testing.T) {
	t.Parallel() // its failure mode is a 30 s watchdog: let it overlap the others
	t.Run("ack-all", func(t *testing.T) {
		e := r6New(t, jetstream.ConsumerConfig{AckPolicy: jetstream.AckAllPolicy}, jetstream.LimitsPolicy)
		e.pubN(3)
		var taken atomic.Int64
		m := stage.Map(natsjs.Source(e.cons, r6Atoi), func(_ context.Context, m natsjs.Msg[int]) (int, error) {
			taken.Add(1)
			return m.Value, nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		wait := r6Go(t, cancel, func() error { return sink.ForEach(ctx, m, func(context.Context, int) error { return nil }) })
		err := wait()
		var se *stage.SourceError
		if !errors.As(err, &se) {
			t.Fatalf("sink error = %v, want a *stage.SourceError", err)
		}
		if taken.Load() != 0 {
			t.Errorf("%d messages reached the pipeline", taken.Load())
		}
	})
	t.Run("deleted-before", func(t *testing.T) {
		e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
		e.pubN(3)
		if err := e.js2.DeleteConsumer(context.Background(), r6Stream, "r6c"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		wait := r6Go(t, cancel, func() error {
			return sink.ForEach(ctx, natsjs.Source(e.cons, r6Atoi), func(context.Context, natsjs.Msg[int]) error { return nil })
		})
		var se *stage.SourceError
		if err := wait(); !errors.As(err, &se) || !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatalf("sink error = %v, want a *stage.SourceError wrapping jetstream.ErrConsumerNotFound", err)
		}
	})
	t.Run("stream-deleted-before", func(t *testing.T) {
		e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
		e.pubN(3)
		if err := e.js2.DeleteStream(context.Background(), r6Stream); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		wait := r6Go(t, cancel, func() error {
			return sink.ForEach(ctx, natsjs.Source(e.cons, r6Atoi), func(context.Context, natsjs.Msg[int]) error { return nil })
		})
		var se *stage.SourceError
		if err := wait(); !errors.As(err, &se) || !(errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound)) {
			t.Fatalf("sink error = %v, want a *stage.SourceError wrapping jetstream.ErrStreamNotFound (or ErrConsumerNotFound)", err)
		}
	})
	t.Run("deleted-during", func(t *testing.T) {
		e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
		e.pubN(3)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var n atomic.Int64
		all := make(chan struct{})
		wait := r6Go(t, cancel, func() error {
			return sink.ForEach(ctx, natsjs.Source(e.cons, r6Atoi), func(context.Context, natsjs.Msg[int]) error {
				if n.Add(1) == 3 {
					close(all)
				}
				return nil
			})
		})
		r6Wait(t, "the three messages", all)
		r6WaitFor(t, "their acks", func() bool { return e.msgs(e.work) == 0 })
		if err := e.js2.DeleteConsumer(context.Background(), r6Stream, "r6c"); err != nil {
			t.Fatal(err)
		}
		var se *stage.SourceError
		if err := wait(); !errors.As(err, &se) {
			t.Fatalf("sink error = %v, want a *stage.SourceError", err)
		}
	})
}

// Promise (consumer settings): MaxAckPending below ReadAhead only caps what
// the server hands out: the run still gets through all the work, through a
// Batch whose timeout flushes partial batches.
func TestReview6TightMaxAckPendingStillProgresses(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{MaxAckPending: 3}, jetstream.WorkQueuePolicy)
	const total = 40
	e.pubN(total)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	seen := map[int]bool{}
	m := stage.Map(stage.Until(natsjs.Source(e.cons, r6Atoi, natsjs.ReadAhead(50)), stop),
		func(_ context.Context, m natsjs.Msg[int]) (int, error) { return m.Value, nil }, stage.Workers(4))
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, stage.Batch(m, 8, 5*time.Millisecond), func(_ context.Context, vs []int) error {
			for _, v := range vs {
				seen[v] = true
			}
			if len(seen) == total {
				drain()
			}
			return nil
		})
	})
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	r6WaitFor(t, "the work queue to empty", func() bool { return e.msgs(e.work) == 0 })
}

// Promise: KeepAlive sends in-progress acks for a message on its way through
// the pipeline, so that an item held longer than AckWait is not redelivered.
// A control consumer without KeepAlive, on the same message with the same
// AckWait, shows (by its redeliveries, not a clock) that AckWait has passed
// twice while the item was held in the sink's callback. (A stall of the
// process that outlasts the keep-alive's margin lets AckWait pass for the
// kept-alive message too: that redelivery is the machine's, and the run
// then checks nothing; see runcheck.Stalls.)
func TestReview6KeepAliveHoldsAnItemInTheSink(t *testing.T) {
	const ackWait, every = time.Second, 100 * time.Millisecond
	e := r6New(t, jetstream.ConsumerConfig{AckWait: ackWait}, jetstream.LimitsPolicy)
	ctl, err := e.js2.CreateOrUpdateConsumer(context.Background(), r6Stream, jetstream.ConsumerConfig{Durable: "r6ctl", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait})
	if err != nil {
		t.Fatal(err)
	}
	stalls := runcheck.WatchStalls(t)
	e.pub("1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	entered, gate := make(chan struct{}), make(chan struct{})
	var deliveries []uint64
	src := natsjs.Source(e.cons, r6Atoi, natsjs.KeepAlive(every), natsjs.ReadAhead(1))
	m := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[int]) (natsjs.Msg[int], error) {
		deliveries = append(deliveries, m.Deliveries)
		return m, nil
	}, stage.Workers(1))
	var first sync.Once
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, stage.Batch(m, 1, 0), func(context.Context, []natsjs.Msg[int]) error {
			first.Do(func() { // a redelivery (checked below) is committed at once
				close(entered)
				<-gate
				drain()
			})
			return nil
		})
	})
	r6Wait(t, "the item to reach the sink", entered)
	for want := uint64(1); want <= 3; want++ { // the control's 1st delivery, then 2 redeliveries
		b, err := ctl.Fetch(1, jetstream.FetchMaxWait(r6Watch))
		if err != nil {
			t.Fatal(err)
		}
		var got []jetstream.Msg
		for m := range b.Messages() {
			got = append(got, m)
		}
		if len(got) != 1 || r6Meta(t, got[0]).NumDelivered != want {
			t.Fatalf("control consumer: got %d messages, want delivery %d", len(got), want)
		}
	}
	close(gate)
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if ci := e.info(); (!slices.Equal(deliveries, []uint64{1}) || ci.Delivered.Consumer != 1 || ci.NumRedelivered != 0) && stalls.Excuse(ackWait-every) {
		t.Skipf("the kept-alive message was delivered again (the pipeline saw %v, the consumer delivered %d), but the process stalled for %v (AckWait %v, KeepAlive %v): not checked",
			deliveries, ci.Delivered.Consumer, stalls.Longest(), ackWait, every)
	}
	if !slices.Equal(deliveries, []uint64{1}) {
		t.Errorf("the pipeline saw deliveries %v, want [1]", deliveries)
	}
	r6WaitFor(t, "the ack", func() bool { return e.info().NumAckPending == 0 })
	if ci := e.info(); ci.Delivered.Consumer != 1 || ci.NumRedelivered != 0 {
		t.Errorf("the kept-alive message was redelivered: %d deliveries, %d redelivered", ci.Delivered.Consumer, ci.NumRedelivered)
	}
}

// Promise: OnAckError is called when an acknowledgement cannot be sent
// because the connection is gone (here the sink closes it before its commit
// returns), and the run still ends when drained.
func TestReview6OnAckErrorOnClosedConnection(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	e.pub("1", "2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ackErrs := make(chan error, 100)
	src := natsjs.Source(e.cons, r6Atoi, natsjs.OnAckError(func(err error) { ackErrs <- err }))
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, stage.Until(src, stop), func(context.Context, natsjs.Msg[int]) error {
			e.nc.Close()
			return nil
		})
	})
	select {
	case err := <-ackErrs:
		if err == nil {
			t.Error("OnAckError called with a nil error")
		}
	case <-time.After(r6Watch):
		t.Fatal("watchdog: OnAckError was not called for an ack on a closed connection")
	}
	drain()
	err := wait()
	var se *stage.SourceError
	if err != nil && !errors.As(err, &se) {
		t.Errorf("sink error = %v, want nil or a *stage.SourceError", err)
	}
	if n := e.msgs(e.work); n != 2 {
		t.Errorf("the stream holds %d messages, want 2 (no ack could be sent)", n)
	}
}

// Promise: Source survives a server restart: the connection comes back, the
// source asks again on the same subscription and goes on; none is lost.
// And a run that starts while the server is away (the check of the
// consumer cannot be made, or waits for the server) goes on and waits for
// it.
func TestReview6SurvivesServerRestart(t *testing.T) {
	t.Parallel()
	for _, atStart := range []bool{false, true} {
		t.Run(map[bool]string{false: "mid-run", true: "at-start"}[atStart], func(t *testing.T) {
			t.Parallel()
			r6SurvivesServerRestart(t, atStart)
		})
	}
}

func r6SurvivesServerRestart(t *testing.T, atStart bool) {
	dir := t.TempDir()
	newSrv := func(port int) *server.Server {
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("the NATS server did not start")
		}
		return s
	}
	srv := newSrv(-1)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	port := srv.Addr().(*net.TCPAddr).Port
	reconnected := make(chan struct{}, 2)
	nc, err := nats.Connect(srv.ClientURL(), dialWait, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	if _, err := js.CreateStream(bg, jetstream.StreamConfig{Name: r6Stream, Subjects: []string{"r6w.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(bg, r6Stream, jetstream.ConsumerConfig{Durable: "r6c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			deadline := time.Now().Add(r6Watch)
			for {
				_, err := js.Publish(bg, r6Subject, []byte(strconv.Itoa(i)))
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("publish after restart: %v", err)
				}
				time.Sleep(20 * time.Millisecond) // JetStream may still be recovering
			}
		}
	}
	publish(0, 10)
	down := func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
	up := func() { // on the same port and store; the connection comes back
		srv = newSrv(port)
		r6Wait(t, "the reconnection", func() chan struct{} {
			c := make(chan struct{})
			go func() {
				select {
				case <-reconnected:
				case <-time.After(r6Watch):
				}
				close(c)
			}()
			return c
		}())
	}
	if atStart {
		down() // before the run opens its source
	}
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	stop, drain := context.WithCancel(bg)
	defer drain()
	var mu sync.Mutex
	seen := map[int]bool{}
	first := make(chan struct{})
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, stage.Until(natsjs.Source(cons, r6Atoi, natsjs.ReadAhead(4)), stop), func(_ context.Context, m natsjs.Msg[int]) error {
			mu.Lock()
			defer mu.Unlock()
			seen[m.Value] = true
			if len(seen) == 10 && m.Value < 10 {
				select {
				case <-first:
				default:
					close(first)
				}
			}
			if len(seen) == 20 {
				drain()
			}
			return nil
		})
	})
	if atStart {
		up()
		r6Wait(t, "the first ten messages", first)
	} else {
		r6Wait(t, "the first ten messages", first)
		down()
		up()
	}
	publish(10, 20)
	if err := wait(); err != nil {
		t.Fatalf("sink error after a restart = %v", err)
	}
}

// Promise (Publish): each item is published with its message id; the stream
// drops a duplicate and Publish counts it as committed (Duplicates), acking
// its source message; the counters may be read while the run goes on.
func TestReview6PublishDuplicatesAndCounters(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	if _, err := e.js2.CreateStream(context.Background(), jetstream.StreamConfig{Name: "R6OUT", Subjects: []string{"r6out"}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	e.pub("1", "1", "2", "3", "3", "3")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var counts natsjs.Published
	var calls atomic.Int64
	var lastStored int64
	m := stage.Map(stage.Until(natsjs.Source(e.cons, r6Atoi), stop), func(_ context.Context, m natsjs.Msg[int]) (int, error) {
		s := counts.Stored.Load() // read while the run goes on, from another goroutine
		if s < atomic.LoadInt64(&lastStored) {
			return 0, fmt.Errorf("Stored went back")
		}
		atomic.StoreInt64(&lastStored, s)
		return m.Value, nil
	}, stage.Workers(2), stage.Buffer(1))
	wait := r6Go(t, cancel, func() error {
		return natsjs.Publish(ctx, e.js, m, func(v int) (*nats.Msg, error) {
			if calls.Add(1) == 6 {
				drain()
			}
			return &nats.Msg{Subject: "r6out", Data: []byte(strconv.Itoa(v))}, nil
		}, func(v int) string { return "r6-" + strconv.Itoa(v) }, &counts)
	})
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if counts.Stored.Load() != 3 || counts.Duplicates.Load() != 3 {
		t.Errorf("counts = %s, want 3 stored, 3 duplicates", pubCounts(&counts))
	}
	out, err := e.js2.Stream(context.Background(), "R6OUT")
	if err != nil {
		t.Fatal(err)
	}
	if n := e.msgs(out); n != 3 {
		t.Errorf("the output stream holds %d messages, want 3", n)
	}
	r6WaitFor(t, "every source message (duplicates included) to be acked", func() bool { return e.msgs(e.work) == 0 })
}

// Promise (Publish): a failed publish, an error or panic in msg or id, or a
// nil message ends the run with a *stage.Error (Stage "foreach") wrapping
// it (ErrNilMsg for the nil message); the source message is not acked but
// nak'ed (retryable), so it comes back; forwarded errors come back in a
// *sink.ForwardedError and their messages are nak'ed while the others are
// published and acked.
func TestReview6PublishFailures(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"nil-msg", "msg-error", "msg-panic", "id-panic", "no-stream", "forwarded"} {
		t.Run(mode, func(t *testing.T) {
			e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
			out, err := e.js2.CreateStream(context.Background(), jetstream.StreamConfig{Name: "R6OUT", Subjects: []string{"r6out"}})
			if err != nil {
				t.Fatal(err)
			}
			e.pub("1", "2", "3")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			var counts natsjs.Published
			var mu sync.Mutex
			published := map[string]bool{}
			var nItems atomic.Int64
			m := stage.Map(stage.Until(natsjs.Source(e.cons, r6Atoi, natsjs.Backoff(0, 0)), stop), func(_ context.Context, m natsjs.Msg[int]) (int, error) {
				if mode == "forwarded" && m.Value == 2 {
					return 0, errR6Boom
				}
				return m.Value, nil
			}, stage.Workers(1), stage.OnError(stage.Forward))
			wait := r6Go(t, cancel, func() error {
				return natsjs.Publish(ctx, e.js, m, func(v int) (*nats.Msg, error) {
					if mode == "forwarded" && nItems.Add(1) == 2 {
						drain()
					}
					subject := "r6out"
					if v == 2 {
						switch mode {
						case "nil-msg":
							return nil, nil
						case "msg-error":
							return nil, errR6Boom
						case "msg-panic":
							panic(errR6Boom)
						case "no-stream":
							subject = "r6nowhere"
						}
					}
					mu.Lock()
					published[strconv.Itoa(v)] = true
					mu.Unlock()
					return &nats.Msg{Subject: subject, Data: []byte(strconv.Itoa(v))}, nil
				}, func(v int) string {
					if v == 2 && mode == "id-panic" {
						panic(errR6Boom)
					}
					return "r6-" + strconv.Itoa(v)
				}, &counts)
			})
			err = wait()
			e.nc.Close()
			committed := map[string]bool{}
			if mode == "forwarded" {
				var fe *sink.ForwardedError
				if !errors.As(err, &fe) || fe.Count < 1 || !errors.Is(err, errR6Boom) {
					t.Fatalf("Publish error = %v, want a *sink.ForwardedError wrapping errR6Boom", err)
				}
				committed["1"], committed["3"] = true, true
			} else {
				var se *stage.Error
				if !errors.As(err, &se) || se.Stage != "foreach" {
					t.Fatalf("Publish error = %v, want a *stage.Error of stage foreach", err)
				}
				switch mode {
				case "nil-msg":
					if !errors.Is(err, natsjs.ErrNilMsg) {
						t.Errorf("error %v does not wrap ErrNilMsg", err)
					}
				case "msg-error", "msg-panic", "id-panic":
					if !errors.Is(err, errR6Boom) {
						t.Errorf("error %v does not wrap the callback's error", err)
					}
					var pe *stage.PanicError
					if strings.HasSuffix(mode, "panic") && !errors.As(err, &pe) {
						t.Errorf("error %v does not wrap a *stage.PanicError", err)
					}
				}
				committed["1"] = true
			}
			rest := e.checkRest(3, committed)
			// A nak without delay may bring it back into the same run's read-ahead
			// before the run stops: then it comes back a third time.
			if m, ok := rest["2"]; !ok || r6Meta(t, m).NumDelivered < 2 {
				t.Errorf("the failed item's source message did not come back as a second delivery (present %v, rest %v)", ok, r6Deliv(t, rest))
			}
			want := uint64(len(committed))
			if n := e.msgs(out); n != want || counts.Stored.Load() != int64(want) {
				t.Errorf("output stream holds %d, Stored %d; want %d", n, counts.Stored.Load(), want)
			}
		})
	}
}

// Promise: Publish panics, before it runs s, if js, msg or id is nil; the
// option constructors panic on invalid values and accept the bounds.
func TestReview6MisusePanics(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	_, js := connect(t, url)
	var opened atomic.Bool
	s := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		opened.Store(true)
		return func(context.Context) (int, error) { return 0, errors.New("never") }, nil
	})
	msg := func(int) (*nats.Msg, error) { return nil, nil }
	id := func(int) string { return "" }
	panics := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	ok := func(name string, f func()) {
		t.Helper()
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("%s panicked: %v", name, r)
			}
		}()
		f()
	}
	ctx := context.Background()
	panics("Publish(nil js)", func() { natsjs.Publish(ctx, nil, s, msg, id, nil) })
	panics("Publish(nil msg)", func() { natsjs.Publish(ctx, js, s, nil, id, nil) })
	panics("Publish(nil id)", func() { natsjs.Publish(ctx, js, s, msg, nil, nil) })
	if opened.Load() {
		t.Error("Publish ran its stream before panicking on a nil argument")
	}
	panics("ReadAhead(0)", func() { natsjs.ReadAhead(0) })
	panics("ReadAhead(MaxReadAhead+1)", func() { natsjs.ReadAhead(natsjs.MaxReadAhead + 1) })
	ok("ReadAhead(1)", func() { natsjs.ReadAhead(1) })
	ok("ReadAhead(MaxReadAhead)", func() { natsjs.ReadAhead(natsjs.MaxReadAhead) })
	panics("Backoff(-1, 0)", func() { natsjs.Backoff(-1, 0) })
	panics("Backoff(2, 1)", func() { natsjs.Backoff(2, 1) })
	ok("Backoff(0, 0)", func() { natsjs.Backoff(0, 0) })
	panics("KeepAlive(0)", func() { natsjs.KeepAlive(0) })
	panics("KeepAlive(-1)", func() { natsjs.KeepAlive(-1) })
	panics("DeadLetter(nil, x)", func() { natsjs.DeadLetter(nil, "x") })
	panics("DeadLetter(js, \"\")", func() { natsjs.DeadLetter(js, "") })
	panics("OnAckError(nil)", func() { natsjs.OnAckError(nil) })

	perm := natsjs.Permanent(errR6Boom)
	if !errors.Is(perm, natsjs.ErrPermanent) || !errors.Is(perm, errR6Boom) {
		t.Errorf("Permanent(err): errors.Is ErrPermanent %v, err %v; want both", errors.Is(perm, natsjs.ErrPermanent), errors.Is(perm, errR6Boom))
	}
}

// Promise: a panic in decode (user code) does not crash the process, ends or
// continues the run without hanging, and loses no message: the panicking
// one is either dead-lettered or comes back. Runs in a child process.
func TestReview6DecodePanic(t *testing.T) {
	t.Parallel()
	runcheck.InChildTest(t, r6ChildDecodePanic)
}

// Promise: a panic in OnAckError fails the run with a *stage.SourceError
// (unless the run was cut short first) and never crashes the process.
func TestReview6OnAckErrorPanic(t *testing.T) {
	t.Parallel()
	runcheck.InChildTest(t, r6ChildOnAckErrorPanic)
}

func r6ChildDecodePanic(t *testing.T) {
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	e.pub("1", "boom", "3")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var mu sync.Mutex
	committed := map[string]bool{}
	decode := func(b []byte) (int, error) {
		if string(b) == "boom" {
			panic(errR6Boom)
		}
		return strconv.Atoi(string(b))
	}
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, stage.Until(natsjs.Source(e.cons, decode, natsjs.DeadLetter(e.js, r6DLQ)), stop), func(_ context.Context, m natsjs.Msg[int]) error {
			mu.Lock()
			defer mu.Unlock()
			committed[strconv.Itoa(m.Value)] = true
			if len(committed) == 2 {
				drain()
			}
			return nil
		})
	})
	err := wait()
	t.Logf("sink error: %v", err)
	if err != nil {
		var se *stage.SourceError
		var pe *stage.PanicError
		if !errors.As(err, &se) || !errors.As(err, &pe) || !errors.Is(err, errR6Boom) {
			t.Fatalf("sink error = %v, want nil or a *stage.SourceError wrapping the decode panic", err)
		}
	}
	e.nc.Close()
	if e.msgs(e.dlq) == 1 {
		t.Log("the panicking message was dead-lettered")
		committed["boom"] = true
	} else if err == nil {
		t.Log("run ended nil without dead-lettering the panicking message")
	}
	rest := e.checkRest(3, committed)
	t.Logf("back: %d messages", len(rest))
}

func r6ChildOnAckErrorPanic(t *testing.T) {
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	e.pub("1", "2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	called := make(chan struct{})
	var once sync.Once
	src := natsjs.Source(e.cons, r6Atoi, natsjs.OnAckError(func(error) {
		once.Do(func() { close(called) })
		panic(errR6Boom)
	}))
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, stage.Until(src, stop), func(context.Context, natsjs.Msg[int]) error {
			e.nc.Close()
			return nil
		})
	})
	r6Wait(t, "OnAckError", called)
	drain()
	err := wait()
	t.Logf("sink error: %v", err)
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Fatalf("sink error = %v, want a *stage.SourceError", err)
	}
	var pe *stage.PanicError
	if !errors.As(err, &pe) {
		t.Logf("AMBIGUOUS: the SourceError does not wrap the OnAckError panic (the run was cut short first?): %v", err)
	}
}

func r6Deliv(t *testing.T, rest map[string]jetstream.Msg) map[string]uint64 {
	out := map[string]uint64{}
	for p, m := range rest {
		out[p] = r6Meta(t, m).NumDelivered
	}
	return out
}

// Promise: KeepAlive sends in-progress acks only for a message still on its
// way; once a retryable failure has nak'ed it with a delay, the server must
// redeliver it after that delay (an in-progress ack after the nak would push
// the redelivery back to AckWait, an hour here).
func TestReview6KeepAliveStopsAtTheNak(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	e.pub("1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var deliveries []uint64
	src := natsjs.Source(e.cons, r6Atoi, natsjs.KeepAlive(10*time.Millisecond), natsjs.Backoff(300*time.Millisecond, 300*time.Millisecond))
	m := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[int]) (int, error) {
		deliveries = append(deliveries, m.Deliveries)
		if m.Deliveries == 1 {
			return 0, errR6Boom
		}
		drain()
		return m.Value, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	wait := r6Go(t, cancel, func() error { return sink.ForEach(ctx, m, func(context.Context, int) error { return nil }) })
	var fe *sink.ForwardedError
	if err := wait(); !errors.As(err, &fe) || fe.Count != 1 {
		t.Fatalf("sink error = %v, want a *sink.ForwardedError of 1", err)
	}
	if !slices.Equal(deliveries, []uint64{1, 2}) {
		t.Errorf("deliveries %v, want [1 2]", deliveries)
	}
	r6WaitFor(t, "the ack", func() bool { return e.msgs(e.work) == 0 })
}

// Promise, under load: with cheap stages (which may run in their consumer's
// goroutines over this Interruptible source) and KeepAlive on, a run
// cancelled in the middle acks exactly what the sink committed and naks
// every other message it held, back at once.
func TestReview6CancelMidStreamAccounting(t *testing.T) {
	t.Parallel()
	e := r6New(t, jetstream.ConsumerConfig{}, jetstream.WorkQueuePolicy)
	const total = 400
	e.pubN(total)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	committed := map[string]bool{}
	src := natsjs.Source(e.cons, r6Atoi, natsjs.ReadAhead(40), natsjs.KeepAlive(5*time.Millisecond), natsjs.Backoff(time.Hour, time.Hour))
	m := stage.Map(src, func(_ context.Context, m natsjs.Msg[int]) (int, error) { return m.Value, nil })
	f := stage.Filter(m, func(_ context.Context, v int) (bool, error) { return true, nil })
	u := stage.Unbatch(stage.Batch(f, 7, time.Millisecond))
	wait := r6Go(t, cancel, func() error {
		return sink.ForEach(ctx, u, func(_ context.Context, v int) error {
			mu.Lock()
			defer mu.Unlock()
			committed[strconv.Itoa(v)] = true
			if len(committed) == 150 {
				cancel() // this one is committed all the same
			}
			return nil
		})
	})
	if err := wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("sink error = %v, want context.Canceled", err)
	}
	e.nc.Close()
	rest := e.checkRest(total, committed)
	for p, msg := range rest {
		if d := r6Meta(t, msg).NumDelivered; d > 2 {
			t.Errorf("message %s delivered %d times", p, d)
		}
	}
}
