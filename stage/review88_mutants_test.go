package stage_test

// review88: tests from a mutation-testing round on package stage. Each
// pins a documented promise that no earlier test checked (a mutant of the
// library that breaks it passed the whole suite). Every verdict depends
// only on the order of events: durations are hang watchdogs.

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/acktest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r88ackSource is an AckSource of the items 0, 1, ..., len(acks)-1; item
// i carries acks[i].
func r88ackSource(acks []*acktest.Recorder) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == len(acks) {
				return 0, nil, io.EOF
			}
			i++
			return i - 1, acks[i-1], nil
		}, nil
	})
}

// Ack: "Done is not called when the run ended before the item's fate was
// known: ... a cancelled context, ... or whose ... sink callback, once the
// run was ending, returned an error that says so (the context's error or
// the run's cause ...): ... the commit was cut short"; and "an item in a
// [Batch] is done when its batch is". A batch whose commit was cut short
// leaves every item of it unacknowledged.
func TestReview88BatchCutShortLeavesItsItemsUnacknowledged(t *testing.T) {
	acks := []*acktest.Recorder{{}, {}, {}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	var err error
	runcheck.Run(t, "batch", func() {
		err = sink.ForEach(ctx, stage.Batch(r88ackSource(acks), len(acks), 0), func(ctx context.Context, _ []int) error {
			calls++
			cancel()
			return ctx.Err()
		})
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ForEach: %v, want context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("the callback got %d batches, want 1", calls)
	}
	for i, a := range acks {
		if fates := a.Told(); len(fates) != 0 {
			t.Errorf("item %d of the batch whose commit was cut short was told %v, want no Done", i, fates)
		}
	}
}

// r88teeParked reports whether a Tee's mover goroutine is parked waiting
// for room in a branch.
func r88teeParked() bool {
	_, all := runcheck.Goroutines()
	for _, st := range all {
		head, _, _ := strings.Cut(st, "\n")
		if strings.Contains(head, "[sync.Cond.Wait") && strings.Contains(st, "stage.(*teeRun[...]).move(") {
			return true
		}
	}
	return false
}

// Tee: "One goroutine moves the items on; each branch holds at most one
// item its consumer has not taken, so the slowest branch sets the pace and
// nothing is buffered without bound." Branch 1's consumer, a Map of one
// worker, is stuck in its call on item 0, while branch 0 is consumed as
// fast as it comes. Once the mover waits for room in branch 1, the source
// has produced item 0 (taken by the stuck call), item 1 (held by branch 1)
// and item 2 (in the mover's hands): three, not more.
func TestReview88TeeBranchHoldsOneItem(t *testing.T) {
	const n = 10
	var pulls, received atomic.Int64
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, io.EOF
			}
			i++
			pulls.Add(1)
			return i - 1, nil
		}, nil
	})
	b := stage.Tee(src, 2)
	started, gate := make(chan struct{}), make(chan struct{})
	stuck := stage.Map(b[1], func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			close(started)
			select {
			case <-gate:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return -1, nil
	}, stage.Workers(1), stage.Buffer(1))
	fast := stage.Map(b[0], func(_ context.Context, v int) (int, error) {
		received.Add(1)
		return v, nil
	})
	var got int
	var err error
	var sawPulls int64
	runcheck.Run(t, "tee", func() {
		go func() {
			defer close(gate)
			<-started
			// Settled: the mover waits for room, and every item it pulled
			// went through branch 0, so the room it waits for is branch 1's.
			// (Polling only finds the moment; a hang watchdog bounds it.)
			deadline := time.Now().Add(runcheck.Watchdog / 2)
			for time.Now().Before(deadline) {
				p := pulls.Load()
				if r88teeParked() && received.Load() == p && pulls.Load() == p {
					sawPulls = p
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		got, err = sink.Count(context.Background(), stage.Merge(fast, stuck))
	})
	if err != nil || got != 2*n {
		t.Errorf("Count: %d, %v; want %d, nil", got, err, 2*n)
	}
	switch {
	case sawPulls == 0:
		t.Errorf("the Tee's mover never settled waiting for branch 1")
	case sawPulls > 3:
		t.Errorf("with branch 1's consumer stuck on item 0, the source produced %d items: branch 1 holds more than one item its consumer has not taken", sawPulls)
	}
}

// Source: "next may wait for outside events (a channel, a socket, a queue)
// as long as it likes: a stage of more than one worker calls it from
// goroutines of its own, so that no consumer waits in next while outputs
// wait for it"; NeverWaits: "Without NeverWaits every source is treated as
// one that may wait, which is always safe." A Merge of a channel source is
// a stream that may wait: the cheap Map of two workers over it never
// leaves the sink's goroutine waiting for the next input while an output
// is ready. Each input is sent only once the output of the one before has
// reached the sink, so an output held behind such a wait would never come.
func TestReview88MergeOfAWaitingSourceMayWait(t *testing.T) {
	const n = 2000
	ch := make(chan int)
	out := make(chan int)
	var err error
	runcheck.Run(t, "merge", func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			defer close(ch)
			for i := range n {
				select {
				case ch <- i:
				case <-ctx.Done():
					return
				}
				select {
				case <-out:
				case <-time.After(runcheck.Watchdog / 2): // a hang watchdog, within runcheck.Run's
					t.Errorf("the output of input %d never reached the sink before the next input", i)
					cancel()
					return
				}
			}
		}()
		in := stage.Merge(source.Chan(ch))
		err = sink.ForEach(ctx, stage.Map(in, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2)), func(ctx context.Context, _ int) error {
			select {
			case out <- 0:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	})
	if err != nil {
		t.Errorf("ForEach: %v", err)
	}
}
