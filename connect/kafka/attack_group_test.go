package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// firstEvent returns the first event matching ok, and whether there is one.
func (l *ledger) firstEvent(ok func(eventSeen) bool) (eventSeen, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if ok(e) {
			return e, true
		}
	}
	return eventSeen{}, false
}

// "When a partition is revoked, the source takes no more of its records,
// commits its watermark, and never commits for it again: acknowledgements
// of its records still in flight are ignored ... the new owner gets them
// again from the watermark."
//
// Member A holds record 10 of both partitions in flight (watermark 10).
// Member B joins and takes one partition, R. B must start R at 10. A's
// held records are then released and acknowledged; A must never commit R
// after its Revoked event.
func TestAttackRevokedAcksChangeNothing(t *testing.T) {
	const n, x = 20, 10
	c, addrs := newCluster(t, 2, "jobs")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	produceTo(t, addrs, "jobs", 0, 0, n)
	produceTo(t, addrs, "jobs", 1, 100, n)

	release := make(chan struct{})
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	recsA := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), l.option())
	rowsA := stage.Map(stage.Until(recsA, stopA), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == x {
			<-release
		}
		return r, nil
	}, stage.Workers(8))
	stA := newStore()
	errA := goRun(func() error {
		return sink.ForEach(context.Background(), rowsA, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			stA.put(r)
			return nil
		})
	})
	waitFor(t, "A stored everything but the held records", func() bool { return stA.len() == 2*n-2 })
	waitFor(t, "A committed its watermark on both partitions", func() bool {
		return slices.Contains(l.committedEvents("jobs", 0), x) && slices.Contains(l.committedEvents("jobs", 1), x)
	})
	aAssigned, _ := l.firstEvent(func(e eventSeen) bool { return e.ev.Kind == kafka.Assigned })
	memberA := aAssigned.ev.Member
	if memberA == "" {
		t.Fatal("Assigned event without a member id")
	}

	var mu sync.Mutex
	firstB := map[int32]int64{}
	stopB, drainB := context.WithCancel(context.Background())
	defer drainB()
	stB := newStore()
	errB := goRun(func() error {
		return member(context.Background(), stopB, addrs, "g", "jobs", func(r kafka.Record[int]) {
			mu.Lock()
			// The lowest offset B processed: its workers finish records of
			// different keys in any order, so the first to finish says
			// nothing about where B started.
			if first, ok := firstB[r.Partition]; !ok || r.Offset < first {
				firstB[r.Partition] = r.Offset
			}
			mu.Unlock()
			l.settleRec(r)
			stB.put(r)
		}, nil, kafka.CommitInterval(5*time.Millisecond), l.option())
	})
	var revoked eventSeen
	waitFor(t, "A's Revoked event", func() bool {
		var ok bool
		revoked, ok = l.firstEvent(func(e eventSeen) bool {
			return e.ev.Kind == kafka.Revoked && e.ev.Member == memberA && len(e.ev.Partitions["jobs"]) > 0
		})
		return ok
	})
	if len(revoked.ev.Partitions["jobs"]) != 1 {
		t.Logf("A gave up %v", revoked.ev.Partitions)
	}
	r := revoked.ev.Partitions["jobs"][0]
	waitFor(t, "B stored R from its watermark to the end", func() bool { return hasRange(stB, r, x, n) })
	mu.Lock()
	if firstB[r] != x {
		t.Errorf("the new owner's lowest offset of partition %d is %d; want the watermark %d", r, firstB[r], x)
	}
	mu.Unlock()

	close(release) // A's held records finish and are acknowledged
	waitFor(t, "A stored its held records", func() bool { return stA.len() == 2*n })
	// A commits the partition it kept to the end: a commit after the acks.
	waitFor(t, "A's commit of the partition it kept, to the end", func() bool { return slices.Contains(l.committedEvents("jobs", 1-r), n) })
	drainA()
	if err := waitErr(t, "member A", errA); err != nil {
		t.Fatal(err)
	}
	drainB()
	if err := waitErr(t, "member B", errB); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	for _, cm := range l.commits {
		if cm.member == memberA && cm.p == r && cm.seq > revoked.seq {
			t.Errorf("member A committed partition %d at %d after its Revoked event", r, cm.off)
		}
		if cm.member == memberA && cm.p == r && cm.off > x {
			t.Errorf("member A committed partition %d at %d, past its watermark %d when revoked", r, cm.off, x)
		}
	}
	l.mu.Unlock()
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}

func hasRange(s *store, p int32, from, to int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for o := from; o < to; o++ {
		if _, ok := s.seen[place(p, o)]; !ok {
			return false
		}
	}
	return true
}

// A lost session (the broker answers a heartbeat with UNKNOWN_MEMBER_ID):
// the source reports Lost with its member id and partitions, makes no
// commit for them under the lost membership, and goes on after rejoining:
// the run does not fail, and everything is committed in the end.
func TestAttackLostPartitions(t *testing.T) {
	const n = 40
	c, addrs := newCluster(t, 2, "jobs")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	produceTo(t, addrs, "jobs", 0, 0, n)
	produceTo(t, addrs, "jobs", 1, 100, n)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	st := newStore()
	errc := goRun(func() error {
		return member(context.Background(), stop, addrs, "g", "jobs", func(r kafka.Record[int]) {
			l.settleRec(r)
			st.put(r)
		}, nil, kafka.CommitInterval(5*time.Millisecond), l.option())
	})
	waitFor(t, "the first half stored", func() bool { return st.len() == 2*n })
	var once sync.Once
	c.ControlKey(int16(kmsg.Heartbeat), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		handled := false
		var resp kmsg.Response
		once.Do(func() {
			req := kreq.(*kmsg.HeartbeatRequest)
			r := req.ResponseKind().(*kmsg.HeartbeatResponse)
			r.ErrorCode = 25 // UNKNOWN_MEMBER_ID
			resp, handled = r, true
		})
		if !handled {
			c.KeepControl()
		}
		return resp, nil, handled
	})
	var lost eventSeen
	waitFor(t, "a Lost event", func() bool {
		var ok bool
		lost, ok = l.firstEvent(func(e eventSeen) bool { return e.ev.Kind == kafka.Lost })
		return ok
	})
	if lost.ev.Member == "" || len(lost.ev.Partitions["jobs"]) == 0 {
		t.Errorf("Lost event %+v", lost.ev)
	}
	produceTo(t, addrs, "jobs", 0, n, n)
	produceTo(t, addrs, "jobs", 1, 100+n, n)
	var runErr error
	ended := false
	waitFor(t, "everything stored after the loss, or the run's end", func() bool {
		select {
		case runErr = <-errc:
			ended = true
			return true
		default:
			return st.len() == 4*n
		}
	})
	if ended {
		t.Errorf("the run ended after a lost session (%d of %d records stored): %v", st.len(), 4*n, runErr)
	} else {
		drain()
		if err := waitErr(t, "the run", errc); err != nil {
			t.Errorf("the run failed after a lost session: %v", err)
		}
	}
	if ended {
		// The run is over; what it committed must still be safe.
		l.verify(t)
		return
	}
	reassigned, ok := l.firstEvent(func(e eventSeen) bool { return e.seq > lost.seq && e.ev.Kind == kafka.Assigned })
	if !ok {
		t.Error("no Assigned event after the loss")
	}
	t.Logf("lost as %s, assigned again as %s", lost.ev.Member, reassigned.ev.Member)
	l.mu.Lock()
	for _, cm := range l.commits {
		if cm.seq > lost.seq && cm.seq < reassigned.seq && slices.Contains(lost.ev.Partitions["jobs"], cm.p) {
			t.Errorf("commit of partition %d at %d by %s between the loss and the next assignment", cm.p, cm.off, cm.member)
		}
	}
	l.mu.Unlock()
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}

// "when the run ends, it commits what is settled, leaves the group and
// closes the client" and "When a sink returns, no goroutine of the run is
// running": by abort and by drain.
func TestAttackRunEndLeavesTheGroup(t *testing.T) {
	for _, how := range []string{"abort", "drain"} {
		t.Run(how, func(t *testing.T) {
			c, addrs := newCluster(t, 2, "jobs")
			var mu sync.Mutex
			left := 0
			c.ControlKey(int16(kmsg.LeaveGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				mu.Lock()
				left++
				mu.Unlock()
				return nil, nil, false
			})
			l := newLedger()
			l.watch(c)
			produceTo(t, addrs, "jobs", 0, 0, 50)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			st := newStore()
			errc := goRun(func() error {
				return member(ctx, stop, addrs, "g", "jobs", func(r kafka.Record[int]) {
					l.settleRec(r)
					st.put(r)
				}, nil, l.option())
			})
			waitFor(t, "records stored", func() bool { return st.len() == 50 })
			if how == "abort" {
				cancel()
			} else {
				drain()
			}
			err := waitErr(t, "the run", errc)
			if how == "abort" && !errors.Is(err, context.Canceled) || how == "drain" && err != nil {
				t.Fatalf("%s: %v", how, err)
			}
			leftock := func() int { mu.Lock(); defer mu.Unlock(); return left }
			if leftock() == 0 {
				t.Errorf("%s: the run returned before the member left the group", how)
			}
			checkNoLeak(t, how)
			if got := committedNow(t, addrs, "g", "jobs", 2)[0]; got != 50 {
				t.Errorf("%s: committed %d at the end, want 50", how, got)
			}
			l.verify(t)
		})
	}
}

// A run that ends while it is still joining the group (the broker holds
// the JoinGroup) returns and leaves nothing running: by abort, by drain,
// and with a ctx cancelled before the run.
func TestAttackRunEndsBeforeJoin(t *testing.T) {
	for _, how := range []string{"abort", "drain", "precancelled"} {
		t.Run(how, func(t *testing.T) {
			c, addrs := newCluster(t, 1, "jobs")
			wake := make(chan struct{})
			joining := make(chan struct{})
			var once sync.Once
			c.ControlKey(int16(kmsg.JoinGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				once.Do(func() {
					close(joining)
					c.SleepControl(func() { <-wake })
				})
				return nil, nil, false
			})
			defer close(wake)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			if how == "precancelled" {
				cancel()
			}
			// A join in progress holds the client's Close until it ends: its
			// timeout is the rebalance timeout plus the request overhead,
			// shortened here, and so is the session (memberSession, a hang
			// bound elsewhere, held this Close for most of its 30 s; a
			// member that never joins cannot be expired from a group).
			opts := append(memberOpts(addrs, "g", "jobs"), kgo.RebalanceTimeout(time.Second), kgo.RequestTimeoutOverhead(time.Second), kgo.SessionTimeout(2*time.Second))
			recs := kafka.Source(opts, decodeInt)
			errc := goRun(func() error {
				return sink.ForEach(ctx, stage.Until(recs, stop), func(context.Context, kafka.Record[int]) error { return nil })
			})
			switch how {
			case "abort":
				<-joining
				cancel()
			case "drain":
				<-joining
				drain()
			}
			began := time.Now()
			err := waitErr(t, "a run that ended before joining", errc)
			t.Logf("%s: %v (returned %v after the end was asked)", how, err, time.Since(began).Round(time.Millisecond))
			switch how {
			case "abort", "precancelled":
				if !errors.Is(err, context.Canceled) {
					t.Errorf("%s: %v, want context.Canceled", how, err)
				}
			case "drain":
				if err != nil {
					t.Errorf("drain: %v, want nil", err)
				}
			}
			checkNoLeak(t, how)
		})
	}
}

// "Each run is one member of the group": a second run of the same Stream
// joins again and goes on from the committed offsets; two runs of one
// Stream at once are two members.
func TestAttackSecondRunJoinsAgain(t *testing.T) {
	c, addrs := newCluster(t, 2, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, 30)
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), l.option())
	run := func(st *store, stop context.Context) <-chan error {
		return goRun(func() error {
			return sink.ForEach(context.Background(), stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) error {
				l.settleRec(r)
				st.put(r)
				return nil
			})
		})
	}
	st1 := newStore()
	stop1, drain1 := context.WithCancel(context.Background())
	errc := run(st1, stop1)
	waitFor(t, "first run stored", func() bool { return st1.len() == 30 })
	drain1()
	if err := waitErr(t, "first run", errc); err != nil {
		t.Fatal(err)
	}
	produceTo(t, addrs, "jobs", 0, 30, 30)
	st2 := newStore()
	stop2, drain2 := context.WithCancel(context.Background())
	defer drain2()
	errc = run(st2, stop2)
	waitFor(t, "second run stored the new records", func() bool { return hasRange(st2, 0, 30, 60) })
	drain2()
	if err := waitErr(t, "second run", errc); err != nil {
		t.Fatal(err)
	}
	if _, ok := st2.seen[place(0, 0)]; ok {
		t.Error("the second run started from the beginning, not from the committed offset")
	}
	if got := committedNow(t, addrs, "g", "jobs", 2)[0]; got != 60 {
		t.Errorf("after the second run, committed %d, want 60", got)
	}

	// Two runs of the same Stream at once: two members, each owns a partition.
	produceTo(t, addrs, "jobs", 1, 1000, 10)
	stop3, drain3 := context.WithCancel(context.Background())
	defer drain3()
	st3, st4 := newStore(), newStore()
	e3, e4 := run(st3, stop3), run(st4, stop3)
	waitFor(t, "two members own a partition each", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		owned := map[string]int{}
		for _, e := range l.events[len(l.events)-min(len(l.events), 50):] {
			switch e.ev.Kind {
			case kafka.Assigned:
				owned[e.ev.Member] += len(e.ev.Partitions["jobs"])
			case kafka.Revoked, kafka.Lost:
				owned[e.ev.Member] -= len(e.ev.Partitions["jobs"])
			}
		}
		busy := 0
		for _, n := range owned {
			if n > 0 {
				busy++
			}
		}
		return busy == 2
	})
	waitFor(t, "partition 1 stored", func() bool { return hasRange(st3, 1, 0, 10) || hasRange(st4, 1, 0, 10) })
	drain3()
	for _, e := range []<-chan error{e3, e4} {
		if err := waitErr(t, "concurrent run", e); err != nil {
			t.Fatal(err)
		}
	}
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}

// OnEvent: Assigned with the member id the broker sees in its commits;
// every Committed event carries the offsets of a commit the broker
// received from that member; calls never overlap.
func TestAttackOnEventMatchesTheBroker(t *testing.T) {
	c, addrs := newCluster(t, 3, "jobs")
	l := newLedger()
	l.watch(c)
	for p := range int32(3) {
		produceTo(t, addrs, "jobs", p, int(p)*1000, 50)
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	st := newStore()
	errc := goRun(func() error {
		return member(context.Background(), stop, addrs, "g", "jobs", func(r kafka.Record[int]) {
			l.settleRec(r)
			st.put(r)
		}, nil, kafka.CommitInterval(5*time.Millisecond), l.option())
	})
	waitFor(t, "everything stored", func() bool { return st.len() == 150 })
	checkCommitted(t, addrs, "g", "jobs")
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var member string
	assigned := map[int32]bool{}
	broker := map[string]bool{} // "member p off" the broker received
	for _, cm := range l.commits {
		broker[fmt.Sprint(cm.member, cm.p, cm.off)] = true
	}
	kinds := map[kafka.EventKind]int{}
	for _, e := range l.events {
		kinds[e.ev.Kind]++
		if e.ev.Member == "" {
			t.Errorf("%v event without a member id", e.ev.Kind)
		}
		if member == "" {
			member = e.ev.Member
		}
		if e.ev.Member != member {
			t.Errorf("%v event of member %q, want %q", e.ev.Kind, e.ev.Member, member)
		}
		switch e.ev.Kind {
		case kafka.Assigned:
			for _, p := range e.ev.Partitions["jobs"] {
				assigned[p] = true
			}
		case kafka.Committed:
			if e.ev.Err != nil {
				t.Errorf("commit failed: %v", e.ev.Err)
			}
			if len(e.ev.Offsets) == 0 {
				t.Errorf("Committed event without offsets")
			}
			for topic, ps := range e.ev.Offsets {
				for p, off := range ps {
					if topic != "jobs" || !broker[fmt.Sprint(e.ev.Member, p, off)] {
						t.Errorf("Committed event %s/%d at %d: the broker received no such commit from %s", topic, p, off, e.ev.Member)
					}
				}
			}
		}
		if e.ev.Kind.String() == "" || strings.Contains(e.ev.Kind.String(), "EventKind(") {
			t.Errorf("EventKind %d has no name: %q", e.ev.Kind, e.ev.Kind.String())
		}
	}
	if len(assigned) != 3 {
		t.Errorf("Assigned events named partitions %v, want all 3", assigned)
	}
	for _, cm := range l.commits {
		if cm.member != member {
			t.Errorf("the broker got a commit from %q, the events name %q", cm.member, member)
		}
	}
	if kinds[kafka.Committed] == 0 {
		t.Error("no Committed event")
	}
	t.Logf("events by kind: %v", kinds)
}

// A commit the broker refuses: a Committed event with Err, the run goes
// on, and later commits take the watermark to the end.
func TestAttackCommitFailureEvent(t *testing.T) {
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	var refusedOnce sync.Once
	refused := make(chan struct{})
	c.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.OffsetCommitRequest)
		handled := false
		var resp kmsg.Response
		for _, tt := range req.Topics {
			for _, p := range tt.Partitions {
				if p.Offset > 0 {
					refusedOnce.Do(func() {
						resp, handled = refuseCommit(req, 28), true // INVALID_COMMIT_OFFSET_SIZE, not retriable
						close(refused)
					})
				}
			}
		}
		if !handled {
			c.KeepControl()
		}
		return resp, nil, handled
	})
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, 30)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	st := newStore()
	errc := goRun(func() error {
		return member(context.Background(), stop, addrs, "g", "jobs", func(r kafka.Record[int]) {
			l.settleRec(r)
			st.put(r)
		}, nil, kafka.CommitInterval(5*time.Millisecond), l.option())
	})
	waitFor(t, "a refused commit", func() bool {
		select {
		case <-refused:
			return true
		default:
			return false
		}
	})
	waitFor(t, "a Committed event with Err", func() bool {
		_, ok := l.firstEvent(func(e eventSeen) bool { return e.ev.Kind == kafka.Committed && e.ev.Err != nil })
		return ok
	})
	waitFor(t, "everything stored", func() bool { return st.len() == 30 })
	checkCommitted(t, addrs, "g", "jobs")
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Errorf("the run failed after one refused commit: %v", err)
	}
	l.verify(t)
}

var _ = kfake.NumBrokers
