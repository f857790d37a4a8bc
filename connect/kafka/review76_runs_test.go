package kafka_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review76: the state of one Source across its runs (OnEvent failing in one
// run), where a newly assigned partition starts, and contexts of a type the
// context package cannot see into, while the source waits for records.

// Doc (OnEvent): "A panic in f fails the run with a *stage.SourceError
// wrapping a *stage.PanicError ..., and f is called no more in that run."
// Doc (Source): "Each run is one member of the group".
//
// One Source, two runs in sequence: f panics at the first run's Assigned
// event. The second run of the same Source is a new member: f is called
// again for it (its Assigned event at least), and it consumes and commits
// everything.
func TestReview76OnEventPanicInOneRunLeavesTheNextRunItsEvents(t *testing.T) {
	_, addrs := newCluster(t, 2, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, 5)
	produceTo(t, addrs, "jobs", 1, 5, 5)
	var run atomic.Int32 // which run f belongs to: set before each
	var calls [3]atomic.Int32
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
		r := run.Load()
		calls[r].Add(1)
		if r == 1 && e.Kind == kafka.Assigned {
			panic("review76: first run's OnEvent")
		}
	}))
	run.Store(1)
	err := waitErr(t, "the first run", goRun(func() error { return r76ForEachNil(context.Background(), src) }))
	if !r76IsPanicIn[*stage.SourceError](err) {
		t.Fatalf("the first run returned %v; want a *stage.SourceError wrapping a *stage.PanicError", err)
	}
	run.Store(2)
	var n atomic.Int32
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	err = waitErr(t, "the second run", goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) error {
			if n.Add(1) == 10 {
				drain()
			}
			return nil
		})
	}))
	if err != nil {
		t.Fatalf("the second run returned %v", err)
	}
	if calls[2].Load() == 0 {
		t.Error("f was never called in the second run: the first run's panic turned it off for good")
	}
	checkCommitted(t, addrs, "g", "jobs")
}

// Doc (OnEvent): "(runs of one Source at the same time are several
// members: they may call f at once) ... A panic in f fails the run ...,
// and f is called no more in that run."
//
// Two runs of one Source at once; f panics at the first Assigned event
// naming a partition (whichever member gets it first). The other run goes
// on: f is still called for it (it is given the victim's partitions when
// the victim leaves: an Assigned event), and it consumes and commits
// everything.
func TestReview76OnEventPanicInOneOfTwoConcurrentRuns(t *testing.T) {
	_, addrs := newCluster(t, 2, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, 5)
	produceTo(t, addrs, "jobs", 1, 5, 5)
	var mu sync.Mutex
	victim := ""
	owned := map[string]map[int32]bool{} // member -> partitions, from events after the panic
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
		mu.Lock()
		if victim == "" && e.Kind == kafka.Assigned && len(e.Partitions) > 0 {
			victim = e.Member
			mu.Unlock()
			panic("review76: one member's OnEvent")
		}
		if e.Member != victim && victim != "" {
			if owned[e.Member] == nil {
				owned[e.Member] = map[int32]bool{}
			}
			for _, p := range e.Partitions["jobs"] {
				switch e.Kind {
				case kafka.Assigned:
					owned[e.Member][p] = true
				case kafka.Revoked, kafka.Lost:
					owned[e.Member][p] = false
				}
			}
		}
		mu.Unlock()
	}))
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var seen sync.Map
	run := func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) error {
			seen.Store(place(r.Partition, r.Offset), true)
			return nil
		})
	}
	e1, e2 := goRun(run), goRun(run)
	// The victim's run fails; which one is unknown.
	var other <-chan error
	select {
	case err := <-e1:
		other = e2
		if !r76IsPanicIn[*stage.SourceError](err) {
			t.Errorf("the failing run returned %v; want a *stage.SourceError wrapping a *stage.PanicError", err)
		}
	case err := <-e2:
		other = e1
		if !r76IsPanicIn[*stage.SourceError](err) {
			t.Errorf("the failing run returned %v; want a *stage.SourceError wrapping a *stage.PanicError", err)
		}
	case <-waitHung():
		t.Fatal("hung: neither run failed")
	}
	waitFor(t, "the surviving run to be told it owns both partitions", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, ps := range owned {
			if ps[0] && ps[1] {
				return true
			}
		}
		return false
	})
	waitFor(t, "every record to be consumed", func() bool {
		for p := range int32(2) {
			for o := range int64(5) {
				if _, ok := seen.Load(place(p, o)); !ok {
					return false
				}
			}
		}
		return true
	})
	drain()
	if err := waitErr(t, "the surviving run", other); err != nil {
		t.Errorf("the surviving run returned %v", err)
	}
	checkCommitted(t, addrs, "g", "jobs")
}

// Doc (package, Rebalances): "A partition newly assigned starts from its
// committed offset."
//
// The group committed offset 3 (by an admin client); kopts ask to start
// at the end (kgo.ConsumeResetOffset, which applies only without a
// committed offset): the first record the run takes is offset 3.
func TestReview76NewlyAssignedStartsFromTheCommittedOffset(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, 8)
	adm := kadm.NewClient(client(t, addrs))
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: "jobs", Partition: 0, At: 3, LeaderEpoch: -1})
	resp, err := adm.CommitOffsets(context.Background(), "g", os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	kopts := append(memberOpts(addrs, "g", "jobs"), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	off, attempts := r14FirstOffset(t, kafka.Source(kopts, decodeInt))
	if off != 3 || attempts != 1 {
		t.Errorf("the first record taken is offset %d (attempt %d); want offset 3, the committed offset", off, attempts)
	}
	if c := r14Committed(t, addrs, "g", "jobs", 0); c != 4 {
		t.Errorf("committed offset %d after the sink stopped at offset 3; want 4", c)
	}
}

// r76Ctx is a context of a type the context package cannot see into: its
// Done channel is its own.
type r76Ctx struct {
	context.Context
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	err  error
}

func newR76Ctx() *r76Ctx { return &r76Ctx{Context: context.Background(), done: make(chan struct{})} }

func (c *r76Ctx) Done() <-chan struct{} { return c.done }

func (c *r76Ctx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *r76Ctx) cancel() {
	c.once.Do(func() {
		c.mu.Lock()
		c.err = context.Canceled
		c.mu.Unlock()
		close(c.done)
	})
}

// Doc (stage, Cancellation): "Every blocking step of a run (a wait for an
// item ...) can be abandoned through the run's context. ... A caller's ctx
// of a context type the context package cannot see into ... is watched
// from a goroutine of the run, so the functions' ctx ends a moment after
// it".
// Doc (stage.Until): "a source blocked waiting for one ... sees its
// context end and stops quietly".
// Doc (Source): "It is a waiting source."
//
// The source waits for records of an empty topic when the caller's ctx (or
// Until's stop context), of such a type, is done: the run ends (cancelled,
// or quietly for a drain), and nothing of sluice's is left.
func TestReview76ForeignContextEndsAWaitForRecords(t *testing.T) {
	for _, kind := range []string{"ctx", "stop"} {
		t.Run(kind, func(t *testing.T) {
			_, addrs := newCluster(t, 1, "jobs")
			c := newR76Ctx()
			defer c.cancel()
			var assigned atomic.Bool
			src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.OnEvent(func(e kafka.Event) {
				if e.Kind == kafka.Assigned && len(e.Partitions) > 0 {
					assigned.Store(true)
					c.cancel()
				}
			}))
			_, before := runcheck.Goroutines()
			var err error
			runcheck.NoHang(t, kind, func() {
				if kind == "ctx" {
					err = r76ForEachNil(c, src)
				} else {
					err = r76ForEachNil(context.Background(), stage.Until(src, c))
				}
			})
			checkNoLeakSince(t, kind, before)
			if !assigned.Load() {
				t.Fatalf("the run returned %v before it was assigned a partition", err)
			}
			switch kind {
			case "ctx":
				if !errors.Is(err, context.Canceled) {
					t.Errorf("the run returned %v; want context.Canceled", err)
				}
			case "stop":
				if err != nil {
					t.Errorf("the drained run returned %v; want nil", err)
				}
			}
		})
	}
}
