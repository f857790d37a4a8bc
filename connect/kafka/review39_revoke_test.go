package kafka_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r39Events records a member's events and wakes waiters on each.
type r39Events struct {
	mu  sync.Mutex
	evs []kafka.Event
	ch  chan struct{}
}

func newR39Events() *r39Events { return &r39Events{ch: make(chan struct{})} }

func (e *r39Events) on(ev kafka.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	close(e.ch)
	e.ch = make(chan struct{})
	e.mu.Unlock()
}

// wait waits until pred holds over the events seen, or errc delivers the
// run's result (returned, with ended true). The deadline is a hang
// watchdog only.
func (e *r39Events) wait(t testing.TB, what string, errc <-chan error, pred func([]kafka.Event) bool) (err error, ended bool) {
	t.Helper()
	deadline := time.After(r39Watchdog)
	for {
		e.mu.Lock()
		ch, evs := e.ch, append([]kafka.Event(nil), e.evs...)
		e.mu.Unlock()
		if pred(evs) {
			return nil, false
		}
		select {
		case <-ch:
		case err := <-errc:
			return err, true
		case <-deadline:
			t.Fatalf("hung: waiting for %s", what)
		}
	}
}

const r39Watchdog = 30 * time.Second

func r39Names(ps map[string][]int32, topic string, p int32) bool {
	return slices.Contains(ps[topic], p)
}

func r39Revoked(topic string, p int32) func([]kafka.Event) bool {
	return func(evs []kafka.Event) bool {
		for _, e := range evs {
			if e.Kind == kafka.Revoked && r39Names(e.Partitions, topic, p) {
				return true
			}
		}
		return false
	}
}

// r39DLQGate holds the first produce request to topic until open is
// closed, then refuses it (TopicAuthorizationFailed); later requests pass.
type r39DLQGate struct {
	mu       sync.Mutex
	requests int
	entered  chan struct{}
	open     chan struct{}
}

func newR39DLQGate(c *kfake.Cluster, topic string) *r39DLQGate {
	g := &r39DLQGate{entered: make(chan struct{}), open: make(chan struct{})}
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		hit := false
		for _, pt := range req.Topics {
			if r14IsTopic(c, pt, topic) {
				hit = true
			}
		}
		if !hit {
			return nil, nil, false
		}
		g.mu.Lock()
		g.requests++
		first := g.requests == 1
		g.mu.Unlock()
		if !first {
			return nil, nil, false
		}
		close(g.entered)
		c.SleepControl(func() { <-g.open })
		return refuse(req), nil, true
	})
	return g
}

// Rebalances (doc.go: "When a partition is revoked, the source takes no
// more of its records, commits its watermark, and never commits for it
// again: acknowledgements of its records still in flight are ignored (the
// records may still finish; the new owner gets them again from the
// watermark)"), against Offsets ("One that gives up (... the broker refused
// it) fails the run (unless the run was cut short first ...)").
//
// Member A (eager balancer) owns jobs/0. Its record 1 fails (Attempts(1));
// its dead letter is held by the broker. A second member joins the group
// for another topic: jobs/0 is revoked from A (and given back). Only then
// does the broker refuse the held dead letter. The record belongs to an
// ownership that is over: the new ownership takes it again (and this time
// it succeeds). Does the refusal of the revoked ownership's dead letter
// fail the whole run?
//
// Two variants: "ack": the failure (Done) came before the revoke, the dead
// letter was in flight at it; "decode": decode rejects the record only
// after the revoke (the record was taken before it), as an acknowledgement
// arriving after the revoke, which the doc says is ignored.
func TestReview39DeadLetterRefusedAfterRevoke(t *testing.T) {
	for _, mode := range []string{"ack", "decode"} {
		t.Run(mode, func(t *testing.T) { r39DeadLetterRefusedAfterRevoke(t, mode) })
	}
}

func r39DeadLetterRefusedAfterRevoke(t *testing.T, mode string) {
	c, addrs := newCluster(t, 1, "jobs", "other", "dlq")
	produceTo(t, addrs, "jobs", 0, 0, 3)
	gate := newR39DLQGate(c, "dlq")
	defer func() {
		select {
		case <-gate.open:
		default:
			close(gate.open)
		}
	}()
	ev := newR39Events()
	eager := kgo.Balancers(kgo.RangeBalancer())

	revokedSeen := make(chan struct{})
	decodeIn := make(chan struct{})
	var decodeMu sync.Mutex
	decodeCalls := map[int64]int{}
	decode := func(r *kgo.Record) (int, error) {
		v, err := decodeInt(r)
		if mode != "decode" || r.Offset != 1 {
			return v, err
		}
		decodeMu.Lock()
		decodeCalls[r.Offset]++
		k := decodeCalls[r.Offset]
		decodeMu.Unlock()
		if k > 1 {
			return v, err // the new ownership's try decodes
		}
		close(decodeIn)
		// Taken in the first ownership; rejected once it was revoked.
		select {
		case <-revokedSeen:
		case <-time.After(r39Watchdog):
		}
		return 0, errors.New("undecodable")
	}
	src := kafka.Source(append(memberOpts(addrs, "g", "jobs"), eager), decode,
		kafka.Attempts(1), kafka.DeadLetter("dlq"), kafka.CommitInterval(time.Hour), kafka.OnEvent(ev.on))
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (int, error) {
		if mode == "ack" && r.Offset == 1 && r.Attempts == 1 && !isClosed(revokedSeen) {
			return 0, errors.New("poison") // the first ownership's try
		}
		return r.Value, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	oneStored := make(chan struct{})
	var once sync.Once
	errc := goRun(func() error {
		return sink.ForEach(ctx, stage.Until(work, stop), func(_ context.Context, v int) error {
			if v == 1 {
				once.Do(func() { close(oneStored) })
			}
			return nil
		})
	})

	inFlight := gate.entered
	if mode == "decode" {
		inFlight = decodeIn
	}
	select {
	case <-inFlight:
	case err := <-errc:
		t.Fatalf("the run ended (%v) before its dead letter was produced", err)
	case <-time.After(r39Watchdog):
		t.Fatal("hung: no dead letter was produced")
	}

	b, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("other"), eager,
		kgo.SessionTimeout(memberSession), kgo.HeartbeatInterval(200*time.Millisecond), kgo.RebalanceTimeout(10*time.Second), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	bctx, bstop := context.WithCancel(context.Background())
	bdone := make(chan struct{})
	go func() {
		defer close(bdone)
		for bctx.Err() == nil {
			b.PollFetches(bctx)
		}
	}()
	defer func() { bstop(); <-bdone; b.Close() }()

	if err, ended := ev.wait(t, "jobs/0 revoked", errc, r39Revoked("jobs", 0)); ended {
		t.Fatalf("the run ended (%v) before jobs/0 was revoked", err)
	}
	close(revokedSeen)
	close(gate.open) // the revoked ownership's dead letter is refused now

	// The new ownership takes record 1 again; it succeeds.
	var runErr error
	ended := false
	select {
	case <-oneStored:
	case runErr = <-errc:
		ended = true
	case <-time.After(r39Watchdog):
		t.Fatal("hung: neither record 1 at the sink nor the run's end")
	}
	if !ended {
		drain()
		runErr = waitErr(t, "the drained run", errc)
	}
	t.Logf("run (%T): %v", runErr, runErr)
	var se *stage.SourceError
	if errors.As(runErr, &se) {
		t.Errorf("the run failed with %v: the refused dead letter was of a record whose partition had been revoked (the new ownership took the record again), yet it failed the whole run", se)
	}
	if mode == "decode" && runErr != nil {
		t.Errorf("run returned %v, want nil", runErr)
	}
	if mode == "ack" {
		var fe *sink.ForwardedError
		if !errors.As(runErr, &fe) {
			t.Errorf("run returned %v, want the sink's *sink.ForwardedError for the forwarded failure", runErr)
		}
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > 1 && !isClosed(oneStored) {
		t.Errorf("committed %d, past record 1, which was neither dead-lettered nor stored", got)
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
