package kafka_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// "A partition newly assigned starts from its committed offset": member A
// holds every record of both partitions (so both are full, MaxPending),
// member B joins and takes one, R; A's records are released, B processes
// R and leaves; R comes back to A, and A must go on with R's new records.
func TestAttackFullPartitionComesBack(t *testing.T) {
	const n, k = 20, 5
	c, addrs := newCluster(t, 2, "jobs")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	produceTo(t, addrs, "jobs", 0, 0, n)
	produceTo(t, addrs, "jobs", 1, 100, n)

	release := make(chan struct{})
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	recsA := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.MaxPending(k), kafka.CommitInterval(5*time.Millisecond), l.option())
	var mu sync.Mutex
	takenA := 0
	rowsA := stage.Map(stage.Until(recsA, stopA), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		mu.Lock()
		takenA++
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
			return r, ctx.Err()
		}
		return r, nil
	}, stage.Workers(-1))
	stA := newStore()
	errA := goRun(func() error {
		return sink.ForEach(context.Background(), rowsA, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			stA.put(r)
			return nil
		})
	})
	waitFor(t, "A took records of both partitions", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return takenA >= 2*k
	})
	aAssigned, _ := l.firstEvent(func(e eventSeen) bool { return e.ev.Kind == kafka.Assigned })
	memberA := aAssigned.ev.Member

	stopB, drainB := context.WithCancel(context.Background())
	defer drainB()
	stB := newStore()
	errB := goRun(func() error {
		return member(context.Background(), stopB, addrs, "g", "jobs", func(r kafka.Record[int]) {
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
	r := revoked.ev.Partitions["jobs"][0]
	close(release)
	waitFor(t, "R committed to its end", func() bool { return committedNow(t, addrs, "g", "jobs", 2)[r] == n })
	drainB()
	if err := waitErr(t, "member B", errB); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "R assigned to A again", func() bool {
		_, ok := l.firstEvent(func(e eventSeen) bool {
			if e.seq <= revoked.seq || e.ev.Kind != kafka.Assigned || e.ev.Member != memberA {
				return false
			}
			for _, p := range e.ev.Partitions["jobs"] {
				if p == r {
					return true
				}
			}
			return false
		})
		return ok
	})
	produceTo(t, addrs, "jobs", r, 500, 10) // offsets n..n+9 of R
	waitFor(t, "A processed R's new records", func() bool { return hasRange(stA, r, n, n+10) })
	drainA()
	if err := waitErr(t, "member A", errA); err != nil {
		t.Fatal(err)
	}
	l.verify(t)
}

// "f is called from the source's goroutines, one call at a time": within
// one run. A's Revoked callback waits; meanwhile A's kept partition gets
// new records, which A commits. A Committed call that starts while the
// Revoked call is still running breaks the promise. (With the promise
// kept, the Committed call waits and the watchdog ends the wait: no
// verdict depends on it.)
func TestAttackOnEventOneCallAtATimeInOneRun(t *testing.T) {
	c, addrs := newCluster(t, 2, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, 10)
	produceTo(t, addrs, "jobs", 1, 100, 10)

	var mu sync.Mutex
	inCall, overlaps := 0, 0
	var running []kafka.EventKind
	var pairs []string
	var memberA string
	revokedIn := make(chan int32, 1)
	overlap := make(chan struct{})
	var overlapOnce, revokeOnce sync.Once
	onEventA := kafka.OnEvent(func(e kafka.Event) {
		mu.Lock()
		if inCall++; inCall > 1 {
			overlaps++
			pairs = append(pairs, fmt.Sprintf("%v started during %v", e.Kind, running))
			overlapOnce.Do(func() { close(overlap) })
		}
		running = append(running, e.Kind)
		if memberA == "" {
			memberA = e.Member
		}
		mu.Unlock()
		l.onEvent(e)
		if e.Kind == kafka.Revoked && len(e.Partitions["jobs"]) > 0 {
			revokeOnce.Do(func() {
				revokedIn <- e.Partitions["jobs"][0]
				// Give the committer (every 5 ms) a chance to report while
				// this call runs; an overlap ends the wait at once.
				select {
				case <-overlap:
				case <-time.After(500 * time.Millisecond):
				}
			})
		}
		mu.Lock()
		inCall--
		running = slices.DeleteFunc(running, func(k kafka.EventKind) bool { return k == e.Kind })
		mu.Unlock()
	})
	stopA, drainA := context.WithCancel(context.Background())
	defer drainA()
	stA := newStore()
	errA := goRun(func() error {
		return member(context.Background(), stopA, addrs, "g", "jobs", stA.put, nil, kafka.CommitInterval(5*time.Millisecond), onEventA)
	})
	waitFor(t, "A stored everything", func() bool { return stA.len() == 20 })
	stopB, drainB := context.WithCancel(context.Background())
	defer drainB()
	errB := goRun(func() error {
		return member(context.Background(), stopB, addrs, "g", "jobs", newStore().put, nil, kafka.CommitInterval(5*time.Millisecond))
	})
	var r int32
	select {
	case r = <-revokedIn:
	case <-waitHung():
		t.Fatal("hung: no Revoked event")
	}
	produceTo(t, addrs, "jobs", 1-r, 1000, 10) // A's kept partition moves on
	waitFor(t, "A stored the new records", func() bool { return stA.len() == 30 })
	drainB()
	drainA()
	for _, e := range []<-chan error{errA, errB} {
		if err := waitErr(t, "a member", e); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if overlaps > 0 {
		t.Errorf("OnEvent: %d calls started while another call of the same run was in progress: %v", overlaps, pairs)
	}
}
