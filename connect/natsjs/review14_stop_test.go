package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// stage.Ack: "the item sink.First returns ... counts" as committed, so it is
// acknowledged; the package's Outcomes: the others the run held are nak'ed
// when the run stops, "so that another consumer gets it at once".
func TestReview14FirstAcksOnlyItsItem(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	all := w.pubN(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first, ok, err := sink.First(ctx, natsjs.Source(w.cons, r14Str))
	if err != nil || !ok {
		t.Fatalf("First: %v %v", ok, err)
	}
	seen := r14Collect(t, w.cons, func(s *r14Seen) bool { return len(s.snapshot()) == len(all)-1 })
	got := seen.snapshot()
	if _, dup := got[first.Value]; dup {
		t.Fatalf("the item First returned (%q) was delivered again: it was not acknowledged; second run saw %v", first.Value, got)
	}
	for _, v := range all {
		if _, ok := got[v]; !ok && v != first.Value {
			t.Fatalf("message %q lost: second run saw %v, First %q", v, got, first.Value)
		}
	}
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// stage.Ack: "the one before a break out of sink.All" counts as committed.
func TestReview14BreakOutOfAllCommitsWhatWasYielded(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	all := w.pubN(t, 6)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	yielded := map[string]bool{}
	for m, err := range sink.All(ctx, natsjs.Source(w.cons, r14Str)) {
		if err != nil {
			t.Fatal(err)
		}
		yielded[m.Value] = true
		if len(yielded) == 2 {
			break
		}
	}
	seen := r14Collect(t, w.cons, func(s *r14Seen) bool { return len(s.snapshot()) == len(all)-2 })
	for v := range seen.snapshot() {
		if yielded[v] {
			t.Fatalf("%q, yielded before the break, was delivered again (yielded %v, second run %v)", v, yielded, seen.snapshot())
		}
	}
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// Source: "a panic in decode ends the run with a *stage.SourceError wrapping
// a *stage.PanicError, and its message is nak'ed with the others the run
// held" -- with the Outcomes rule that a message on its last allowed delivery
// goes to the dead-letter subject instead.
func TestReview14DecodePanicOnLastDeliveryIsDeadLettered(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 1})
	w.pub(t, "boom")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	decode := func(b []byte) (string, error) {
		if string(b) == "boom" {
			panic("decode exploded")
		}
		return string(b), nil
	}
	err := sink.ForEach(ctx, natsjs.Source(w.cons, decode, natsjs.DeadLetter(w.js, "dlq")), func(context.Context, natsjs.Msg[string]) error { return nil })
	var se *stage.SourceError
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a *stage.SourceError wrapping a *stage.PanicError", err)
	}
	r14WaitFor(t, "the message on its last delivery to reach the dead-letter subject", func() bool { return w.streamMsgs(t, "DLQ") == 1 })
	dl := w.dlq(t)[0]
	if string(dl.Data) != "boom" || dl.Header.Get("Sluice-Deliveries") != "1" || dl.Header.Get("Sluice-Stream-Seq") != "1" || dl.Header.Get("Sluice-Subject") != "w.x" || dl.Header.Get("Sluice-Reason") == "" {
		t.Fatalf("dead letter: data %q headers %v", dl.Data, dl.Header)
	}
}

// Same panic without MaxDeliver: every message the run held but did not
// settle is nak'ed at once (AckWait is an hour here), the panicking one too.
func TestReview14DecodePanicNaksEverythingHeld(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	all := w.pubN(t, 8)
	var armed atomic.Bool
	armed.Store(true)
	decode := func(b []byte) (string, error) {
		if string(b) == "3" && armed.Load() {
			panic("decode exploded")
		}
		return string(b), nil
	}
	committed := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := sink.ForEach(ctx, natsjs.Source(w.cons, decode), func(_ context.Context, m natsjs.Msg[string]) error {
		committed[m.Value] = true
		return nil
	})
	var pe *stage.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a panic", err)
	}
	armed.Store(false)
	seen := r14Collect(t, w.cons, func(s *r14Seen) bool {
		n := 0
		for _, v := range all {
			if committed[v] || s.has(v) {
				n++
			}
		}
		return n == len(all)
	})
	for v := range seen.snapshot() {
		if committed[v] {
			t.Fatalf("%q committed in the first run came again", v)
		}
	}
	if !seen.has("3") {
		t.Fatalf("the message whose decode panicked never came back: %v", seen.snapshot())
	}
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// Outcomes: "the run ended first (cancelled ...): Nak, when the run stops ...
// A message on its last allowed delivery (MaxDeliver) is not delivered again
// after a Nak, so it goes to the dead-letter subject instead (Term)". Source:
// every message the run held (received and not yet taken, or taken and cut
// short by a cancellation). With MaxDeliver 1, every message the run received
// must reach the dead-letter subject.
func TestReview14CancelOnLastDeliveryDeadLettersEveryHeldMessage(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxDeliver: 1})
	const n = 10
	w.pubN(t, n)
	_, js2, tp := tapConnect(t, w.url)
	cons2, err := js2.Consumer(context.Background(), "WORK", "c")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	taken := make(chan struct{}, 1)
	src := natsjs.Source(cons2, r14Str, natsjs.ReadAhead(20), natsjs.DeadLetter(w.js, "dlq"))
	work := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
		select {
		case taken <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return "", ctx.Err()
	}, stage.Workers(1))
	errc := make(chan error, 1)
	go func() { errc <- sink.ForEach(ctx, work, func(context.Context, string) error { return nil }) }()
	<-taken
	// Every message reached the source's connection (the tap counts
	// deliveries only, not the API replies the connection also reads).
	r14WaitFor(t, "all messages to reach the run", func() bool {
		return w.info(t).NumAckPending == n && tp.received() >= n
	})
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	r14WaitFor(t, "every held message to be dead-lettered", func() bool {
		got := w.streamMsgs(t, "DLQ")
		if got > n {
			t.Fatalf("%d dead letters for %d messages", got, n)
		}
		return got == n
	})
}

// Outcomes: a retryable failure is nak'ed "with a delay that grows with the
// delivery count"; at stop, "every message the run held but did not settle is
// nak'ed". The failed message was settled (a delayed Nak): the stop must not
// nak it again without the delay. With a delay of an hour, a later run must
// get the message that was cut short, and a barrier published after it, but
// not the delayed one.
func TestReview14StopDoesNotUndoAPendingDelayedNak(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pub(t, "A", "B")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bTaken := make(chan struct{})
	src := natsjs.Source(w.cons, r14Str, natsjs.Backoff(time.Hour, time.Hour))
	work := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
		if m.Value == "A" {
			return "", errors.New("retry me later")
		}
		close(bTaken)
		<-ctx.Done()
		return "", ctx.Err()
	}, stage.Workers(2), stage.OnError(stage.Forward))
	aFailed := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- stage.Run(ctx, work, func(_ context.Context, _ string, err error) error {
			if err != nil {
				close(aFailed)
			}
			return nil
		})
	}()
	<-aFailed
	<-bTaken
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	var once sync.Once
	seen := r14Collect(t, w.cons, func(s *r14Seen) bool {
		if s.has("B") {
			once.Do(func() { w.pub(t, "C") })
		}
		return s.has("B") && s.has("C")
	})
	if seen.has("A") {
		t.Fatalf("A, nak'ed with a delay of an hour, was delivered again at once: %v", seen.snapshot())
	}
}

// Outcomes: "a failed commit ... Nak" -- the sink fails at the last message;
// the messages before it were committed and never come back, the failed one
// does (with its delivery count 2), and then the queue is empty.
func TestReview14SinkErrorOnTheLastMessage(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	const n = 5
	w.pubN(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	committed := map[string]bool{}
	failed := ""
	err := sink.ForEach(ctx, natsjs.Source(w.cons, r14Str, natsjs.Backoff(time.Millisecond, time.Millisecond)), func(_ context.Context, m natsjs.Msg[string]) error {
		if len(committed) == n-1 {
			failed = m.Value
			return errors.New("commit failed")
		}
		committed[m.Value] = true
		return nil
	})
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "foreach" {
		t.Fatalf("err = %v", err)
	}
	seen := r14Collect(t, w.cons, func(s *r14Seen) bool { return s.has(failed) })
	for v, d := range seen.snapshot() {
		if committed[v] {
			t.Fatalf("%q was committed and came again", v)
		}
		if v == failed && d[0] != 2 {
			t.Fatalf("failed message's Deliveries = %v, want 2", d)
		}
	}
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
	if info := w.info(t); info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("consumer: %d ack pending, %d pending", info.NumAckPending, info.NumPending)
	}
}

// stage.Stream: "Several sinks may run one Stream at the same time ... a
// Source's open is called once per run"; Source: "Each run keeps one pull
// subscription". Two runs of one Source value share the consumer: every
// message once, none twice (nothing fails, AckWait is an hour).
func TestReview14TwoRunsOfOneSourceAtOnce(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	const n = 300
	w.pubN(t, n)
	src := natsjs.Source(w.cons, r14Str, natsjs.ReadAhead(7))
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var mu sync.Mutex
	count := map[string]int{}
	per := [2]int{}
	run := func(i int) error {
		return sink.ForEach(ctx, stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
			return m.Value, nil
		}, stage.Workers(3)), func(_ context.Context, v string) error {
			mu.Lock()
			defer mu.Unlock()
			count[v]++
			per[i]++
			if len(count) == n {
				drain()
			}
			return nil
		})
	}
	errc := make(chan error, 2)
	go func() { errc <- run(0) }()
	go func() { errc <- run(1) }()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for v, c := range count {
		if c != 1 {
			t.Fatalf("%q processed %d times", v, c)
		}
	}
	if len(count) != n {
		t.Fatalf("%d of %d processed", len(count), n)
	}
	t.Logf("runs took %v", per)
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// A Source value reused after its run ended: each run opens anew; what the
// first committed never comes again, what it held comes to the next run.
func TestReview14SourceReusedAfterItsRunEnded(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	all := w.pubN(t, 10)
	src := natsjs.Source(w.cons, r14Str, natsjs.ReadAhead(4))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	first := map[string]bool{}
	err := sink.ForEach(ctx, src, func(_ context.Context, m natsjs.Msg[string]) error {
		first[m.Value] = true
		if len(first) == 3 {
			return stage.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	second := map[string]bool{}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	err = sink.ForEach(ctx, stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) error {
		if first[m.Value] || second[m.Value] {
			return fmt.Errorf("%q came again", m.Value)
		}
		second[m.Value] = true
		if len(first)+len(second) == len(all) {
			drain()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// A third run of the same value takes new work.
	w.pub(t, "late")
	err = sink.ForEach(ctx, src, func(_ context.Context, m natsjs.Msg[string]) error {
		if m.Value != "late" {
			return fmt.Errorf("third run got %q", m.Value)
		}
		return stage.ErrStop
	})
	if err != nil {
		t.Fatal(err)
	}
	r14WaitFor(t, "the work queue to empty", func() bool { return w.streamMsgs(t, "WORK") == 0 })
}

// ReadAhead: "one replica holds at most n messages beyond what its pipeline
// works on". The pipeline works on one message (one worker, no buffer) and is
// stuck: at most 1+n delivered and unacknowledged.
func TestReview14ReadAheadBoundsWhatTheServerDelivers(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pubN(t, 60)
	const n = 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	entered := make(chan struct{}, 1)
	work := stage.Map(natsjs.Source(w.cons, r14Str, natsjs.ReadAhead(n)), func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return "", ctx.Err()
	}, stage.Workers(1))
	errc := make(chan error, 1)
	go func() { errc <- sink.ForEach(ctx, work, func(context.Context, string) error { return nil }) }()
	<-entered
	// Give a violation time to show; the verdict does not depend on it.
	for range 30 {
		if got := w.info(t).NumAckPending; got > 1+n {
			cancel()
			<-errc
			t.Fatalf("%d messages delivered and unacknowledged, with 1 in the pipeline and ReadAhead %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-errc
}
