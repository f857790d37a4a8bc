package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview63DrainAFullPartition: one partition, MaxPending(k), offset 1
// held in the stage's function, the mixed workload (Workers(8)); the window
// (offsets 1 to k) fills: without KeyBy (k=6) every other record of it
// settles; under ByKey (k=20) the records of offset 1's key wait for it in
// the stage, the others settle. Then the run is drained with stage.Until,
// and only then is offset 1 released.
//
// Doc sentences attacked:
//   - Until: "every item they already produced goes on through the stages":
//     the records that waited for their key are processed, in offset order,
//     after offset 1;
//   - Offsets: "(or one past the last record it took, when all are
//     settled)" and "it also commits ... when the run stops": the commit at
//     the end is exactly one past the highest offset that reached the stage
//     (every record the run took reaches the stage under a drain), and every
//     record below it was settled; or, when a record the source's waiting
//     call took in the drain's moment failed its first try ("a record that
//     fails while the run drains is not tried again ... stays
//     uncommitted"), exactly that record's offset;
//   - "A partition newly assigned starts from its committed offset": a
//     second run starts exactly there and gets the rest.
func TestReview63DrainAFullPartition(t *testing.T) {
	for _, tc := range []struct {
		mode string
		k    int
	}{{"none", 6}, {"key", 20}} {
		t.Run(tc.mode, func(t *testing.T) { r63DrainAFullPartition(t, tc.mode, tc.k) })
	}
}

func r63DrainAFullPartition(t *testing.T, mode string, k int) {
	const n, held = 40, 1
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	b := newR63Book(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	release := newR63Gate()
	defer release.open()
	var mu sync.Mutex
	maxSeen := int64(-1)
	hook := func(ctx context.Context, r kafka.Record[int]) error {
		mu.Lock()
		maxSeen = max(maxSeen, r.Offset)
		mu.Unlock()
		if r.Offset == held && r.Attempts == 1 {
			if err := release.wait(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	ord := newR63Order()
	drain, errc := r63RunMixed(b, addrs, mode, ord, hook, k)
	defer drain()
	var want, waiting []int64
	for o := int64(0); o <= int64(k); o++ {
		switch {
		case o == held:
		case mode == "key" && o%7 == held:
			waiting = append(waiting, o)
		default:
			want = append(want, o)
		}
	}
	waitFor(t, fmt.Sprintf("offsets %v to settle while offset %d is held", want, held), func() bool {
		for _, o := range want {
			if !b.isSettled("jobs", 0, o) {
				return false
			}
		}
		return true
	})
	drain()
	release.open()
	if err := waitErr(t, "the drained run", errc); !r63OnlyForwarded(err) {
		t.Errorf("drained run: %v, want nil or a *sink.ForwardedError", err)
	}
	ord.verify(t)
	for _, o := range waiting {
		if !b.isSettled("jobs", 0, o) {
			t.Errorf("offset %d (taken, waiting for its key behind offset %d) was not processed under the drain", o, held)
		}
	}
	mu.Lock()
	last := maxSeen
	mu.Unlock()
	if last < int64(k) {
		t.Errorf("the highest offset that reached the stage is %d, want at least %d", last, k)
	}
	got := r14Committed(t, addrs, "g", "jobs", 0)
	fu := b.firstUnsettled("jobs", 0)
	t.Logf("highest offset taken %d, first unsettled %d, committed %d", last, fu, got)
	// Offset 1's release lets the window move, and the source's call that
	// waits for it sees the drain only a moment after stop is done: it may
	// still take offsets past k. Such a record that fails its first try
	// ("retry" or "dead") is not tried again under the drain and stays
	// uncommitted; every other record taken is settled.
	for o := fu; o <= last; o++ {
		if b.isSettled("jobs", 0, o) {
			continue
		}
		if kind := r63Kind(int(o)); o <= int64(k) || (kind != "retry" && kind != "dead") {
			t.Errorf("offset %d (%s) reached the stage under the drain but was not settled", o, kind)
		}
	}
	if got != fu {
		t.Errorf("committed %d at the end of the drained run, want %d: one past the last record it took, or the first that failed under the drain", got, fu)
	}
	b.verify(t)
	seen := r63Resume(t, b, addrs, "g", 1, n, map[int32]int64{0: got})
	if s := seen[0]; got < n && (len(s) == 0 || s[0] != got) {
		t.Errorf("the second run got %v, want it to start at the committed offset %d", s, got)
	}
	checkCommitted(t, addrs, "g", "jobs")
}

// TestReview63DrainFailureWithKeyWaiters: one partition, ten records of one
// key, KeyBy(ByKey), Workers(8), Attempts(3), no dead-letter topic. Offset
// 2 is held in its first try; the run is drained; then offset 2 fails
// (forwarded), and so does every later try of it.
//
// Doc sentences attacked ("Offsets"):
//   - "A record that fails while the run drains is not tried again: the
//     run takes nothing more. It stays uncommitted, and the next owner of
//     its partition gets it again", with its exception ("a record that fails
//     in that moment may be handed to that call and tried once more; it is
//     committed only if that try succeeds"): at most two tries, and the
//     commit at the end is exactly 2 even though the records of its key
//     taken behind it may finish and settle;
//   - "The source adds no error of its own for it: the run's result is what
//     the sink makes of the failure (under stage.Forward, the sink's
//     *sink.ForwardedError ...)": the run returns a *sink.ForwardedError
//     and nothing else (the failure is not a last attempt);
//   - a second run starts at 2.
func TestReview63DrainFailureWithKeyWaiters(t *testing.T) {
	const n, bad = 10, 2
	_, addrs := newCluster(t, 1, "jobs")
	produceOneKey(t, addrs, n)
	var mu sync.Mutex
	tries := 0
	entered := make(chan struct{})
	release := newR63Gate()
	defer release.open()
	ord := newR63Order()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(3), kafka.CommitInterval(10*time.Millisecond))
	work := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		k := kafka.ByKey(r)
		ord.enter(k, r)
		defer ord.leave(k)
		if r.Offset != bad {
			return r, nil
		}
		mu.Lock()
		tries++
		first := tries == 1
		mu.Unlock()
		if first {
			close(entered)
			<-release.c // ignores ctx: a drain does not cancel it
		}
		return r, errR63
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]), stage.OnError(stage.Forward), stage.Buffer(n))
	settled := map[int64]bool{}
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), work, func(_ context.Context, r kafka.Record[int]) error {
			mu.Lock()
			settled[r.Offset] = true
			mu.Unlock()
			return nil
		})
	})
	select {
	case <-entered:
	case <-time.After(r63Watchdog):
		t.Fatal("hung: offset 2 never reached the stage")
	}
	waitFor(t, "offsets 0 and 1 stored", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return settled[0] && settled[1]
	})
	drain()
	release.open()
	err := waitErr(t, "the drained run", errc)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || !r63OnlyForwarded(err) || !errors.Is(err, errR63) {
		t.Errorf("drained run: %v, want a *sink.ForwardedError (of offset 2's failure) and nothing else", err)
	}
	mu.Lock()
	t.Logf("offset 2 tried %d times; stored %v", tries, settled)
	if tries > 2 {
		t.Errorf("offset 2 was tried %d times although it failed while the run drained", tries)
	}
	mu.Unlock()
	ord.verify(t)
	if got := r14Committed(t, addrs, "g", "jobs", 0); got != bad {
		t.Errorf("committed %d at the end of the drained run, want %d (offset 2 failed and was not settled; 0 and 1 were)", got, bad)
	}
	off, _ := r14FirstOffset(t, kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt))
	if off != bad {
		t.Errorf("the second run started at offset %d, want %d", off, bad)
	}
}
