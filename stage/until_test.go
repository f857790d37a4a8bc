package stage_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// endless feeds 0, 1, 2, ... into the channel it returns until ctx is done,
// and counts the values received from it; the function it returns waits
// for the feeder to exit, after which sent is final (a value received may
// be counted a moment after the receive).
func endless(ctx context.Context, sent *atomic.Int64) (<-chan int, func()) {
	ch := make(chan int)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case ch <- i:
				sent.Add(1)
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, func() { <-done }
}

func TestUntilDrainsWhatWasTaken(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			feed, stopFeed := context.WithCancel(context.Background())
			var sent atomic.Int64
			ch, fed := endless(feed, &sent)
			stop, drain := context.WithCancel(context.Background())
			s := stage.Until(source.Chan(ch), stop)
			s = stage.Map(s, double, m.opts()...)
			batches := stage.Batch(s, 7, 0)
			var got []int
			hangGuard(t, func() {
				err := stage.Run(context.Background(), batches, func(_ context.Context, b []int, err error) error {
					if got = append(got, b...); len(got) >= 30 {
						drain()
					}
					return err
				})
				if err != nil {
					t.Errorf("err = %v, want nil after a drain", err)
				}
			})
			stopFeed()
			fed()
			// Everything the source took arrived: 0..k-1, doubled.
			slices.Sort(got)
			k := int(sent.Load())
			want := make([]int, k)
			for i := range want {
				want[i] = 2 * i
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %d items, the source took %d: %v", len(got), k, got)
			}
		})
	}
}

func TestCancelAbortsWhereUntilDrains(t *testing.T) {
	feed, stopFeed := context.WithCancel(context.Background())
	defer stopFeed()
	var sent atomic.Int64
	ch, _ := endless(feed, &sent)
	ctx, cancel := context.WithCancel(context.Background())
	s := stage.Until(source.Chan(ch), context.Background())
	hangGuard(t, func() {
		n := 0
		err := stage.Run(ctx, stage.Batch(stage.Map(s, double), 7, 0), func(context.Context, []int, error) error {
			if n++; n == 3 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestUntilStoppedBeforeTheRun(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	drain()
	s := stage.Map(stage.Until(source.Slice(ints(100)), stop), double)
	for run := range 2 {
		n, err := sink.Count(context.Background(), s)
		if n != 0 || err != nil {
			t.Fatalf("run %d: %d, %v; want 0, nil", run, n, err)
		}
	}
}

func TestUntilDrainsOnlyItsBranch(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	var sent atomic.Int64
	feed, stopFeed := context.WithCancel(context.Background())
	defer stopFeed()
	ch, fed := endless(feed, &sent)
	drained := stage.Until(source.Chan(ch), stop)
	rest := source.Slice(ints(1000))
	var fromRest, fromDrained int
	hangGuard(t, func() {
		err := stage.Run(context.Background(), stage.Merge(stage.Map(drained, func(_ context.Context, x int) (int, error) { return -1, nil }), rest),
			func(_ context.Context, v int, err error) error {
				if v < 0 {
					if fromDrained++; fromDrained == 10 {
						drain()
					}
				} else {
					fromRest++
				}
				return err
			})
		if err != nil {
			t.Errorf("err = %v, want nil", err)
		}
	})
	stopFeed()
	fed()
	if fromRest != 1000 || int64(fromDrained) != sent.Load() {
		t.Fatalf("%d from the other branch (want 1000), %d from the drained one (its source took %d)", fromRest, fromDrained, sent.Load())
	}
}
