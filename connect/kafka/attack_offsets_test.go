package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// "A record that failed (a forwarded *stage.Error ...) holds the watermark:
// it is tried again, up to Attempts times". A record failing twice then
// succeeding is stored, with Attempts 1, 2, 3, and no commit ever passes it
// before it is stored; the run does not fail.
func TestAttackRetryTwiceThenSucceeds(t *testing.T) {
	const n, x = 200, 50
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	var mu sync.Mutex
	var tries []int
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(3), kafka.CommitInterval(10*time.Millisecond), l.option())
	done := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == x {
			mu.Lock()
			tries = append(tries, r.Attempts)
			mu.Unlock()
			if r.Attempts <= 2 {
				return r, fmt.Errorf("transient failure %d", r.Attempts)
			}
		} else if r.Attempts != 1 {
			return r, fmt.Errorf("record %d came with Attempts %d", r.Value, r.Attempts)
		}
		return r, nil
	}, stage.Workers(8), stage.OnError(stage.Forward))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), done, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	drain()
	err := waitErr(t, "the run", errc)
	var se *stage.SourceError
	if errors.As(err, &se) {
		t.Fatalf("the run failed although the record succeeded on its third try: %v", err)
	}
	if err != nil && !isForwarded(err) {
		t.Fatal(err)
	}
	mu.Lock()
	if !slices.Equal(tries, []int{1, 2, 3}) {
		t.Errorf("record %d was tried with Attempts %v, want [1 2 3]", x, tries)
	}
	mu.Unlock()
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}

// "dropped on purpose (a Filter ...)" settles a record: a Filter that drops
// every even record lets the watermark reach the end, and no commit passes
// a record that was neither dropped nor stored.
func TestAttackFilterDropsSettle(t *testing.T) {
	const n = 200
	addrs, l := twoPartitions(t, n)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var mu sync.Mutex
	seen := map[string]bool{}
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(10*time.Millisecond), l.option())
	kept := stage.Filter(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (bool, error) {
		mu.Lock()
		seen[place(r.Partition, r.Offset)] = true
		mu.Unlock()
		if r.Value%2 == 0 {
			l.settleRec(r)
			return false, nil
		}
		return true, nil
	}, stage.Workers(8))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), kept, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	waitFor(t, "every record filtered and the odd ones stored", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == n && st.len() == n/2
	})
	finishAttack(t, drain, errc, addrs, l)
}

// "an item in a Batch is done when its batch is": records go through Map,
// Batch and a sink that stores a batch at a time; no commit passes a
// record whose batch was not stored, and the watermark reaches the end.
func TestAttackBatchThenSink(t *testing.T) {
	const n = 300
	addrs, l := twoPartitions(t, n)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Batch(rows, 7, 5*time.Millisecond), func(_ context.Context, b []kafka.Record[int]) error {
			time.Sleep(time.Millisecond) // a slow bulk write (perturbation only)
			for _, r := range b {
				l.settleRec(r)
				st.put(r)
			}
			return nil
		})
	})
	waitFor(t, "every record stored", func() bool { return st.len() == n })
	finishAttack(t, drain, errc, addrs, l)
}

// "a failed commit at the sink" fails the record: the sink callback fails
// for the batch that holds record x; the run ends with that error, no
// commit passes the batch's records, and a second member gets them again.
func TestAttackSinkErrorIsNotCommitted(t *testing.T) {
	const n, x = 200, 100
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	boom := errors.New("bulk write failed")
	var failed []int64
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(recs, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		return r, nil
	}, stage.Workers(8))
	st := newStore()
	err := waitErr(t, "the first run", goRun(func() error {
		return sink.ForEach(context.Background(), stage.Batch(rows, 5, 5*time.Millisecond), func(_ context.Context, b []kafka.Record[int]) error {
			for _, r := range b {
				if r.Value == x {
					for _, r := range b {
						failed = append(failed, r.Offset)
					}
					return boom
				}
			}
			for _, r := range b {
				l.settleRec(r)
				st.put(r)
			}
			return nil
		})
	}))
	if !errors.Is(err, boom) {
		t.Fatalf("first run: %v, want the sink's error", err)
	}
	low := slices.Min(failed)
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > low {
		t.Errorf("after the failed commit, committed %d, past the failed batch's record %d (batch %v)", got, low, failed)
	}
	// A second member gets the failed records again.
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	st2 := newStore()
	errc := goRun(func() error {
		return member(context.Background(), stop, addrs, "g", "jobs", func(r kafka.Record[int]) {
			l.settleRec(r)
			st2.put(r)
		}, nil, kafka.CommitInterval(5*time.Millisecond))
	})
	waitFor(t, "the failed batch stored by the second run", func() bool {
		for _, o := range failed {
			if !hasRange(st2, 0, o, o+1) {
				return false
			}
		}
		return true
	})
	waitFor(t, "every record stored by one run or the other", func() bool {
		for o := range int64(n) {
			st.mu.Lock()
			_, a := st.seen[place(0, o)]
			st.mu.Unlock()
			st2.mu.Lock()
			_, b := st2.seen[place(0, o)]
			st2.mu.Unlock()
			if !a && !b {
				return false
			}
		}
		return true
	})
	drain()
	if err := waitErr(t, "the second run", errc); err != nil {
		t.Fatal(err)
	}
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}

// "An item that fans out (FlatMap, Tee) is done when all its outputs are":
// each record becomes 3 outputs; one output of record x is held back. The
// watermark reaches x and stops there (x's other 2 outputs are stored)
// until the third is stored.
func TestAttackFlatMapFanOut(t *testing.T) {
	const n, x = 100, 40
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	type part struct {
		r kafka.Record[int]
		i int
	}
	release := make(chan struct{})
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), l.option())
	parts := stage.FlatMap(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) ([]part, error) {
		return []part{{r, 0}, {r, 1}, {r, 2}}, nil
	}, stage.Workers(4))
	worked := stage.Map(parts, func(ctx context.Context, p part) (part, error) {
		if p.r.Value == x && p.i == 1 {
			select {
			case <-release:
			case <-ctx.Done():
				return p, ctx.Err()
			}
		}
		return p, nil
	}, stage.Workers(8))
	var mu sync.Mutex
	got := map[int64]int{} // offset -> outputs stored
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), worked, func(_ context.Context, p part) error {
			mu.Lock()
			defer mu.Unlock()
			if got[p.r.Offset]++; got[p.r.Offset] == 3 {
				l.settleRec(p.r)
			}
			return nil
		})
	})
	waitFor(t, "every output stored but x's second", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for o := range int64(n) {
			want := 3
			if o == x {
				want = 2
			}
			if got[o] != want {
				return false
			}
		}
		return true
	})
	waitFor(t, "a commit at x or beyond", func() bool {
		return slices.ContainsFunc(l.committedEvents("jobs", 0), func(o int64) bool { return o >= x })
	})
	if evs := l.committedEvents("jobs", 0); slices.Max(evs) != x {
		t.Errorf("with 2 of x's 3 outputs stored, the source committed %v; want the watermark held at %d", evs, x)
	}
	close(release)
	waitFor(t, "x's last output stored", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got[x] == 3
	})
	finishAttack(t, drain, errc, addrs, l)
}

// "dropped on purpose (... a Handle policy)": records that fail are
// accepted by a Handle policy, which settles them; the watermark reaches
// the end.
func TestAttackHandlePolicyDrops(t *testing.T) {
	const n = 200
	addrs, l := twoPartitions(t, n)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var handled sync.Map
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value%10 == 3 {
			return r, fmt.Errorf("bad %d", r.Value)
		}
		return r, nil
	}, stage.Workers(8), stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
		r := e.Input.(kafka.Record[int])
		l.settleRec(r)
		handled.Store(r.Value, true)
		return nil
	})))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	waitFor(t, "every record stored or handled", func() bool {
		h := 0
		handled.Range(func(any, any) bool { h++; return true })
		return st.len()+h == n
	})
	finishAttack(t, drain, errc, addrs, l)
}

// A Handle policy that returns an error ends the run with it; the record
// is not committed.
func TestAttackHandleErrorIsNotCommitted(t *testing.T) {
	const n, x = 200, 120
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	refuse := errors.New("refused by the handler")
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(recs, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == x {
			return r, errors.New("bad")
		}
		return r, nil
	}, stage.Workers(8), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return refuse })))
	err := waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			return nil
		})
	}))
	if !errors.Is(err, refuse) {
		t.Fatalf("run: %v, want the handler's error", err)
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
		t.Errorf("committed %d, past the refused record %d", got, x)
	}
	l.verify(t)
}

// Abort: cancelling ctx while record x is in flight. "when the run ends, it
// commits what is settled": with CommitInterval(1h) the only commit is the
// one at the end, and it must be exactly x (everything before x was stored,
// x was not).
func TestAttackAbortCommitsTheWatermark(t *testing.T) {
	const n, x = 200, 70
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour), l.option())
	rows := stage.Map(recs, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == x {
			<-ctx.Done()
			return r, ctx.Err()
		}
		return r, nil
	}, stage.Workers(8))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(ctx, rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	waitFor(t, "every record below x stored", func() bool { _, ok := st.has(0, x); return ok })
	cancel()
	if err := waitErr(t, "the aborted run", errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("aborted run: %v", err)
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got != x {
		t.Errorf("after the abort, committed %d; want the watermark %d (commits: %v)", got, x, l.committedEvents("jobs", 0))
	}
	l.verify(t)
}

// Drain: Until's stop while record x is in flight; x then finishes. With
// CommitInterval(1h), the commit at the end covers every record taken.
func TestAttackDrainCommitsWhatFinished(t *testing.T) {
	const n, x = 200, 70
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	release := make(chan struct{})
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == x {
			<-release
		}
		return r, nil
	}, stage.Workers(8))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	waitFor(t, "every record but x stored", func() bool { return st.len() == n-1 })
	drain()
	close(release)
	if err := waitErr(t, "the drained run", errc); err != nil {
		t.Fatalf("drained run: %v", err)
	}
	if st.len() != n {
		t.Errorf("the drain lost record x: %d of %d stored", st.len(), n)
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got != n {
		t.Errorf("after the drain, committed %d; want %d", got, n)
	}
	l.verify(t)
}

// Drain while record x is in flight, and x then fails: it cannot be tried
// again (the source takes no new item), so the run must end, and x must
// not be committed.
func TestAttackDrainWhileARecordFails(t *testing.T) {
	const n, x = 100, 30
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	release := make(chan struct{})
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Value == x {
			<-release
			return r, errors.New("failed after the drain")
		}
		return r, nil
	}, stage.Workers(8), stage.OnError(stage.Forward))
	st := newStore()
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), rows, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			st.put(r)
			return nil
		})
	})
	waitFor(t, "every record but x stored", func() bool { return st.len() == n-1 })
	drain()
	close(release)
	err := waitErr(t, "the drained run", errc)
	t.Logf("drained run with a failed record: %v", err)
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > x {
		t.Errorf("committed %d, past the failed record %d", got, x)
	} else if got != x {
		t.Logf("committed %d (watermark %d)", got, x)
	}
	l.verify(t)
}

// sink.First: "the item sink.First returns ... counts" as committed, and
// the run's end "commits what is settled": the first record (offset 0) is
// committed, nothing more.
func TestAttackFirstCommitsItsRecord(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, 20)
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour))
	var r kafka.Record[int]
	var ok bool
	err := waitErr(t, "sink.First", goRun(func() (err error) {
		r, ok, err = sink.First(context.Background(), recs)
		return err
	}))
	if err != nil || !ok || r.Offset != 0 {
		t.Fatalf("First: %v %v %+v", err, ok, r)
	}
	// (The ledger is not used: the record's settlement happens inside
	// First, before the test knows which record it is.)
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got != 1 {
		t.Errorf("after sink.First took offset 0, committed %d; want 1", got)
	}
}

// stage.ErrStop from the sink commits the item it was returned for.
func TestAttackErrStopCommitsThroughIt(t *testing.T) {
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "jobs", 0, 0, 20)
	recs := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(time.Hour), l.option())
	err := waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(context.Background(), recs, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			if r.Offset == 5 {
				return stage.ErrStop
			}
			return nil
		})
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got != 6 {
		t.Errorf("after ErrStop at offset 5, committed %d; want 6", got)
	}
	l.verify(t)
}
