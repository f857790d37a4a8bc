package stage_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type tagged struct{ branch, v int }

func tag(branch int) func(context.Context, int) (tagged, error) {
	return func(_ context.Context, v int) (tagged, error) { return tagged{branch, v}, nil }
}

func TestTeeEveryBranchSeesEveryItemInOrder(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		b := stage.Tee(source.Slice(ints(200)), n)
		var streams []stage.Stream[tagged]
		for i, s := range b {
			streams = append(streams, stage.Map(s, tag(i), stage.Workers(1)))
		}
		for run := range 2 {
			got := make([][]int, n)
			err := stage.Run(context.Background(), stage.Merge(streams...), func(_ context.Context, v tagged, err error) error {
				got[v.branch] = append(got[v.branch], v.v)
				return err
			})
			if err != nil {
				t.Fatalf("n %d, run %d: err = %v", n, run, err)
			}
			for i := range got {
				if !slices.Equal(got[i], ints(200)) {
					t.Fatalf("n %d, run %d: branch %d got %v, want 0..199 in order", n, run, i, got[i])
				}
			}
		}
	}
}

func TestTeeForwardsErrorsToEveryBranch(t *testing.T) {
	s := stage.Map(source.Slice(ints(10)), failMultiplesOf3, stage.Workers(1), stage.OnError(stage.Forward))
	b := stage.Tee(s, 2)
	n, err := sink.Count(context.Background(), stage.Merge(b[0], b[1]))
	joined, ok := err.(interface{ Unwrap() []error })
	if n != 12 || !ok || len(joined.Unwrap()) != 8 {
		t.Fatalf("%d items, err %v; want 12 items and 8 forwarded errors (4 per branch)", n, err)
	}
}

func TestTeeBranchNotConsumedFailsTheRun(t *testing.T) {
	var produced atomic.Int64
	src := source.Func(func(context.Context) (int, error) { produced.Add(1); return 1, nil })
	b := stage.Tee(src, 3)
	_, err := sink.Count(context.Background(), stage.Merge(b[0], b[2]))
	if err == nil || !strings.Contains(err.Error(), "branch 1 of 3") || produced.Load() != 0 {
		t.Fatalf("err = %v after %d items; want an error naming branch 1, and no item taken", err, produced.Load())
	}
}

func TestTeeSharedNodeStillCatchesDoubleUse(t *testing.T) {
	src := source.Slice(ints(3))
	b := stage.Tee(src, 2)
	if msg := panicMessage(func() { stage.Merge(b[0], src) }); !strings.Contains(msg, "share") {
		t.Fatalf("Merge of a branch and the tee's input: panic %q, want the shared-stream panic", msg)
	}
	if msg := panicMessage(func() { stage.Merge(b[0], b[0]) }); !strings.Contains(msg, "share") {
		t.Fatalf("Merge of a branch with itself: panic %q, want the shared-stream panic", msg)
	}
	if msg := panicMessage(func() { stage.Merge(b[0], b[1]) }); msg != "" {
		t.Fatalf("Merge of two branches panicked: %q", msg)
	}
}

func TestTeeSlowestBranchSetsThePace(t *testing.T) {
	const bound = 8
	var produced, slowGot atomic.Int64
	var over atomic.Int64
	src := source.Func(func(context.Context) (int, error) {
		if p := produced.Add(1); p > 500 {
			return 0, errEOF
		} else if p-slowGot.Load() > bound {
			over.Store(p - slowGot.Load())
		}
		return 1, nil
	})
	b := stage.Tee(src, 2)
	slow := stage.Map(b[1], func(_ context.Context, v int) (tagged, error) {
		time.Sleep(20 * time.Microsecond) // slow, not a synchronisation
		return tagged{1, v}, nil
	}, stage.Workers(1))
	hangGuard(t, func() {
		err := stage.Run(context.Background(), stage.Merge(stage.Map(b[0], tag(0), stage.Workers(1)), slow), func(_ context.Context, v tagged, err error) error {
			if v.branch == 1 {
				slowGot.Add(1)
			}
			return err
		})
		if err != nil {
			t.Errorf("err = %v", err)
		}
	})
	if over.Load() != 0 || slowGot.Load() != 500 {
		t.Fatalf("the source ran %d items ahead of the slow branch (bound %d); it got %d of 500", over.Load(), bound, slowGot.Load())
	}
}

func TestTeeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := stage.Tee(source.Func(func(context.Context) (int, error) { return 1, nil }), 2)
	hangGuard(t, func() {
		n := 0
		err := stage.Run(ctx, stage.Merge(b...), func(context.Context, int, error) error {
			if n++; n == 100 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}
