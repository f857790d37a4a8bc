package kafka_test

// Review 4: adversarial tests written from the documentation alone, on two
// promises: dead letters the broker does not confirm (doc.go "A dead letter
// is written with a synchronous produce ...", DeadLetter's doc), and
// Publish's behaviour when its ctx is cancelled with an idempotent client
// (Publish's doc). Durations appear only as hang watchdogs, or (marked
// "one-sided") as a window in which a correct library can never fail the
// test: something must NOT happen before the test itself releases the
// broker.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// ---------------------------------------------------------------- helpers

// r4Refusal answers every produce request to topic with the error code
// given, until stop is called. refused is closed at the first refusal.
type r4Refusal struct {
	refused  chan struct{}
	once     sync.Once
	stopped  atomic.Bool
	refusals atomic.Int32
}

func (r *r4Refusal) stop() { r.stopped.Store(true) }

func r4RefuseProduce(c *kfake.Cluster, topic string, code int16) *r4Refusal {
	r := &r4Refusal{refused: make(chan struct{})}
	names := topicNames(c)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		hit := false
		for _, tt := range req.Topics {
			if names.of(tt.Topic, tt.TopicID) == topic {
				hit = true
			}
		}
		if !hit || r.stopped.Load() {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, tt := range req.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic, rt.TopicID = tt.Topic, tt.TopicID
			for _, p := range tt.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = code
				rp.BaseOffset = -1
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		r.refusals.Add(1)
		r.once.Do(func() { close(r.refused) })
		return resp, nil, true
	})
	return r
}

// r4HoldKey holds every request of key at the broker until release; held
// is closed when the first is held.
func r4HoldKey(c *kfake.Cluster, key kmsg.Key) *r2Gate {
	g := &r2Gate{held: make(chan struct{}), released: make(chan struct{})}
	c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		g.heldOnce.Do(func() { close(g.held) })
		c.SleepControl(func() { <-g.released })
		return nil, nil, false
	})
	return g
}

// r4ReadTopic returns every record of topic (all partitions), reading up
// to the end offsets as they are now. Its clients are closed on return.
func r4ReadTopic(t *testing.T, addrs []string, topic string) []*kgo.Record {
	t.Helper()
	acl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer acl.Close()
	ends, err := kadm.NewClient(acl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(e kadm.ListedOffset) { total += e.Offset })
	if total == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []*kgo.Record
	waitFor(t, fmt.Sprintf("the %d records of %s", total, topic), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
		return int64(len(got)) >= total
	})
	return got
}

// r4Await waits for a run's result; if it has not come after watchdog
// (a hang watchdog only), it reports what and calls unblock (which
// releases the broker), then waits again. returned is false in that case.
func r4Await(t *testing.T, what string, errc <-chan error, watchdog time.Duration, unblock func()) (err error, returned bool) {
	t.Helper()
	select {
	case err = <-errc:
		return err, true
	case <-time.After(watchdog):
		t.Errorf("%s did not return within %v (a hang watchdog); releasing the broker", what, watchdog)
		unblock()
		return waitErr(t, what+" after the broker was released", errc), false
	}
}

// r4NotBefore is one-sided: it fails the test if errc delivers within the
// window (something that must not happen before the test releases the
// broker). It returns the result if it came.
func r4NotBefore(t *testing.T, what string, errc <-chan error, window time.Duration) (err error, came bool) {
	t.Helper()
	select {
	case err = <-errc:
		t.Errorf("%s returned (%v) while the broker still held the request", what, err)
		return err, true
	case <-time.After(window):
		return nil, false
	}
}

func r4IntValues(t *testing.T, recs []*kgo.Record) []int {
	t.Helper()
	var out []int
	for _, r := range recs {
		v, err := strconv.Atoi(string(r.Value))
		if err != nil {
			t.Fatalf("record %q on the topic", r.Value)
		}
		out = append(out, v)
	}
	return out
}

// How the record x comes to be dead-lettered.
const (
	r4Attempts    = "attempts"    // it fails Attempts(1) times (a forwarded error, settled at the sink)
	r4Undecodable = "undecodable" // decode rejects it (settled in the source's own goroutine)
)

// r4Produce writes records 0..n-1 to jobs/0 (value = offset); with
// r4Undecodable, offset x is a value decode rejects.
func r4Produce(t *testing.T, addrs []string, trigger string, n, x int) {
	t.Helper()
	if trigger == r4Attempts {
		produceTo(t, addrs, "jobs", 0, 0, n)
		return
	}
	produceTo(t, addrs, "jobs", 0, 0, x)
	produceRecs(t, addrs, &kgo.Record{Topic: "jobs", Partition: 0, Key: []byte("bad-key"), Value: []byte("not an int")})
	produceTo(t, addrs, "jobs", 0, x+1, n-x-1)
}

// r4Run starts one member of group g over jobs: records whose value is x
// fail (trigger r4Attempts), x's dead letter goes to dlq; sawX is set when
// x reaches the pipeline (decode or the stage); each record the sink gets
// is passed to put (which may return stage.ErrStop).
func r4Run(ctx, stop context.Context, addrs []string, l *ledger, trigger string, x int, sawX *atomic.Int32, put func(context.Context, kafka.Record[int]) error) <-chan error {
	decode := func(r *kgo.Record) (int, error) {
		v, err := decodeInt(r)
		if err != nil && r.Offset == int64(x) {
			sawX.Add(1)
		}
		return v, err
	}
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decode, kafka.Attempts(1), kafka.DeadLetter("dlq"), kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if trigger == r4Attempts && r.Value == x {
			sawX.Add(1)
			return r, errors.New("poison")
		}
		return r, nil
		// Buffer: some tests' put waits, at the record before x, for x's dead
		// letter, which a worker sends only once it pulls x. The tokens of
		// the sink's batch come back when the batch is done, so without a
		// buffer a batch that took every token would leave no worker free
		// to pull x, and put would wait for ever (seen about 1 run in 10).
	}, stage.Workers(4), stage.Buffer(16), stage.OnError(stage.Forward))
	return goRun(func() error {
		return sink.ForEach(ctx, rows, func(ctx context.Context, r kafka.Record[int]) error {
			return put(ctx, r)
		})
	})
}

// ---------------------------------------------------------------- dead letters

// "One that gives up (the 30 s passed, or the broker refused it) fails the
// run ... and its record is not committed: the next owner of its partition
// gets it again (and the dead letter may still be written later: a
// duplicate, as at-least-once allows)"; DeadLetter: "if that fails, the run
// fails and the record is not committed"; "a run ends only once its dead
// letters in flight were confirmed or gave up".
//
// The run is not cut short: nothing cancels it, nothing drains it. The
// broker does not confirm x's dead letter, in three ways:
//   - refused: it answers with TOPIC_AUTHORIZATION_FAILED (the bound is
//     left at 30 s: the run must fail for the refusal, not the bound);
//   - held: it never answers (the bound is set to 2 s for the test); it is
//     released after the run ended, so the dead letter is written late;
//   - retriable: it answers NOT_ENOUGH_REPLICAS forever (bound 2 s).
//
// Each way, and for a record that failed Attempts times as for one decode
// rejects: the run fails with a *stage.SourceError, returns (the watchdog
// is 30 times the bound), leaves no goroutine, and x is not committed (no
// commit ever passes it at the broker). Then the broker behaves, and a
// second run of the group gets x again, dead-letters it, and commits the
// whole partition. The dead-letter topic then holds x's dead letter once or
// twice (the late write: a duplicate), every copy the same, and nothing
// else.
func TestReview4DeadLetterNotConfirmed(t *testing.T) {
	for _, mode := range []string{"refused", "held", "retriable"} {
		for _, trigger := range []string{r4Attempts, r4Undecodable} {
			t.Run(mode+"/"+trigger, func(t *testing.T) {
				r4DeadLetterNotConfirmed(t, mode, trigger)
			})
		}
	}
}

func r4DeadLetterNotConfirmed(t *testing.T, mode, trigger string) {
	const n, x = 20, 5
	bound := 30 * time.Second
	if mode != "refused" {
		bound = r2DeadLetterWait
		defer kafka.SetDeadLetterWait(bound)()
	}
	stalls := runcheck.WatchStalls(t)
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	r4Produce(t, addrs, trigger, n, x)

	var reached <-chan struct{} // closed once the broker got x's dead letter
	var unblock func()          // makes the broker behave
	switch mode {
	case "held":
		g := r2GateProduce(c, "dlq", true) // only the first: run 1's dead letter
		defer g.release()
		reached, unblock = g.held, g.release
	case "refused":
		r := r4RefuseProduce(c, "dlq", kerr.TopicAuthorizationFailed.Code)
		defer r.stop()
		reached, unblock = r.refused, r.stop
	case "retriable":
		r := r4RefuseProduce(c, "dlq", kerr.NotEnoughReplicas.Code)
		defer r.stop()
		reached, unblock = r.refused, r.stop
	}

	// Run 1: never cut short.
	var sawX1 atomic.Int32
	st1 := newStore()
	errc := r4Run(context.Background(), context.Background(), addrs, l, trigger, x, &sawX1, func(_ context.Context, r kafka.Record[int]) error {
		l.settleRec(r)
		st1.put(r)
		return nil
	})
	if err, ended := r2WaitOrEnd(t, "x's dead letter at the broker", reached, errc); ended {
		if stalls.Excuse(bound) {
			t.Skipf("run 1 ended (%v) before x's dead letter reached the broker, but the process stalled for %v (bound %v): not checked", err, stalls.Longest(), bound)
		}
		t.Fatalf("run 1 ended (%v) before x's dead letter reached the broker", err)
	}
	err, returned := r4Await(t, "the run whose dead letter was not confirmed", errc, 30*bound, func() {
		l.settle("jobs", 0, x) // released: its dead letter may now be confirmed
		unblock()
	})
	t.Logf("run 1 (%s, %s) returned: %v", mode, trigger, err)
	var se *stage.SourceError
	if !errors.As(err, &se) {
		t.Errorf("run 1: %v; want a failure with a *stage.SourceError: x's dead letter was not confirmed", err)
	}
	if mode == "refused" && returned && errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("run 1: %v; the broker refused the dead letter, yet the run failed for the bound", err)
	}
	checkNoLeak(t, "run 1, "+mode+" dead letter")
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
		t.Errorf("after run 1, committed %d, past the record %d whose dead letter was not confirmed", got, x)
	}
	if sawX1.Load() == 0 {
		t.Errorf("run 1 never saw x")
	}
	l.verify(t)
	if t.Failed() {
		return
	}

	// The broker behaves again; whatever it held is now written.
	unblock()
	settleOnDeadLetter(c, l, "dlq", "jobs", 0, x) // lenient: any dead letter at the broker settles x
	var sawX2 atomic.Int32
	st2 := newStore()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	errc = r4Run(context.Background(), stop, addrs, l, trigger, x, &sawX2, func(_ context.Context, r kafka.Record[int]) error {
		l.settleRec(r)
		st2.put(r)
		return nil
	})
	checkCommitted(t, addrs, "g", "jobs")
	drain()
	if err := waitErr(t, "run 2", errc); err != nil && !isForwarded(err) {
		t.Errorf("run 2: %v", err)
	}
	if sawX2.Load() == 0 {
		t.Errorf("run 2 (the next owner) never got x again, yet the group committed past it")
	}
	dead := r4ReadTopic(t, addrs, "dlq")
	t.Logf("%d dead letter(s) of x on the dead-letter topic", len(dead))
	if len(dead) < 1 || len(dead) > 2 {
		t.Errorf("%d dead letters, want x's once, or twice (a duplicate of the late write)", len(dead))
	}
	for i, d := range dead {
		h := headerMap(d.Headers)
		if h["sluice-offset"] != strconv.Itoa(x) || h["sluice-topic"] != "jobs" || h["sluice-partition"] != "0" || h["sluice-attempts"] != "1" {
			t.Errorf("dead letter %d is not x's: headers %v", i, h)
		}
		if h["sluice-reason"] == "" {
			t.Errorf("dead letter %d says no reason: headers %v", i, h)
		}
		if i > 0 {
			// The same record, key, value and headers; the reason is each
			// run's own error (it names the run's item index), so it may differ.
			h0 := headerMap(dead[0].Headers)
			delete(h0, "sluice-reason")
			delete(h, "sluice-reason")
			if string(d.Value) != string(dead[0].Value) || string(d.Key) != string(dead[0].Key) || fmt.Sprint(h) != fmt.Sprint(h0) {
				t.Errorf("the second dead letter of x is no duplicate of the first:\n%q %q %v\n%q %q %v", dead[0].Key, dead[0].Value, h0, d.Key, d.Value, h)
			}
		}
	}
	l.verify(t)
}

// "(unless the run was cut short first: a cancellation, an early stop)":
// the record before the undecodable one is delivered, and the sink stops
// the run early (stage.ErrStop) while the broker holds the dead letter the
// source is waiting for. The dead letter gives up (bound 2 s for the
// test, r2DeadLetterWait); the run was cut short first, so it returns what
// an early stop returns: nil. The undecodable record is not committed;
// everything before it was committed by the sink, and the run commits when
// it stops.
func TestReview4DeadLetterGivenUpAfterEarlyStop(t *testing.T) {
	defer kafka.SetDeadLetterWait(r2DeadLetterWait)()
	stalls := runcheck.WatchStalls(t)
	const n, x = 10, 5
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	g := r2GateProduce(c, "dlq", false)
	defer g.release()
	r4Produce(t, addrs, r4Undecodable, n, x)
	var sawX atomic.Int32
	var putMu sync.Mutex
	put := map[int64]bool{} // the offsets the sink committed
	errc := r4Run(context.Background(), context.Background(), addrs, l, r4Undecodable, x, &sawX, func(ctx context.Context, r kafka.Record[int]) error {
		putMu.Lock()
		put[r.Offset] = true
		putMu.Unlock()
		if r.Offset == x-1 {
			select {
			case <-g.held:
			case <-ctx.Done(): // the run failed: x's dead letter gave up before it reached the broker
				return ctx.Err()
			case <-waitHung():
				return errors.New("hung waiting for x's dead letter at the broker")
			}
			l.settleRec(r)
			return stage.ErrStop
		}
		l.settleRec(r)
		return nil
	})
	err, _ := r4Await(t, "the run stopped early", errc, time.Minute, func() {
		l.settle("jobs", 0, x)
		g.release()
	})
	if err != nil {
		var se *stage.SourceError
		if errors.As(err, &se) && stalls.Excuse(r2DeadLetterWait) {
			// The bound may have passed before the early stop: then the run
			// was not cut short first.
			t.Skipf("run stopped early: %v, but the process stalled for %v (bound %v) before the stop: not checked", err, stalls.Longest(), r2DeadLetterWait)
		}
		t.Errorf("run stopped early (ErrStop) before its dead letter gave up: %v; want nil", err)
	}
	checkNoLeak(t, "an early stop with a dead letter held")
	got := committedNow(t, addrs, "g", "jobs", 1)[0]
	if got > x {
		t.Errorf("committed %d, past the undecodable record %d whose dead letter was never confirmed", got, x)
	}
	// The Map's workers run unordered: the sink may get x-1, and stop,
	// before an earlier record reached it; that one was cut short, not
	// committed. So the run must commit up to the first record the sink
	// did not get (seen under load: 1 run in 25).
	putMu.Lock()
	prefix := int64(0)
	for prefix < x && put[prefix] {
		prefix++
	}
	putMu.Unlock()
	if got < prefix {
		t.Errorf("committed %d; the sink committed every record before %d and the run commits when it stops", got, prefix)
	}
	l.verify(t)
}

// "waiting up to 30 s for the broker, even when the run is aborted
// meanwhile: a run ends only once its dead letters in flight were
// confirmed or gave up"; "The record is settled once the broker confirmed
// the dead letter". The first record (x = 0) is dead-lettered; the broker
// holds its dead letter; the run is aborted (its ctx cancelled). With the
// default 30 s bound, the run must not return while the broker holds the
// dead letter (one-sided: 1 s); released, the dead letter is confirmed, the
// run returns the cancellation, x is settled and so committed when the run
// stops, its dead letter is on the topic once, and nothing is left running.
func TestReview4DeadLetterConfirmedAfterAbort(t *testing.T) {
	for _, trigger := range []string{r4Attempts, r4Undecodable} {
		t.Run(trigger, func(t *testing.T) {
			const n, x = 10, 0
			c, addrs := newCluster(t, 1, "jobs", "dlq")
			l := newLedger()
			l.watch(c)
			l.dumpOnFailure(t)
			settleOnDeadLetter(c, l, "dlq", "jobs", 0, x)
			g := r2GateProduce(c, "dlq", false)
			defer g.release()
			r4Produce(t, addrs, trigger, n, x)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var sawX atomic.Int32
			errc := r4Run(ctx, context.Background(), addrs, l, trigger, x, &sawX, func(_ context.Context, r kafka.Record[int]) error {
				l.settleRec(r)
				return nil
			})
			r2Wait(t, "x's dead letter at the broker", g.held)
			cancel()
			err, came := r4NotBefore(t, "the aborted run", errc, time.Second)
			g.release()
			if !came {
				err = waitErr(t, "the aborted run after the broker was released", errc)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("aborted run: %v, want context.Canceled", err)
			}
			checkNoLeak(t, "abort with a dead letter in flight")
			if got := committedNow(t, addrs, "g", "jobs", 1)[0]; !came && got <= x {
				t.Errorf("committed %d after the run; x = %d was settled by its confirmed dead letter before the run ended", got, x)
			}
			dead := r4ReadTopic(t, addrs, "dlq")
			if len(dead) != 1 || headerMap(dead[0].Headers)["sluice-offset"] != strconv.Itoa(x) {
				t.Errorf("%d dead letters, want x's once", len(dead))
			}
			l.verify(t)
		})
	}
}

// ---------------------------------------------------------------- Publish

func r4Record(v int) (*kgo.Record, error) {
	return &kgo.Record{Topic: "out", Value: []byte(strconv.Itoa(v))}, nil
}

func r4Items(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// r4CheckPublished: the records Publish counted are on the topic, in order
// (items 0..k-1), and nothing Publish did not count is there but, at most,
// the one record in flight when the run ended.
func r4CheckPublished(t *testing.T, addrs []string, counted int64) {
	t.Helper()
	vals := r4IntValues(t, r4ReadTopic(t, addrs, "out"))
	t.Logf("Published.Records %d; on the topic: %v", counted, vals)
	if int64(len(vals)) < counted {
		t.Errorf("Published.Records %d, but only %d records on the topic: %v", counted, len(vals), vals)
	}
	for i, v := range vals {
		if v != i {
			t.Errorf("the topic holds %v, want items 0, 1, ... in order", vals)
			break
		}
	}
	if int64(len(vals)) > counted+1 {
		t.Errorf("the topic holds %d records, Publish counted %d: more than one record it did not count", len(vals), counted)
	}
}

// "A client that produces idempotently (franz-go's default) waits for the
// broker's answer, and Publish with it":
// default client options; the broker holds the first produce; ctx is
// cancelled. Publish must not return while the broker holds the record
// (one-sided: 1 s; no delivery timeout by default). Released, the broker
// confirms the record: Publish returns an error for which
// errors.Is(err, context.Canceled) holds (the run was cancelled), counts the
// confirmed record (Published.Records: "records the brokers confirmed"),
// takes no item after it, and leaves no goroutine of the call.
func TestReview4PublishCancelIdempotentWaitsForTheAnswer(t *testing.T) {
	c, addrs := newCluster(t, 1, "out")
	g := r2GateProduce(c, "out", false)
	defer g.release()
	cl := client(t, addrs) // franz-go's defaults: idempotent
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var counts kafka.Published
	errc := goRun(func() error {
		return kafka.Publish(ctx, cl, source.Slice(r4Items(10)), r4Record, &counts)
	})
	r2Wait(t, "the first produce held at the broker", g.held)
	cancel()
	err, came := r4NotBefore(t, "Publish with an idempotent client", errc, time.Second)
	g.release()
	if !came {
		err = waitErr(t, "Publish after the broker answered", errc)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Publish: %v, want context.Canceled", err)
	}
	r2NoSluiceLeak(t, "cancelled Publish") // the test's client is still open
	if !came && counts.Records.Load() != 1 {
		t.Errorf("Published.Records %d; the broker confirmed the one record in flight", counts.Records.Load())
	}
	r4CheckPublished(t, addrs, counts.Records.Load())
}

// The same, but the broker answers every produce with NOT_ENOUGH_REPLICAS
// (retriable: the idempotent client would try for ever): once the broker
// has answered, the record is no longer in flight, so the cancellation
// fails it, and Publish returns context.Canceled with nothing counted and
// nothing on the topic (the broker never wrote it).
func TestReview4PublishCancelIdempotentBrokerRefusing(t *testing.T) {
	c, addrs := newCluster(t, 1, "out")
	r := r4RefuseProduce(c, "out", kerr.NotEnoughReplicas.Code)
	defer r.stop()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r4CancelledPublishWritesNothing(t, cl, "the broker's first refusal", r.refused, r.stop)
	cl.Close() // nothing of the client can write after this
	r.stop()
	if vals := r4IntValues(t, r4ReadTopic(t, addrs, "out")); len(vals) != 0 {
		t.Errorf("the topic holds %v; the broker refused every write", vals)
	}
}

// "Cancelling ctx fails a record cl has not sent yet": the broker holds the
// idempotent client's InitProducerID, so the first record cannot be sent.
// ctx is cancelled: Publish returns context.Canceled while the broker still
// holds the request (watchdog only), counts nothing, leaves no goroutine,
// and the record is never written (the client is closed before the
// broker is released... and after: nothing on the topic).
func TestReview4PublishCancelBeforeSent(t *testing.T) {
	c, addrs := newCluster(t, 1, "out")
	g := r4HoldKey(c, kmsg.InitProducerID)
	defer g.release()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	r4CancelledPublishWritesNothing(t, cl, "the producer id request held at the broker", g.held, g.release)
	g.release()
	cl.Close()
	if vals := r4IntValues(t, r4ReadTopic(t, addrs, "out")); len(vals) != 0 {
		t.Errorf("the topic holds %v; the only record sent was cancelled before it was sent", vals)
	}
}

// r4CancelledPublishWritesNothing runs Publish of 10 items with cl, waits
// until blocked is closed (the broker stands in its way), cancels it, and
// checks what a cancelled Publish whose records the broker never confirmed
// owes: an error for which errors.Is(err, context.Canceled) holds (unblock
// releases the broker if it has not returned by a hang watchdog), nothing
// counted, and no goroutine of the call left.
func r4CancelledPublishWritesNothing(t *testing.T, cl *kgo.Client, blockedBy string, blocked <-chan struct{}, unblock func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var counts kafka.Published
	errc := goRun(func() error {
		return kafka.Publish(ctx, cl, source.Slice(r4Items(10)), r4Record, &counts)
	})
	r2Wait(t, blockedBy, blocked)
	cancel()
	err, _ := r4Await(t, "Publish cancelled at "+blockedBy, errc, time.Minute, unblock)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Publish: %v, want context.Canceled", err)
	}
	r2NoSluiceLeak(t, "Publish cancelled at "+blockedBy)
	if counts.Records.Load() != 0 {
		t.Errorf("Published.Records %d; the broker never confirmed a record", counts.Records.Load())
	}
}
