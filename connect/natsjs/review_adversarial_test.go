package natsjs_test

// Adversarial tests written from the package documentation (doc.go and the
// doc comments of Source, ReadAhead, DeadLetter, Backoff, Permanent) and the
// stage/sink documentation. Every test runs against a real NATS server on
// loopback; durations are hang watchdogs (or, where noted, a window in which
// a broken promise would show), never conditions for passing.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

const rvWatchdog = 30 * time.Second

// rvSetup makes a work-queue stream name (subjects name.>), a dead-letter
// stream name_DLQ (subject dlq.name) and the durable consumer "c".
func rvSetup(t *testing.T, js jetstream.JetStream, name string, ackWait time.Duration, maxDeliver int) jetstream.Consumer {
	t.Helper()
	ctx := context.Background()
	for _, cfg := range []jetstream.StreamConfig{
		{Name: name, Subjects: []string{name + ".>"}, Retention: jetstream.WorkQueuePolicy},
		{Name: name + "_DLQ", Subjects: []string{"dlq." + name}},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if maxDeliver == 0 {
		maxDeliver = -1
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{
		Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxDeliver: maxDeliver, MaxAckPending: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cons
}

// rvPub publishes data to subject and returns its stream sequence.
func rvPub(t *testing.T, js jetstream.JetStream, subject, data string) uint64 {
	t.Helper()
	ack, err := js.Publish(context.Background(), subject, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func rvInfo(t *testing.T, cons jetstream.Consumer) *jetstream.ConsumerInfo {
	t.Helper()
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func rvStreamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// rvHas reports whether the stream still stores the message seq (in a
// work queue: it was not acknowledged).
func rvHas(t *testing.T, js jetstream.JetStream, name string, seq uint64) bool {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.GetMsg(context.Background(), seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// rvRecv waits for a value on c, with a watchdog.
func rvRecv[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(rvWatchdog):
		t.Fatalf("gave up after %v waiting for %s", rvWatchdog, what)
		panic("unreachable")
	}
}

// rvRecvN takes k values from c, or reports false after the watchdog (for
// goroutines other than the test's).
func rvRecvN[T any](c <-chan T, k int) bool {
	deadline := time.After(rvWatchdog)
	for range k {
		select {
		case <-c:
		case <-deadline:
			return false
		}
	}
	return true
}

func decodeString(b []byte) (string, error) { return string(b), nil }

// rvDrainRest runs a fresh pipeline over cons (no options: whatever the
// first run did to a message, the server decides when it comes back) until
// every value in want has been committed. It fails if a value outside want
// arrives, or if the rest does not come within the watchdog: with an AckWait
// of an hour, only a Nak explains a prompt redelivery.
func rvDrainRest(t *testing.T, cons jetstream.Consumer, want map[string]bool) map[string]int {
	t.Helper()
	got := map[string]int{}
	left := len(want)
	ctx, cancel := context.WithTimeout(context.Background(), rvWatchdog)
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	if left == 0 {
		drain()
	}
	err := sink.ForEach(ctx, stage.Until(natsjs.Source(cons, decodeString), stop), func(_ context.Context, m natsjs.Msg[string]) error {
		got[m.Value]++
		if !want[m.Value] {
			return fmt.Errorf("the next run got %q (delivery %d), which it should not have got now", m.Value, m.Deliveries)
		}
		if got[m.Value] == 1 {
			if left--; left == 0 {
				drain()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the next run: %v (got %d of the %d messages expected at once: %v)", err, len(want)-left, len(want), got)
	}
	return got
}

// 1. Acknowledgement only after the sink committed: while the sink's
// callback for a batch has not returned, none of the batch's messages is
// acknowledged, even with KeepAlive sending in-progress acks meanwhile.
func TestReviewNoAckBeforeTheSinkReturns(t *testing.T) {
	const n = 10
	nc, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "NOACK", time.Hour, 0)
	for i := range n {
		rvPub(t, js, "NOACK.job", strconv.Itoa(i))
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	entered := make(chan []string, 1)
	release := make(chan struct{})
	var committed atomic.Int64
	errc := make(chan error, 1)
	go func() {
		src := natsjs.Source(cons, decodeString, natsjs.KeepAlive(20*time.Millisecond))
		batches := stage.Batch(stage.Until(src, stop), 5, 0)
		errc <- sink.ForEach(context.Background(), batches, func(_ context.Context, b []natsjs.Msg[string]) error {
			if committed.Load() == 0 {
				vs := make([]string, len(b))
				for i, m := range b {
					vs[i] = m.Value
				}
				entered <- vs
				<-release
			}
			committed.Add(int64(len(b)))
			if committed.Load() == n {
				drain()
			}
			return nil
		})
	}()
	first := rvRecv(t, "the first batch in the sink", entered)
	if len(first) != 5 {
		t.Fatalf("first batch %v, want 5 messages", first)
	}
	// A window in which an early ack would show: the source's connection
	// is flushed (anything it sent has reached the server), then the
	// stream and consumer are watched for several KeepAlive periods.
	for range 25 {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := rvStreamMsgs(t, js, "NOACK"); got != n {
			close(release)
			t.Fatalf("the stream holds %d messages while the sink has committed none: some were acknowledged early", got)
		}
		if info := rvInfo(t, cons); info.NumAckPending < 5 {
			close(release)
			t.Fatalf("NumAckPending = %d while a batch of 5 is in the sink", info.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(release)
	if err := rvRecv(t, "the run", errc); err != nil {
		t.Fatalf("drained run: %v", err)
	}
	waitFor(t, "every message acknowledged", func() bool {
		info := rvInfo(t, cons)
		return rvStreamMsgs(t, js, "NOACK") == 0 && info.NumAckPending == 0 && info.NumPending == 0
	})
}

var (
	errRetry   = errors.New("retry me")
	errPerm    = errors.New("perm failure")
	errHandled = errors.New("handled failure")
	errTarget  = errors.New("target failure")
)

// 2. Outcomes: committed, dropped by a Filter, accepted by a Handle policy
// -> Ack; forwarded *stage.Error -> Nak with delay (redelivered promptly
// although AckWait is an hour); Permanent -> Term + dead letter at once;
// failing on the last delivery (MaxDeliver) -> Term + dead letter;
// undecodable -> Term + dead letter, never in the pipeline. Each message is
// delivered exactly as often as its outcome allows, and the dead letters
// carry the documented headers and the original payload.
func TestReviewOutcomesMapToAcks(t *testing.T) {
	const each, maxDeliver = 4, 3
	_, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "OUT", time.Hour, maxDeliver)
	kinds := []string{"ok", "drop", "handled", "retry", "perm", "poison", "garbage"}
	seqOf := map[string]uint64{}
	for _, k := range kinds {
		for i := range each {
			v := fmt.Sprintf("%s-%d", k, i)
			seqOf[v] = rvPub(t, js, "OUT.job", v)
		}
	}
	kind := func(v string) string { return v[:strings.IndexByte(v, '-')] }
	decode := func(b []byte) (string, error) {
		if kind(string(b)) == "garbage" {
			return "", errors.New("undecodable")
		}
		return string(b), nil
	}
	var mu sync.Mutex
	deliveries := map[string][]uint64{}
	committed := map[string]int{}
	var metaErrs []string

	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := natsjs.Source(cons, decode, natsjs.DeadLetter(js, "dlq.OUT"), natsjs.Backoff(10*time.Millisecond, 40*time.Millisecond))
	seen := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		mu.Lock()
		defer mu.Unlock()
		deliveries[m.Value] = append(deliveries[m.Value], m.Deliveries)
		if m.Sequence != seqOf[m.Value] || m.Subject != "OUT.job" {
			metaErrs = append(metaErrs, fmt.Sprintf("%s: seq %d subject %q, want %d %q", m.Value, m.Sequence, m.Subject, seqOf[m.Value], "OUT.job"))
		}
		return m, nil
	}, stage.Workers(4))
	kept := stage.Filter(seen, func(_ context.Context, m natsjs.Msg[string]) (bool, error) {
		return kind(m.Value) != "drop", nil
	}, stage.Workers(2))
	handled := stage.Map(kept, func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		if kind(m.Value) == "handled" {
			return m, errHandled
		}
		return m, nil
	}, stage.Workers(2), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	checked := stage.Map(handled, func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		switch kind(m.Value) {
		case "retry":
			if m.Deliveries == 1 {
				return m, errRetry
			}
		case "perm":
			return m, natsjs.Permanent(errPerm)
		case "poison":
			return m, errPoison
		}
		return m, nil
	}, stage.Workers(2), stage.OnError(stage.Forward))
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(context.Background(), checked, func(_ context.Context, m natsjs.Msg[string]) error {
			mu.Lock()
			committed[m.Value]++
			mu.Unlock()
			return nil
		})
	}()
	const dead = 3 * each // perm, poison, garbage
	waitFor(t, "every message settled", func() bool {
		mu.Lock()
		done := len(committed) == 2*each // ok, retry
		mu.Unlock()
		info := rvInfo(t, cons)
		return done && info.NumAckPending == 0 && info.NumPending == 0 && rvStreamMsgs(t, js, "OUT_DLQ") == dead
	})
	drain()
	err := rvRecv(t, "the drained run", errc)
	var fe *sink.ForwardedError
	wantForwarded := each + each + maxDeliver*each // retry once, perm once, poison on every delivery
	if !errors.As(err, &fe) || fe.Count != wantForwarded {
		t.Errorf("run error %v, want a *sink.ForwardedError with %d errors", err, wantForwarded)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, e := range metaErrs {
		t.Error(e)
	}
	want := map[string]struct {
		deliveries []uint64
		committed  int
	}{
		"ok":      {[]uint64{1}, 1},
		"drop":    {[]uint64{1}, 0},
		"handled": {[]uint64{1}, 0},
		"retry":   {[]uint64{1, 2}, 1},
		"perm":    {[]uint64{1}, 0},
		"poison":  {[]uint64{1, 2, 3}, 0},
		"garbage": {nil, 0},
	}
	for v := range seqOf {
		w := want[kind(v)]
		if fmt.Sprint(deliveries[v]) != fmt.Sprint(w.deliveries) || committed[v] != w.committed {
			t.Errorf("%s: deliveries %v committed %d, want deliveries %v committed %d", v, deliveries[v], committed[v], w.deliveries, w.committed)
		}
	}
	if got := rvStreamMsgs(t, js, "OUT"); got != 0 {
		t.Errorf("the work queue still holds %d messages", got)
	}

	dlq, err := js.Stream(context.Background(), "OUT_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	wantDeliveries := map[string]string{"perm": "1", "poison": strconv.Itoa(maxDeliver), "garbage": "1"}
	byKind := map[string]int{}
	for seq := uint64(1); seq <= dead; seq++ {
		m, err := dlq.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		v := string(m.Data)
		k := kind(v)
		byKind[k]++
		h := m.Header
		if h.Get("Sluice-Subject") != "OUT.job" || h.Get("Sluice-Stream-Seq") != strconv.FormatUint(seqOf[v], 10) ||
			h.Get("Sluice-Deliveries") != wantDeliveries[k] || h.Get("Sluice-Reason") == "" {
			t.Errorf("dead letter %q: headers %v, want subject OUT.job, seq %d, deliveries %s, a reason", v, h, seqOf[v], wantDeliveries[k])
		}
	}
	if byKind["perm"] != each || byKind["poison"] != each || byKind["garbage"] != each || len(byKind) != 3 {
		t.Errorf("dead letters by kind %v, want %d each of perm, poison, garbage", byKind, each)
	}
}

// 2 and 6. A failure at one message while others are in flight: the failed
// message is nak'ed with the Backoff delay (an hour here, so the next run
// must not get it) or, under Permanent, terminated and dead-lettered; the
// messages the run ended first for are nak'ed at stop, so that the next run
// gets them at once although AckWait is an hour. A panic in a stage function
// or in the sink callback is returned as an error wrapping a
// *stage.PanicError, and its message is not acknowledged.
func TestReviewFailureAtOneMessage(t *testing.T) {
	for _, c := range []struct {
		where, how string
	}{
		{"stage", "error"}, {"stage", "panic"}, {"stage", "permanent"},
		{"sink", "error"}, {"sink", "panic"}, {"sink", "permanent"},
	} {
		t.Run(c.where+"-"+c.how, func(t *testing.T) {
			const n, others = 12, 3
			_, js := connect(t, startServer(t))
			name := "F" + strings.ToUpper(c.where+c.how)
			cons := rvSetup(t, js, name, time.Hour, 0)
			seqOf := map[string]uint64{}
			for i := range n {
				seqOf[strconv.Itoa(i)] = rvPub(t, js, name+".job", strconv.Itoa(i))
			}
			const target = "0" // the first message delivered, so it gets a worker
			fail := func() error {
				switch c.how {
				case "panic":
					panic("boom at the target")
				case "permanent":
					return natsjs.Permanent(errTarget)
				}
				return errTarget
			}
			entered := make(chan string, n)
			var committedFirst sync.Map
			src := natsjs.Source(cons, decodeString, natsjs.Backoff(time.Hour, time.Hour), natsjs.DeadLetter(js, "dlq."+name))
			work := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
				if m.Value == target {
					if c.where == "stage" {
						if !rvRecvN(entered, others) {
							return "", errors.New("watchdog: the other messages did not reach the stage")
						}
						return "", fail()
					}
					return m.Value, nil
				}
				entered <- m.Value
				<-ctx.Done() // in flight until the run ends
				return "", ctx.Err()
			}, stage.Workers(1+others))
			err := sink.ForEach(context.Background(), work, func(_ context.Context, v string) error {
				if v == target {
					if !rvRecvN(entered, others) {
						return errors.New("watchdog: the other messages did not reach the stage")
					}
					return fail()
				}
				committedFirst.Store(v, true)
				return nil
			})
			if c.how == "panic" {
				var pe *stage.PanicError
				if !errors.As(err, &pe) {
					t.Fatalf("run error %v, want one wrapping a *stage.PanicError", err)
				}
			} else if !errors.Is(err, errTarget) {
				t.Fatalf("run error %v, want the target's error", err)
			}
			var se *stage.Error
			if !errors.As(err, &se) {
				t.Fatalf("run error %v, want a *stage.Error", err)
			}

			rest := map[string]bool{}
			for i := range n {
				if v := strconv.Itoa(i); v != target {
					if _, ok := committedFirst.Load(v); !ok {
						rest[v] = true
					}
				}
			}
			rvDrainRest(t, cons, rest)

			targetSeq := seqOf[target]
			if c.how == "permanent" {
				waitFor(t, "the target terminated and dead-lettered", func() bool {
					return rvStreamMsgs(t, js, name) == 0 && rvStreamMsgs(t, js, name+"_DLQ") == 1
				})
				return
			}
			// Nak'ed with an hour's delay: still stored (not acknowledged),
			// not dead-lettered, and nothing else is left.
			if !rvHas(t, js, name, targetSeq) {
				t.Fatalf("the failed message (seq %d) was acknowledged", targetSeq)
			}
			waitFor(t, "only the failed message left", func() bool { return rvStreamMsgs(t, js, name) == 1 })
			if d := rvStreamMsgs(t, js, name+"_DLQ"); d != 0 {
				t.Fatalf("%d dead letters for a retryable failure", d)
			}
		})
	}
}

// 4. ReadAhead(n): one replica holds at most n messages beyond what its
// pipeline works on. The pipeline is blocked on a gate with all its
// workers busy; the consumer's NumAckPending (messages delivered and not
// acknowledged) is watched for a while.
func TestReviewReadAheadBound(t *testing.T) {
	for _, c := range []struct{ readAhead, workers int }{{1, 0}, {7, 3}} {
		t.Run(fmt.Sprintf("readahead=%d,workers=%d", c.readAhead, c.workers), func(t *testing.T) {
			const n = 60
			_, js := connect(t, startServer(t))
			cons := rvSetup(t, js, "RA", time.Hour, 0)
			for i := range n {
				rvPub(t, js, "RA.job", strconv.Itoa(i))
			}
			entered := make(chan struct{}, n)
			gate := make(chan struct{})
			block := func() {
				entered <- struct{}{}
				<-gate
			}
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			src := stage.Until(natsjs.Source(cons, decodeString, natsjs.ReadAhead(c.readAhead)), stop)
			s := src
			busy := 1 // the sink's callback
			if c.workers > 0 {
				busy = c.workers
				s = stage.Map(src, func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
					block()
					return m, nil
				}, stage.Workers(c.workers))
			}
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(context.Background(), s, func(context.Context, natsjs.Msg[string]) error {
					if c.workers == 0 {
						block()
					}
					return nil
				})
			}()
			for range busy {
				rvRecv(t, "the pipeline's workers busy", entered)
			}
			bound := c.readAhead + busy
			maxSeen := 0
			for range 50 { // a window in which excess read-ahead would show
				got := rvInfo(t, cons).NumAckPending
				maxSeen = max(maxSeen, got)
				if got > bound {
					drain()
					close(gate)
					<-errc
					t.Fatalf("NumAckPending = %d with %d messages in the pipeline and ReadAhead(%d): more than %d held", got, busy, c.readAhead, bound)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("at most %d messages delivered and unacknowledged (bound %d)", maxSeen, bound)
			drain()
			close(gate)
			if err := rvRecv(t, "the drained run", errc); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// 5. Cancellation at every point: before the first message (the source
// waits on an empty consumer), while decode runs, while a stage function
// runs, while the sink commits. The sink returns the cancellation, no
// goroutine of the run is left, the subscription is gone, and the next run
// gets every message not committed at once (AckWait is an hour). A message
// whose sink callback returned nil after the cancellation was committed and
// must be acknowledged.
func TestReviewCancelAtEveryPoint(t *testing.T) {
	for _, where := range []string{"waiting", "decode", "stage", "sink"} {
		t.Run(where, func(t *testing.T) {
			const n = 10
			nc, js := connect(t, startServer(t))
			name := "C" + strings.ToUpper(where)
			cons := rvSetup(t, js, name, time.Hour, 0)
			if where != "waiting" {
				for i := range n {
					rvPub(t, js, name+".job", strconv.Itoa(i))
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			entered := make(chan struct{}, 1)
			release := make(chan struct{})
			var once sync.Once
			enter := func() bool {
				first := false
				once.Do(func() { first = true })
				if first {
					entered <- struct{}{}
				}
				return first
			}
			decode := func(b []byte) (string, error) {
				if where == "decode" && enter() {
					<-release // decode takes no ctx: it returns when the test says so
				}
				return string(b), nil
			}
			var mu sync.Mutex
			seen := map[string]int{}
			baseSubs := nc.NumSubscriptions()
			leaks := goleak.IgnoreCurrent()
			src := natsjs.Source(cons, decode)
			work := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
				if where == "stage" && enter() {
					<-ctx.Done()
					return "", ctx.Err()
				}
				return m.Value, nil
			}, stage.Workers(2))
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, work, func(ctx context.Context, v string) error {
					if where == "sink" && enter() {
						<-ctx.Done() // the commit goes on after the cancellation and succeeds
					}
					mu.Lock()
					seen[v]++
					mu.Unlock()
					return nil
				})
			}()
			if where == "waiting" {
				waitFor(t, "the source's pull request", func() bool { return rvInfo(t, cons).NumWaiting > 0 })
			} else {
				rvRecv(t, "the "+where+" call", entered)
			}
			cancel()
			close(release)
			err := rvRecv(t, "the cancelled run", errc)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("run error %v, want context.Canceled", err)
			}
			if err := goleak.Find(leaks); err != nil {
				t.Fatalf("goroutines left after the sink returned: %v", err)
			}
			waitFor(t, "the run's subscription to go", func() bool { return nc.NumSubscriptions() <= baseSubs })
			if where == "waiting" {
				for i := range n {
					rvPub(t, js, name+".job", strconv.Itoa(i))
				}
			}

			mu.Lock()
			rest := map[string]bool{}
			for i := range n {
				if v := strconv.Itoa(i); seen[v] == 0 {
					rest[v] = true
				}
			}
			committed := len(seen)
			mu.Unlock()
			if where == "sink" && committed != 1 {
				t.Fatalf("%d messages committed in the first run, want 1", committed)
			}
			for v, k := range rvDrainRest(t, cons, rest) {
				seen[v] += k
			}
			checkDrained(t, name, cons, seen, n)
		})
	}
}

// 6. A panic in decode never crashes the process and does not acknowledge
// the message: either the run returns an error wrapping a
// *stage.PanicError and the message stays for redelivery, or the message is
// treated as undecodable (terminated and dead-lettered).
func TestReviewDecodePanic(t *testing.T) {
	const n, bad = 6, "3"
	_, js := connect(t, startServer(t))
	cons := rvSetup(t, js, "DP", time.Hour, 0)
	seqOf := map[string]uint64{}
	for i := range n {
		seqOf[strconv.Itoa(i)] = rvPub(t, js, "DP.job", strconv.Itoa(i))
	}
	decode := func(b []byte) (string, error) {
		if string(b) == bad {
			panic("decode exploded")
		}
		return string(b), nil
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var committed atomic.Int64
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(context.Background(), stage.Until(natsjs.Source(cons, decode, natsjs.DeadLetter(js, "dlq.DP")), stop),
			func(context.Context, natsjs.Msg[string]) error {
				committed.Add(1)
				return nil
			})
	}()
	var err error
	var returned bool
	waitFor(t, "the run to fail or the bad message to be dead-lettered", func() bool {
		select {
		case err = <-errc:
			returned = true
			return true
		default:
		}
		return committed.Load() == n-1 && rvStreamMsgs(t, js, "DP_DLQ") == 1
	})
	if !returned {
		drain()
		err = rvRecv(t, "the drained run", errc)
		t.Logf("the panic was treated as undecodable; run error: %v", err)
		return
	}
	var pe *stage.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("run error %v, want one wrapping a *stage.PanicError", err)
	}
	if !rvHas(t, js, "DP", seqOf[bad]) {
		t.Fatalf("the message whose decode panicked was acknowledged")
	}
}

// A message on its last allowed delivery (MaxDeliver 2 here) that the run
// does not settle. The server never delivers it again after a Nak, so:
//   - cut-short, with a dead-letter subject: the run ends while the
//     message's last delivery is in the stage; it must reach the
//     dead-letter subject, with the source's headers, and leave the work
//     queue (package doc, "Outcomes");
//   - cut-short-no-dlq: the same without a dead-letter subject; it must
//     stay in the stream, not terminated (doc: "stays in the stream,
//     undelivered");
//   - dead-letter-fails: its last delivery fails and the dead-letter
//     publish fails; DeadLetter's doc: nak'ed "so that it is not lost",
//     and on the last delivery it stays in the stream.
func TestReviewLastDeliveryIsNotStranded(t *testing.T) {
	for _, how := range []string{"cut-short", "cut-short-no-dlq", "dead-letter-fails"} {
		t.Run(how, func(t *testing.T) {
			_, js := connect(t, startServer(t))
			name := "LAST" + strings.ToUpper(strings.ReplaceAll(how, "-", ""))
			cons := rvSetup(t, js, name, time.Hour, 2)
			seq := rvPub(t, js, name+".job", "x")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			entered := make(chan struct{}, 1)
			ackErrs := make(chan error, 10)
			opts := []natsjs.SourceOption{natsjs.Backoff(10*time.Millisecond, 10*time.Millisecond),
				natsjs.OnAckError(func(err error) { ackErrs <- err })}
			switch how {
			case "cut-short":
				opts = append(opts, natsjs.DeadLetter(js, "dlq."+name))
			case "dead-letter-fails":
				opts = append(opts, natsjs.DeadLetter(js, "nowhere")) // no stream captures it
			}
			work := stage.Map(natsjs.Source(cons, decodeString, opts...), func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
				if m.Deliveries == 1 || how == "dead-letter-fails" {
					return "", errRetry
				}
				entered <- struct{}{}
				<-ctx.Done()
				return "", ctx.Err()
			}, stage.OnError(stage.Forward))
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, work, func(context.Context, string) error { return nil })
			}()
			if how == "dead-letter-fails" {
				t.Logf("dead-letter publish failed: %v", rvRecv(t, "the failed dead-letter publish", ackErrs))
			} else {
				rvRecv(t, "the last delivery in the stage", entered)
			}
			cancel()
			if err := rvRecv(t, "the cancelled run", errc); !errors.Is(err, context.Canceled) {
				t.Fatalf("run error %v, want context.Canceled", err)
			}
			// The run has returned: every acknowledgement was sent. A
			// flush through the consumer's info makes the server see them.
			info := rvInfo(t, cons)
			if how != "cut-short" {
				if !rvHas(t, js, name, seq) {
					t.Fatalf("the message was dropped from the stream (NumAckPending %d, NumPending %d)", info.NumAckPending, info.NumPending)
				}
				if d := rvStreamMsgs(t, js, name+"_DLQ"); d != 0 {
					t.Fatalf("%d dead letters, want none", d)
				}
				return
			}
			waitFor(t, "the dead letter", func() bool { return rvStreamMsgs(t, js, name+"_DLQ") == 1 })
			waitFor(t, "the message to leave the work queue", func() bool { return !rvHas(t, js, name, seq) })
			raw, err := js.Stream(context.Background(), name+"_DLQ")
			if err != nil {
				t.Fatal(err)
			}
			dead, err := raw.GetLastMsgForSubject(context.Background(), "dlq."+name)
			if err != nil {
				t.Fatal(err)
			}
			if string(dead.Data) != "x" || dead.Header.Get("Sluice-Deliveries") != "2" || dead.Header.Get("Sluice-Stream-Seq") != strconv.FormatUint(seq, 10) || dead.Header.Get("Sluice-Reason") == "" {
				t.Fatalf("dead letter %q with headers %v", dead.Data, dead.Header)
			}
		})
	}
}

// stallProxy is a TCP proxy between a NATS client and the server that can
// stall the connection: while paused it goes on reading both sides (so
// neither blocks, and the server sees no slow consumer) but forwards
// nothing; resume forwards what it held, in order.
type stallProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	paused bool
	// pauseOn: pause right after forwarding client bytes that complete
	// this string (counted from the moment it was armed).
	pauseOn    string
	armedAt    int
	paused1    chan struct{}
	fromClient bytes.Buffer // every byte the client sent
	pausedAt   int          // fromClient.Len() when the pause began
	held       [2][]byte    // [0] client->server, [1] server->client
	server     net.Conn
	client     net.Conn
	wg         sync.WaitGroup
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, paused1: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.client, p.server = c, s
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(c, s, 0)
			go p.pipe(s, c, 1)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *stallProxy) url() string { return "nats://" + p.ln.Addr().String() }

// consumer is consumer "c" of stream, seen through a new connection to
// the proxy that does not reconnect (opts are added to its options),
// closed when the test ends; and that connection.
func (p *stallProxy) consumer(t *testing.T, stream string, opts ...nats.Option) (jetstream.Consumer, *nats.Conn) {
	t.Helper()
	pnc, err := nats.Connect(p.url(), append([]nats.Option{nats.MaxReconnects(0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pnc.Close)
	pjs, err := jetstream.New(pnc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := pjs.Consumer(context.Background(), stream, "c")
	if err != nil {
		t.Fatal(err)
	}
	return cons, pnc
}

func (p *stallProxy) pipe(from, to net.Conn, dir int) {
	defer p.wg.Done()
	defer to.Close()
	buf := make([]byte, 32*1024)
	for {
		k, err := from.Read(buf)
		if k > 0 {
			chunk := buf[:k]
			p.mu.Lock()
			if dir == 0 {
				p.fromClient.Write(chunk)
			}
			if p.paused {
				p.held[dir] = append(p.held[dir], chunk...)
			} else {
				to.Write(chunk)
				if dir == 0 && p.pauseOn != "" && bytes.Contains(p.fromClient.Bytes()[p.armedAt:], []byte(p.pauseOn)) {
					p.pauseOn = ""
					p.paused = true
					p.pausedAt = p.fromClient.Len()
					close(p.paused1)
				}
			}
			p.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// armPause makes the proxy pause right after it has forwarded client bytes
// containing s.
func (p *stallProxy) armPause(s string) {
	p.mu.Lock()
	p.pauseOn = s
	p.armedAt = p.fromClient.Len()
	p.mu.Unlock()
}

// sentSincePause reports whether the client sent something containing one
// of subs while the proxy was paused.
func (p *stallProxy) sentSincePause(subs ...string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	since := append([]byte("\n"), p.fromClient.Bytes()[p.pausedAt:]...)
	for _, s := range subs {
		if bytes.Contains(since, []byte(s)) {
			return true
		}
	}
	return false
}

func (p *stallProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = false
	p.server.Write(p.held[0])
	p.client.Write(p.held[1])
	p.held = [2][]byte{}
}

// 3. A stalled connection: the source's pull request reaches the server,
// then the connection stalls (nothing passes either way, nothing is
// closed). Messages published meanwhile are delivered by the server to the
// pull request it holds, into the stall. The subscription misses its
// heartbeats; the source must make a new one and go on. The proxy resumes
// once the client has sent a new subscription or API request (the source
// reacting to the missed heartbeats), so the stall ends on an event, not
// after a guessed time. Then every message must be committed exactly once,
// the drained run must return nil, and nothing may be left unacknowledged
// (AckWait is an hour: a message dropped on the client would hang here).
func TestReviewStalledConnectionResubscribes(t *testing.T) {
	const first, second = 20, 20
	url := startServer(t)
	_, js := connect(t, url) // direct: setup, publishing, inspection
	cons := rvSetup(t, js, "STALL", time.Hour, 0)
	proxy := newStallProxy(t, strings.TrimPrefix(url, "nats://"))
	pcons, _ := proxy.consumer(t, "STALL")
	proxy.armPause("CONSUMER.MSG.NEXT.STALL.c")

	var mu sync.Mutex
	seen := map[string]int{}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(context.Background(), stage.Until(natsjs.Source(pcons, decodeString), stop), func(_ context.Context, m natsjs.Msg[string]) error {
			mu.Lock()
			seen[m.Value]++
			if len(seen) == first+second {
				drain()
			}
			mu.Unlock()
			return nil
		})
	}()
	rvRecv(t, "the source's first pull request", proxy.paused1)
	// Into the stall: the server delivers these to the pull request it holds.
	for i := range first {
		rvPub(t, js, "STALL.job", strconv.Itoa(i))
	}
	waitFor(t, "the server to deliver into the stall", func() bool { return rvInfo(t, cons).NumAckPending == first })
	waitFor(t, "the source to react to the stall (a new subscription or request)", func() bool {
		return proxy.sentSincePause("\nSUB ", "$JS.API.")
	})
	proxy.resume()
	for i := range second {
		rvPub(t, js, "STALL.job", strconv.Itoa(first+i))
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("the run failed after the stall: %v", err)
		}
	case <-time.After(rvWatchdog):
		mu.Lock()
		got := len(seen)
		var missing []string
		for i := range first + second {
			if seen[strconv.Itoa(i)] == 0 {
				missing = append(missing, strconv.Itoa(i))
			}
		}
		mu.Unlock()
		t.Logf("not committed: %v", missing)
		info := rvInfo(t, cons)
		drain()
		err := rvRecv(t, "the drained run", errc)
		after := rvInfo(t, cons)
		t.Fatalf("after the stall the run committed %d of %d messages in %v (NumAckPending %d, NumPending %d); the drained run returned %v and left NumAckPending %d: messages delivered into the stall are stranded until AckWait",
			got, first+second, rvWatchdog, info.NumAckPending, info.NumPending, err, after.NumAckPending)
	}
	mu.Lock()
	defer mu.Unlock()
	checkDrained(t, "stall", cons, seen, first+second)
}
