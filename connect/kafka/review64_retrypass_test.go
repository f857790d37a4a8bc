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

// TestReview64LaterRecordsOfAKeyPassARetry: the package doc's Ordering: "A
// record tried again after a failure comes back after the records taken
// meanwhile, so it is the one exception to the order: which of its key's
// later records pass it depends on how far the stage had read ahead when it
// failed". Three records of one key; offset 0's first try fails only once
// the stage has taken offset 1 (its KeyBy key function was called for it),
// so offset 1 was taken before the retry and must run before it: the calls
// start 0#1, 1#1, and 0#2 comes after them. The order is decided by that
// gate, not by timing. Every record is committed once it succeeded.
func TestReview64LaterRecordsOfAKeyPassARetry(t *testing.T) {
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	const n = 3
	produceOneKey(t, addrs, n)

	taken1 := make(chan struct{})
	var once sync.Once
	key := func(r kafka.Record[int]) kafka.RecordKey {
		if r.Offset == 1 {
			once.Do(func() { close(taken1) })
		}
		return kafka.ByKey(r)
	}
	var mu sync.Mutex
	var calls []string
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(2), kafka.CommitInterval(10*time.Millisecond), l.option())
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	work := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		mu.Lock()
		calls = append(calls, fmt.Sprintf("%d#%d", r.Offset, r.Attempts))
		mu.Unlock()
		if r.Offset == 0 && r.Attempts == 1 {
			select {
			case <-taken1:
			case <-ctx.Done():
				return r, ctx.Err()
			}
			return r, errors.New("review64: first try fails")
		}
		return r, nil
	}, stage.Workers(4), stage.KeyBy(key), stage.OnError(stage.Forward))
	wantForwarded(t, settleUntil(t, l, work, n, drain), 1)
	mu.Lock()
	got := slices.Clone(calls)
	mu.Unlock()
	i1, iRetry := slices.Index(got, "1#1"), slices.Index(got, "0#2")
	if len(got) != n+1 || got[0] != "0#1" || i1 != 1 || iRetry < 0 {
		t.Fatalf("calls %v: want 0#1, then 1#1 (taken before the retry), and one retry 0#2 among %d calls", got, n+1)
	}
	checkCommitted(t, addrs, "g", "jobs")
	l.verify(t)
}

// settleUntil runs a sink.ForEach over work that settles each record in l
// and drains the run (drain: Until's stop) once n records were settled; it
// returns the run's error, or fails t if the run hangs.
func settleUntil(t *testing.T, l *ledger, work stage.Stream[kafka.Record[int]], n int, drain func()) error {
	t.Helper()
	done := 0
	return waitErr(t, "the run", goRun(func() error {
		return sink.ForEach(context.Background(), work, func(_ context.Context, r kafka.Record[int]) error {
			l.settleRec(r)
			if done++; done == n {
				drain()
			}
			return nil
		})
	}))
}

// wantForwarded fails t unless err is a *sink.ForwardedError of count
// forwarded errors (the failed tries of a stage under stage.Forward).
func wantForwarded(t *testing.T, err error, count int) {
	t.Helper()
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != count {
		t.Errorf("the run returned %v, want a *sink.ForwardedError of %d failed tries", err, count)
	}
}
