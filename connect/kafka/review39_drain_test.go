package kafka_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// doc.go, Offsets: "A record that fails while the run drains (stage.Until)
// is not tried again ... The source adds no error of its own for it ...
// (A record that fails its last attempt then goes to the dead-letter
// topic, or fails the run without one, as at any time.)"
//
// The record that fails during the drain is on its last attempt
// (Attempts(1)): "nodlq": without a dead-letter topic, the run fails with a
// *stage.SourceError beside the sink's *sink.ForwardedError, and the record
// stays uncommitted; "dlq": with one, it is dead-lettered and the group
// commits past it. (Found by review39 against the doc as it was, which
// said the source adds no error: the doc now states the exception.)
func TestReview39LastAttemptFailingDuringADrain(t *testing.T) {
	for _, mode := range []string{"nodlq", "dlq"} {
		t.Run(mode, func(t *testing.T) { r39LastAttemptDuringDrain(t, mode) })
	}
}

func r39LastAttemptDuringDrain(t *testing.T, mode string) {
	const n, x = 10, 5
	_, addrs := newCluster(t, 1, "jobs", "dlq")
	produceTo(t, addrs, "jobs", 0, 0, n)
	opts := []kafka.Option{kafka.Attempts(1), kafka.CommitInterval(time.Hour)}
	if mode == "dlq" {
		opts = append(opts, kafka.DeadLetter("dlq"))
	}
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, opts...)
	release := make(chan struct{})
	held := make(chan struct{})
	boom := errors.New("boom")
	var done atomic.Int32
	allDone := make(chan struct{})
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	work := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == x {
			close(held)
			select {
			case <-release:
			case <-ctx.Done():
				return r, ctx.Err()
			}
			return r, boom
		}
		return r, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), work, func(context.Context, kafka.Record[int]) error {
			if done.Add(1) == n-1 {
				close(allDone)
			}
			return nil
		})
	})
	for _, ch := range []chan struct{}{held, allDone} {
		select {
		case <-ch:
		case err := <-errc:
			t.Fatalf("the run ended early: %v", err)
		case <-waitHung():
			t.Fatal("hung")
		}
	}
	drain()
	close(release)
	err := waitErr(t, "the drained run", errc)
	t.Logf("run (%T): %v", err, err)
	var fe *sink.ForwardedError
	var se *stage.SourceError
	if !errors.As(err, &fe) || !errors.Is(err, boom) {
		t.Errorf("run returned %v, want the sink's *sink.ForwardedError of the failure", err)
	}
	want := int64(n) // dead-lettered: settled
	if mode == "nodlq" {
		want = x
		if !errors.As(err, &se) {
			t.Errorf("run returned %v, want a *stage.SourceError too: the record failed its last attempt and there is no dead-letter topic", err)
		}
	} else if errors.As(err, &se) {
		t.Errorf("the source added an error of its own for a record it dead-lettered: %v", se)
	}
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got != want {
		t.Errorf("committed %d after the drain, want %d", got, want)
	}
}
