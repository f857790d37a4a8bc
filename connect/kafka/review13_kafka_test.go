package kafka_test

// Review 13: adversarial tests written from the documentation alone (go doc
// of connect/kafka, the README's Kafka section, stage's Ack, AckSource,
// Until, KeyBy, Run and sink's First). Every verdict follows from the order
// of events (gates, channels, the broker's commit log); durations are hang
// watchdogs only. A scenario that could crash or hang runs in a child
// process (runcheck.InChildTest).

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// ---------------------------------------------------------------- helpers

// r13Events keeps a run's OnEvent calls, in order.
type r13Events struct {
	mu  sync.Mutex
	evs []kafka.Event
}

func (e *r13Events) on(ev kafka.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *r13Events) snapshot() []kafka.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.evs)
}

// committed lists the offsets of successful Committed events of topic/p.
func (e *r13Events) committed(topic string, p int32) []int64 {
	var out []int64
	for _, ev := range e.snapshot() {
		if ev.Kind == kafka.Committed && ev.Err == nil {
			if o, ok := ev.Offsets[topic][p]; ok {
				out = append(out, o)
			}
		}
	}
	return out
}

// index returns the position of the first event at or after from that
// matches, or -1.
func (e *r13Events) index(from int, match func(kafka.Event) bool) int {
	evs := e.snapshot()
	for i := from; i < len(evs); i++ {
		if match(evs[i]) {
			return i
		}
	}
	return -1
}

func r13Names(m map[string][]int32, topic string, p int32) bool {
	return slices.Contains(m[topic], p)
}

// r13Wait waits for cond, failing at once if the run returned meanwhile
// (errc is peeked, and the result put back). The deadline is a watchdog.
func r13Wait(t *testing.T, what string, errc chan error, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		select {
		case err := <-errc:
			errc <- err
			t.Fatalf("the run returned (%v) while waiting for %s", err, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("watchdog: gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func r13Go(f func() error) chan error {
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	return errc
}

// r13Collect runs one member of group over topic until every offset of
// want (partition -> end offset) below its end was delivered, then drains;
// it returns the offsets delivered per partition, in delivery order.
func r13Collect(t *testing.T, addrs []string, group, topic string, want map[int32]int64, from map[int32]int64, l *ledger, kopts ...kgo.Opt) map[int32][]int64 {
	t.Helper()
	var mu sync.Mutex
	got := map[int32][]int64{}
	seen := map[[2]int64]bool{}
	complete := func() bool {
		for p, end := range want {
			for o := max(from[p], 0); o < end; o++ {
				if !seen[[2]int64{int64(p), o}] {
					return false
				}
			}
		}
		return true
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(append(memberOpts(addrs, group, topic), kopts...), decodeInt, kafka.CommitInterval(10*time.Millisecond), l.option())
	errc := r13Go(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			mu.Lock()
			got[r.Partition] = append(got[r.Partition], r.Offset)
			seen[[2]int64{int64(r.Partition), r.Offset}] = true
			done := complete()
			mu.Unlock()
			if done {
				drain()
			}
			return nil
		})
	})
	if err := waitErr(t, "the collecting run", errc); err != nil {
		t.Fatalf("the collecting run returned %v", err)
	}
	return got
}

// ---------------------------------------------------------------- offsets over gaps

// Promise (Offsets): "The source commits, per partition, the lowest offset
// whose record is not settled yet (or one past the last record it took,
// when all are settled)". Attack: a read-committed member over a partition
// with transaction markers and an aborted transaction, i.e. offsets with no
// record. A watermark that assumed consecutive offsets would stick at a gap
// or pass the record held in flight. Then a second run must resume exactly
// after the committed offset.
func TestReview13TransactionGapsWatermark(t *testing.T) {
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)

	tx, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.TransactionalID("r13-tx"), kgo.DefaultProduceTopic("jobs"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	visible := map[int64]int{} // offset -> value, records of committed transactions
	ctx := context.Background()
	txn := func(commit bool, values ...int) {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var offs []int64
		for _, v := range values {
			res := tx.ProduceSync(ctx, &kgo.Record{Partition: 0, Key: []byte("k" + strconv.Itoa(v)), Value: []byte(strconv.Itoa(v))})
			r, err := res.First()
			if err != nil {
				t.Fatal(err)
			}
			offs = append(offs, r.Offset)
		}
		end := kgo.TryAbort
		if commit {
			end = kgo.TryCommit
		}
		if err := tx.EndTransaction(ctx, end); err != nil {
			t.Fatal(err)
		}
		if commit {
			for i, o := range offs {
				visible[o] = values[i]
			}
		}
	}
	txn(true, 0, 1, 2)
	txn(false, 100, 101)
	txn(true, 3, 4, 5)
	tx.Close()

	ends := r13Ends(t, addrs, "jobs", 1)
	end := ends[0]
	var offsets []int64
	for o := range visible {
		offsets = append(offsets, o)
	}
	slices.Sort(offsets)
	// The ledger's checker demands every offset below a commit be settled:
	// offsets without a visible record (markers, aborted) count as settled.
	for o := int64(0); o < end; o++ {
		if _, ok := visible[o]; !ok {
			l.settle("jobs", 0, o)
		}
	}
	held := offsets[4] // value 4: the second record of the last transaction
	last := offsets[len(offsets)-1]
	t.Logf("visible offsets %v, end offset %d, holding %d", offsets, end, held)

	ev := &r13Events{}
	isolation := kgo.FetchIsolationLevel(kgo.ReadCommitted())
	src := kafka.Source(append(memberOpts(addrs, "g", "jobs"), isolation), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.OnEvent(func(e kafka.Event) { l.onEvent(e); ev.on(e) }))
	release := make(chan struct{})
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var mu sync.Mutex
	var got []int64
	work := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == held {
			select {
			case <-release:
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
		return r, nil
	}, stage.Workers(4))
	errc := r13Go(func() error {
		return sink.ForEach(context.Background(), work, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			mu.Lock()
			got = append(got, r.Offset)
			mu.Unlock()
			return nil
		})
	})
	n := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	r13Wait(t, "every visible record but the held one at the sink", errc, func() bool { return n() == len(offsets)-1 })
	r13Wait(t, "a commit of the watermark at the held record", errc, func() bool {
		return slices.ContainsFunc(ev.committed("jobs", 0), func(o int64) bool { return o >= held })
	})
	if cs := ev.committed("jobs", 0); slices.Max(cs) != held {
		t.Errorf("while offset %d is in flight the source committed %v, want the watermark %d", held, cs, held)
	}
	drain()
	close(release)
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatalf("the run returned %v", err)
	}
	final := committedNow(t, addrs, "g", "jobs", 1)[0]
	if final != last+1 && final != end {
		t.Errorf("after every record settled the group committed %d, want one past the last record (%d) or the end offset (%d)", final, last+1, end)
	}
	l.verify(t)

	// A second run resumes after the committed offset: one new record, and
	// nothing before it again.
	produceTo(t, addrs, "jobs", 0, 6, 1)
	newEnd := r13Ends(t, addrs, "jobs", 1)[0]
	got2 := r13Collect(t, addrs, "g", "jobs", map[int32]int64{0: newEnd}, map[int32]int64{0: newEnd - 1}, l, isolation)
	if !slices.Equal(got2[0], []int64{newEnd - 1}) {
		t.Errorf("the second run got offsets %v, want only the new record %d", got2[0], newEnd-1)
	}
	l.verify(t)
}

// r13Ends lists the end offsets of topic's partitions.
func r13Ends(t *testing.T, addrs []string, topic string, partitions int32) map[int32]int64 {
	t.Helper()
	ends, err := kadm.NewClient(client(t, addrs)).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for p := range partitions {
		o, ok := ends.Lookup(topic, p)
		if !ok || o.Err != nil {
			t.Fatalf("no end offset for %s/%d: %v", topic, p, o.Err)
		}
		out[p] = o.Offset
	}
	return out
}

// ---------------------------------------------------------------- eager rebalance

// Promise (Rebalances): "When a partition is revoked, the source ... never
// commits for it again: acknowledgements of its records still in flight
// are ignored (the records may still finish; the new owner gets them again
// from the watermark)." Attack: with an eager balancer, a member that joins
// for another topic makes the group revoke every partition and hand the
// same partition back to the same member. The old copy of a record is
// still in flight when the new copy of it arrives; the old copy's
// acknowledgement (success, or a failure with Attempts(1) and no dead
// letter) must change nothing for the new assignment.
func TestReview13EagerReassignIgnoresStaleAck(t *testing.T) {
	for _, mode := range []string{"success", "failure"} {
		t.Run(mode, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) { r13EagerReassign(t, mode) })
		})
	}
}

func r13EagerReassign(t *testing.T, mode string) {
	const n = 6
	const hold = 2
	c, addrs := newCluster(t, 1, "jobs", "in")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	produceTo(t, addrs, "jobs", 0, 0, n)

	ev := &r13Events{}
	eager := kgo.Balancers(kgo.RangeBalancer())
	src := kafka.Source(append(memberOpts(addrs, "g", "jobs"), eager), decodeInt,
		kafka.CommitInterval(10*time.Millisecond), kafka.Attempts(1),
		kafka.OnEvent(func(e kafka.Event) { l.onEvent(e); ev.on(e) }))

	var mu sync.Mutex
	copies := map[int64]int{}
	var sinkSaw []string // "old2", "new5", ... in order
	oldIn, newIn, new5In := make(chan struct{}), make(chan struct{}), make(chan struct{})
	releaseOld, releaseNew, releaseNew5 := make(chan struct{}), make(chan struct{}), make(chan struct{})
	errStale := errors.New("the old copy failed")
	gate := func(ctx context.Context, in, release chan struct{}) error {
		close(in)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	work := func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		mu.Lock()
		copies[r.Offset]++
		k := copies[r.Offset]
		mu.Unlock()
		switch {
		case r.Offset == hold && k == 1:
			if err := gate(ctx, oldIn, releaseOld); err != nil {
				return r, err
			}
			if mode == "failure" {
				return r, errStale
			}
		case r.Offset == hold && k == 2:
			if err := gate(ctx, newIn, releaseNew); err != nil {
				return r, err
			}
		case r.Offset == n-1 && k == 2:
			if err := gate(ctx, new5In, releaseNew5); err != nil {
				return r, err
			}
		}
		return r, nil
	}
	opts := []stage.Option{stage.Workers(8)}
	if mode == "failure" {
		opts = append(opts, stage.OnError(stage.Forward))
	}
	ctx, abort := context.WithCancel(context.Background())
	defer abort()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	forwarded := 0
	errc := r13Go(func() error {
		return stage.Run(ctx, stage.Map(stage.Until(src, stop), work, opts...), func(_ context.Context, r kafka.Record[int], err error) error {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				forwarded++
				sinkSaw = append(sinkSaw, "error")
				return nil
			}
			l.settleRec(r)
			sinkSaw = append(sinkSaw, fmt.Sprintf("%d#%d", r.Offset, copies[r.Offset]))
			return nil
		})
	})
	saw := func(s string) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return slices.Contains(sinkSaw, s) }
	}
	closed := func(ch chan struct{}) func() bool {
		return func() bool {
			select {
			case <-ch:
				return true
			default:
				return false
			}
		}
	}
	r13Wait(t, "the old copy of the held record in flight", errc, closed(oldIn))
	for o := range int64(n) {
		if o != hold {
			r13Wait(t, fmt.Sprintf("record %d at the sink", o), errc, saw(fmt.Sprintf("%d#1", o)))
		}
	}
	r13Wait(t, "a commit of the watermark at the held record", errc, func() bool { return slices.Contains(ev.committed("jobs", 0), hold) })

	// A second member joins for another topic: an eager rebalance revokes
	// jobs/0 and gives it back to the first member.
	before := len(ev.snapshot())
	b, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("in"), eager,
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
	r13Wait(t, "jobs/0 revoked", errc, func() bool {
		return ev.index(before, func(e kafka.Event) bool { return e.Kind == kafka.Revoked && r13Names(e.Partitions, "jobs", 0) }) >= 0
	})
	rev := ev.index(before, func(e kafka.Event) bool { return e.Kind == kafka.Revoked && r13Names(e.Partitions, "jobs", 0) })
	r13Wait(t, "jobs/0 assigned again to the same member", errc, func() bool {
		return ev.index(rev, func(e kafka.Event) bool { return e.Kind == kafka.Assigned && r13Names(e.Partitions, "jobs", 0) }) >= 0
	})
	r13Wait(t, "the new copy of the held record in flight", errc, closed(newIn))
	r13Wait(t, "the new copy of the last record in flight", errc, closed(new5In))

	// The old copy settles now, while the new one is in flight.
	close(releaseOld)
	if mode == "success" {
		r13Wait(t, "the old copy at the sink", errc, saw(fmt.Sprintf("%d#2", hold))) // copies counts 2 by now
	} else {
		r13Wait(t, "the old copy's failure at the sink", errc, saw("error"))
	}
	// Once a later item reached the sink, the old copy's acknowledgement was
	// given (the sink's goroutine settles its items one after another).
	close(releaseNew5)
	r13Wait(t, "the new copy of the last record at the sink", errc, saw(fmt.Sprintf("%d#2", n-1)))

	if mode == "success" {
		// The new copy of the held record never finishes: abort. What is
		// committed for jobs/0, at any time, must not pass it.
		abort()
		err := waitErr(t, "the aborted run", errc)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the aborted run returned %v, want a cancellation", err)
		}
		if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got != hold {
			t.Errorf("after the abort the group's offset is %d, want %d: the new copy of record %d never finished, so the stale acknowledgement of the old copy was counted", got, hold, hold)
		}
		if cs := ev.committed("jobs", 0); slices.Max(cs) > hold {
			t.Errorf("the source committed jobs/0 at %v, past record %d whose new copy was in flight", cs, hold)
		}
		l.verify(t)
		return
	}
	// failure: the new copy succeeds; the run must go on and commit it.
	close(releaseNew)
	r13Wait(t, "the new copy of the held record at the sink", errc, saw(fmt.Sprintf("%d#2", hold)))
	r13Wait(t, "the commit of jobs/0 to its end", errc, func() bool { return slices.Contains(ev.committed("jobs", 0), n) })
	drain()
	err = waitErr(t, "the drained run", errc)
	var se *stage.SourceError
	if errors.As(err, &se) {
		t.Errorf("the run failed with %v: the old copy's failure, given after the partition was revoked, was counted against the new assignment", err)
	} else if err != nil {
		t.Errorf("the run returned %v, want nil (stage.Run collects the forwarded error itself)", err)
	}
	if forwarded != 1 {
		t.Errorf("the sink saw %d forwarded errors, want 1", forwarded)
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got != n {
		t.Errorf("the group's offset is %d, want %d", got, n)
	}
	l.verify(t)
}

// ---------------------------------------------------------------- OnEvent panic at the last commit

// Promise (OnEvent): "A panic in f fails the run with a *stage.SourceError
// wrapping a *stage.PanicError, and f is called no more in that run."
// Attack: the panic comes at the commit the source makes when the run stops
// (CommitInterval is an hour: it is the run's only commit), after the drain
// began; and, after sink.First, whose result "what happens in the run after
// the first item never changes".
func TestReview13OnEventPanicAtTheStopCommit(t *testing.T) {
	for _, mode := range []string{"drain", "first"} {
		t.Run(mode, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) { r13StopCommitPanic(t, mode) })
		})
	}
}

func r13StopCommitPanic(t *testing.T, mode string) {
	const n = 10
	_, addrs := newCluster(t, 1, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, n)
	var panicked atomic.Bool
	var after, commits atomic.Int32
	onEvent := func(e kafka.Event) {
		if panicked.Load() {
			after.Add(1)
		}
		if e.Kind == kafka.Committed {
			commits.Add(1)
			if panicked.CompareAndSwap(false, true) {
				panic("OnEvent exploded at the stop commit")
			}
		}
	}
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour), kafka.OnEvent(onEvent))
	var err error
	_, before := runcheck.Goroutines()
	runcheck.NoHang(t, mode, func() {
		switch mode {
		case "drain":
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			seen := 0
			err = sink.ForEach(context.Background(), stage.Until(src, stop), func(context.Context, kafka.Record[int]) error {
				if seen++; seen == n {
					drain()
				}
				return nil
			})
		case "first":
			var r kafka.Record[int]
			var ok bool
			r, ok, err = sink.First(context.Background(), src)
			if !ok || r.Offset != 0 {
				t.Errorf("First returned %+v, %v, want the record at offset 0", r, ok)
			}
		}
	})
	// No goroutine of the run may outlive the sink (the fake broker's
	// connection goroutines are not the run's).
	checkNoLeakSince(t, mode, before)
	t.Logf("%s: the run returned %v; %d commit events, %d calls after the panic", mode, err, commits.Load(), after.Load())
	if !panicked.Load() {
		t.Fatalf("%s: no Committed event at the end of the run: the stop commit was not reported", mode)
	}
	if a := after.Load(); a > 0 {
		t.Errorf("%s: OnEvent was called %d times after its panic", mode, a)
	}
	var se *stage.SourceError
	var pe *stage.PanicError
	switch mode {
	case "drain":
		if !errors.As(err, &se) || !errors.As(err, &pe) {
			t.Errorf("the drained run returned %v, want a *stage.SourceError wrapping the *stage.PanicError of OnEvent", err)
		}
	case "first":
		if err != nil {
			t.Errorf("First returned the error %v: its result, decided by the first item, changed after it (sink.First's doc)", err)
		}
	}
}

// ---------------------------------------------------------------- cancellation while a record waits to be retried

// Promises: a failed record "holds the watermark: it is tried again";
// "when the run stops" the source commits what is settled; "A partition
// newly assigned starts from its committed offset"; nothing skipped,
// redelivery only for what was not committed. Attack: the caller cancels
// the run (1) in the sink's callback for the forwarded failure of a record
// (so the record is waiting to be tried again) and (2) while its second try
// is in flight. The group's offset must be exactly the first record not
// settled, and a second run must deliver everything from there.
func TestReview13CancelWhileARecordAwaitsItsRetry(t *testing.T) {
	for _, when := range []string{"waiting", "retrying"} {
		t.Run(when, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) { r13CancelRetry(t, when) })
		})
	}
}

func r13CancelRetry(t *testing.T, when string) {
	const per = 20
	const bad = 3 // partition 0's record at offset 3 fails
	addrs, l := twoPartitions(t, 2*per)
	l.dumpOnFailure(t)
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(5), kafka.CommitInterval(10*time.Millisecond), l.option())
	ctx, abort := context.WithCancel(context.Background())
	defer abort()
	retrying := make(chan struct{})
	p1Moved := make(chan struct{}) // partition 1 had records settled
	var p1Settled int
	var attempts []int
	var mu sync.Mutex
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Partition == 0 && r.Offset == bad {
			mu.Lock()
			attempts = append(attempts, r.Attempts)
			mu.Unlock()
			if r.Attempts == 1 {
				// Let partition 1 move first, so that its watermark is
				// more than nothing when the run is cancelled.
				select {
				case <-p1Moved:
				case <-ctx.Done():
					return r, ctx.Err()
				}
				return r, errors.New("first try fails")
			}
			close(retrying)
			<-ctx.Done()
			return r, ctx.Err()
		}
		return r, nil
	}, stage.Workers(4), stage.KeyBy(kafka.ByKey[int]), stage.OnError(stage.Forward))
	errc := r13Go(func() error {
		return stage.Run(ctx, work, func(_ context.Context, r kafka.Record[int], err error) error {
			if err != nil {
				if when == "waiting" {
					abort()
				}
				return nil
			}
			l.settleRec(r)
			if r.Partition == 1 {
				if p1Settled++; p1Settled == 5 {
					close(p1Moved)
				}
			}
			return nil
		})
	})
	if when == "retrying" {
		select {
		case <-retrying:
		case err := <-errc:
			t.Fatalf("the run returned %v before the second try", err)
		case <-waitHung():
			t.Fatal("watchdog: no second try")
		}
		abort()
	}
	err := waitErr(t, "the aborted run", errc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("the aborted run returned %v, want a cancellation", err)
	}
	// Every acknowledgement was given before the sink returned; the stop
	// commit is the watermark: the first offset the ledger has not settled.
	l.mu.Lock()
	want := map[int32]int64{}
	for p := range int32(2) {
		o := int64(0)
		for l.settled[tpart{"jobs", p}][o] {
			o++
		}
		want[p] = o
	}
	l.mu.Unlock()
	got := committedNow(t, addrs, "g", "jobs", 2)
	t.Logf("%s: attempts of the failing record %v; committed %v; first unsettled %v", when, attempts, got, want)
	if got[0] > bad {
		t.Errorf("partition 0 committed at %d, past the failed record %d", got[0], bad)
	}
	for p := range int32(2) {
		w := want[p]
		if w == 0 {
			w = -1 // nothing settled: no commit
		}
		if got[p] != w && !(w == -1 && got[p] == 0) {
			t.Errorf("partition %d: the group's offset is %d, want the watermark %d (the first record not settled)", p, got[p], want[p])
		}
	}
	l.verify(t)

	// A second run resumes exactly at the committed offsets.
	from := map[int32]int64{0: max(got[0], 0), 1: max(got[1], 0)}
	got2 := r13Collect(t, addrs, "g", "jobs", map[int32]int64{0: per, 1: per}, from, l)
	for p := range int32(2) {
		if len(got2[p]) == 0 {
			if from[p] < per {
				t.Errorf("partition %d: the second run got nothing, want offsets from %d", p, from[p])
			}
			continue
		}
		if m := slices.Min(got2[p]); m != from[p] {
			t.Errorf("partition %d: the second run's lowest offset is %d, want the committed %d", p, m, from[p])
		}
	}
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}

// ---------------------------------------------------------------- decode panic, then resume

// Promise (Source): "a panic in decode fails the run with a
// *stage.SourceError wrapping a *stage.PanicError, and the record is not
// committed." Attack: decode panics at one record of partition 0 while the
// other partition goes on; then a second run (decode healthy) must start
// partition 0 at or before the record, and deliver everything not committed.
func TestReview13DecodePanicThenResume(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const per = 30
		const bad = 5
		addrs, l := twoPartitions(t, 2*per)
		l.dumpOnFailure(t)
		var armed atomic.Bool
		armed.Store(true)
		decode := func(r *kgo.Record) (int, error) {
			if r.Partition == 0 && r.Offset == bad && armed.Load() {
				panic("decode exploded")
			}
			return decodeInt(r)
		}
		src := kafka.Source(memberOpts(addrs, "g", "jobs"), decode, kafka.CommitInterval(5*time.Millisecond), l.option())
		err := waitErr(t, "the run", r13Go(func() error {
			return sink.ForEach(context.Background(), stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) { return r, nil }, stage.Workers(4)),
				func(_ context.Context, r kafka.Record[int]) error {
					if r.Partition == 0 && r.Offset >= bad {
						t.Errorf("the sink got partition 0's record %d, at or after the one decode panicked at", r.Offset)
					}
					l.settleRec(r)
					return nil
				})
		}))
		var se *stage.SourceError
		var pe *stage.PanicError
		if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "decode exploded" {
			t.Fatalf("the run returned %v, want a *stage.SourceError wrapping the *stage.PanicError", err)
		}
		armed.Store(false)
		got := committedNow(t, addrs, "g", "jobs", 2)
		t.Logf("committed after the panic: %v", got)
		if got[0] > bad {
			t.Errorf("partition 0 committed at %d, past the record %d decode panicked at", got[0], bad)
		}
		l.verify(t)
		from := map[int32]int64{0: max(got[0], 0), 1: max(got[1], 0)}
		got2 := r13Collect(t, addrs, "g", "jobs", map[int32]int64{0: per, 1: per}, from, l)
		for p := range int32(2) {
			if len(got2[p]) > 0 && slices.Min(got2[p]) != from[p] {
				t.Errorf("partition %d: the second run started at %d, want the committed %d", p, slices.Min(got2[p]), from[p])
			}
		}
		if !slices.Contains(got2[0], bad) {
			t.Errorf("the second run never delivered partition 0's record %d", bad)
		}
		checkCommitted(t, addrs, "g", "jobs")
		l.verify(t)
	})
}

// ---------------------------------------------------------------- dead letters over two topics

// Promises (DeadLetter, Offsets): a record that failed Attempts times goes
// to the dead-letter topic "with its key, value and headers and these
// headers added: sluice-reason, sluice-topic, sluice-partition,
// sluice-offset, sluice-attempts"; Record.Attempts is "1 on the first try;
// more when a failed record is tried again"; the source commits "per
// partition". Attack: a source over two topics; the poison record sits in
// the second topic's partition 1, with headers of its own and no key; a
// record of the first topic is held in flight meanwhile, and must not hold
// back the other topic's commits, nor be passed.
func TestReview13DeadLetterAcrossTopics(t *testing.T) {
	c, addrs := newCluster(t, 2, "jobs", "in", "dlq")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	produceTo(t, addrs, "jobs", 0, 0, 5)
	produceTo(t, addrs, "jobs", 1, 50, 2)
	produceTo(t, addrs, "in", 0, 100, 3)
	// The checker counts the poison settled once its dead letter is in a
	// produce request at the broker (lenient: before the broker confirmed).
	names := topicNames(c)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, r := range producedRecords(names, kreq.(*kmsg.ProduceRequest), "dlq") {
			if string(r.Value) == "666" {
				l.settle("in", 1, 2)
			}
		}
		return nil, nil, false
	})
	produceRecs(t, addrs,
		&kgo.Record{Topic: "in", Partition: 1, Key: []byte("a"), Value: []byte("200")},
		&kgo.Record{Topic: "in", Partition: 1, Key: []byte("b"), Value: []byte("201")},
		&kgo.Record{Topic: "in", Partition: 1, Value: []byte("666"), Headers: []kgo.RecordHeader{{Key: "h1", Value: []byte("v1")}, {Key: "h2", Value: nil}}},
		&kgo.Record{Topic: "in", Partition: 1, Key: []byte("c"), Value: []byte("202")},
	)
	const poisonOffset = 2
	ev := &r13Events{}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(addrs...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("jobs", "in"),
		kgo.SessionTimeout(memberSession), kgo.HeartbeatInterval(200 * time.Millisecond), kgo.FetchMaxWait(200 * time.Millisecond),
	}
	src := kafka.Source(kopts, decodeInt, kafka.Attempts(3), kafka.DeadLetter("dlq"), kafka.CommitInterval(10*time.Millisecond),
		kafka.OnEvent(func(e kafka.Event) { l.onEvent(e); ev.on(e) }))
	release := make(chan struct{})
	var mu sync.Mutex
	var poisonAttempts []int
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	work := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == 666 {
			mu.Lock()
			poisonAttempts = append(poisonAttempts, r.Attempts)
			mu.Unlock()
			return r, errors.New("poison")
		}
		if r.Topic == "jobs" && r.Offset == 1 {
			select {
			case <-release:
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
		return r, nil
	}, stage.Workers(8), stage.OnError(stage.Forward))
	errc := r13Go(func() error {
		return sink.ForEach(context.Background(), work, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			return nil
		})
	})
	// The poison's dead letter settles it: in/1 commits to its end (4)
	// while jobs/0's record 1 is still in flight.
	r13Wait(t, "in/1 committed to its end", errc, func() bool { return slices.Contains(ev.committed("in", 1), 4) })
	r13Wait(t, "in/0 committed to its end", errc, func() bool { return slices.Contains(ev.committed("in", 0), 3) })
	if cs := ev.committed("jobs", 0); len(cs) > 0 && slices.Max(cs) > 1 {
		t.Errorf("jobs/0 committed at %v while its record 1 was in flight", cs)
	}
	close(release)
	r13Wait(t, "jobs/0 committed to its end", errc, func() bool { return slices.Contains(ev.committed("jobs", 0), 5) })
	drain()
	err := waitErr(t, "the run", errc)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) {
		t.Errorf("the run returned %v, want the sink's *sink.ForwardedError for the poison's failures", err)
	}
	mu.Lock()
	if !slices.Equal(poisonAttempts, []int{1, 2, 3}) {
		t.Errorf("the poison record was tried with Attempts %v, want [1 2 3]", poisonAttempts)
	}
	mu.Unlock()
	l.verify(t)

	// The dead-letter topic: exactly one record, the poison's.
	cl := client(t, addrs, kgo.ConsumeTopics("dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var dead []*kgo.Record
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // watchdog
	defer cancel()
	for len(dead) < 1 && fctx.Err() == nil {
		cl.PollFetches(fctx).EachRecord(func(r *kgo.Record) { dead = append(dead, r) })
	}
	ends := r13Ends(t, addrs, "dlq", 2)
	if total := ends[0] + ends[1]; total != 1 {
		t.Errorf("the dead-letter topic holds %d records, want 1", total)
	}
	if len(dead) != 1 {
		t.Fatalf("read %d dead letters, want 1", len(dead))
	}
	d := dead[0]
	h := headerMap(d.Headers)
	t.Logf("dead letter: key %q value %q headers %v", d.Key, d.Value, h)
	if len(d.Key) != 0 || string(d.Value) != "666" {
		t.Errorf("dead letter key %q value %q, want no key and 666", d.Key, d.Value)
	}
	for k, v := range map[string]string{"h1": "v1", "h2": "", "sluice-topic": "in", "sluice-partition": "1", "sluice-offset": strconv.Itoa(poisonOffset), "sluice-attempts": "3"} {
		if got, ok := h[k]; !ok || got != v {
			t.Errorf("dead letter header %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	if h["sluice-reason"] == "" {
		t.Errorf("dead letter header sluice-reason is empty or missing")
	}
	checkCommitted(t, addrs, "g", "jobs")
	checkCommitted(t, addrs, "g", "in")
}

// ---------------------------------------------------------------- options

// Promise: "Options are checked when they are made: an invalid one panics
// there"; Source "panics if decode is nil or an option is the zero Option";
// Publish "panics if cl or record is nil"; the documented lower bounds are
// accepted.
func TestReview13OptionValidation(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		panics := func(what string, f func()) {
			t.Helper()
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", what)
				}
			}()
			f()
		}
		calm := func(what string, f func()) {
			t.Helper()
			defer func() {
				if v := recover(); v != nil {
					t.Errorf("%s panicked: %v", what, v)
				}
			}()
			f()
		}
		panics("MaxPending(0)", func() { kafka.MaxPending(0) })
		panics("MaxPending(-5)", func() { kafka.MaxPending(-5) })
		panics("Attempts(0)", func() { kafka.Attempts(0) })
		panics("Attempts(-1)", func() { kafka.Attempts(-1) })
		panics("CommitInterval(0)", func() { kafka.CommitInterval(0) })
		panics("CommitInterval(-1ns)", func() { kafka.CommitInterval(-1) })
		panics("DeadLetter(\"\")", func() { kafka.DeadLetter("") })
		panics("OnEvent(nil)", func() { kafka.OnEvent(nil) })
		panics("Source(nil decode)", func() { kafka.Source[int](nil, nil) })
		panics("Source(zero Option)", func() { kafka.Source(nil, decodeInt, kafka.MaxPending(1), kafka.Option{}) })
		panics("Publish(nil cl)", func() {
			_ = kafka.Publish(context.Background(), nil, stage.Indexed(1, func(int) int { return 0 }), func(int) (*kgo.Record, error) { return nil, nil }, nil)
		})
		cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		panics("Publish(nil record)", func() {
			_ = kafka.Publish[int](context.Background(), cl, stage.Indexed(1, func(int) int { return 0 }), nil, nil)
		})
		calm("the lower bounds", func() {
			kafka.Source(nil, decodeInt, kafka.MaxPending(1), kafka.Attempts(1), kafka.CommitInterval(1), kafka.DeadLetter("x"), kafka.OnEvent(func(kafka.Event) {}))
		})
	})
}

// ---------------------------------------------------------------- Publish

// Promise (Publish): "waiting for the broker to confirm the write before it
// takes the next item"; "a failed produce ... ends the run with a
// *stage.Error (Stage "foreach") wrapping it"; Published.Records counts
// "records the brokers confirmed". Attack: the sixth record is too large
// for the client: the five before it are written and counted, nothing after
// it is written, and the error wraps kerr.MessageTooLarge.
func TestReview13PublishStopsAtAFailedProduce(t *testing.T) {
	_, addrs := newCluster(t, 1, "out")
	cl := client(t, addrs, kgo.ProducerBatchMaxBytes(1<<16))
	var counts kafka.Published
	var made atomic.Int32
	items := stage.Indexed(20, func(i int) int { return i })
	err := waitErr(t, "Publish", r13Go(func() error {
		return kafka.Publish(context.Background(), cl, items, func(i int) (*kgo.Record, error) {
			made.Add(1)
			v := []byte(strconv.Itoa(i))
			if i == 5 {
				v = make([]byte, 1<<17)
			}
			return &kgo.Record{Topic: "out", Key: []byte("k"), Value: v}, nil
		}, &counts)
	}))
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "foreach" || !errors.Is(err, kerr.MessageTooLarge) {
		t.Errorf("Publish returned %v, want a *stage.Error (Stage foreach) wrapping kerr.MessageTooLarge", err)
	} else if se.Input != 5 {
		t.Errorf("the error's Input is %v, want item 5", se.Input)
	}
	if c := counts.Records.Load(); c != 5 {
		t.Errorf("Published.Records = %d, want 5", c)
	}
	if e := r13Ends(t, addrs, "out", 1)[0]; e != 5 {
		t.Errorf("the topic holds %d records, want the 5 before the failed one", e)
	}
	t.Logf("the record function was called %d times", made.Load())
}

// ---------------------------------------------------------------- ByKey with retries

// Promises (Ordering): with stage.KeyBy(kafka.ByKey[T]), "records of one
// key (within a partition) one at a time, in offset order; different keys
// in parallel"; "A record tried again after a failure comes back after the
// records taken meanwhile, so it is the one exception to the order".
// Attack: a record of key k1 fails twice and succeeds at its third try; no
// two records of one key may ever be in the stage's function at once (the
// retry included), every other record of every key is taken in offset
// order, and everything is committed.
func TestReview13ByKeyRetryStaysOneAtATime(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const n = 60
		const bad = 4 // key k1 (4 % 3)
		c, addrs := newCluster(t, 1, "jobs")
		l := newLedger()
		l.watch(c)
		l.dumpOnFailure(t)
		recs := make([]*kgo.Record, n)
		for i := range n {
			recs[i] = &kgo.Record{Topic: "jobs", Partition: 0, Key: []byte(fmt.Sprintf("k%d", i%3)), Value: []byte(strconv.Itoa(i))}
		}
		produceRecs(t, addrs, recs...)
		src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(3), kafka.CommitInterval(10*time.Millisecond), l.option())
		var mu sync.Mutex
		inFlight := map[string]int{}
		order := map[string][]int64{}
		var tries []int
		overlap := ""
		stop, drain := context.WithCancel(context.Background())
		defer drain()
		work := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
			k := string(r.Key)
			mu.Lock()
			if inFlight[k]++; inFlight[k] > 1 && overlap == "" {
				overlap = fmt.Sprintf("record %d (try %d) of key %s started while another of its key was running", r.Offset, r.Attempts, k)
			}
			order[k] = append(order[k], r.Offset)
			if r.Offset == bad {
				tries = append(tries, r.Attempts)
			}
			mu.Unlock()
			runtime.Gosched() // widen the window for an overlap
			defer func() { mu.Lock(); inFlight[k]--; mu.Unlock() }()
			if r.Offset == bad && r.Attempts < 3 {
				return r, errors.New("not yet")
			}
			return r, nil
		}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]), stage.Buffer(64), stage.OnError(stage.Forward))
		wantForwarded(t, settleUntil(t, l, work, n, drain), 2)
		mu.Lock()
		defer mu.Unlock()
		if overlap != "" {
			t.Error(overlap)
		}
		if !slices.Equal(tries, []int{1, 2, 3}) {
			t.Errorf("the failing record was tried with Attempts %v, want [1 2 3]", tries)
		}
		for k, offs := range order {
			var firsts []int64
			seen := map[int64]bool{}
			for _, o := range offs {
				if !seen[o] {
					seen[o] = true
					firsts = append(firsts, o)
				}
			}
			if !slices.IsSorted(firsts) {
				t.Errorf("key %s: records taken in the order %v (first tries), want offset order", k, firsts)
			}
		}
		checkCommitted(t, addrs, "g", "jobs")
		l.verify(t)
	})
}
