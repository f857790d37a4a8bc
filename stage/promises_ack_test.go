package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// settlements records every Done call of the acknowledgements of a source of
// 0..n-1: how many times each item was settled, and with which error.
type settlements struct {
	mu   sync.Mutex
	errs map[int][]error
}

type settlement struct {
	s  *settlements
	id int
}

func (a settlement) Done(err error) {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	a.s.errs[a.id] = append(a.s.errs[a.id], err)
}

func newSettlements() *settlements { return &settlements{errs: map[int][]error{}} }

// source is an AckSource of 0..n-1, each item with its own acknowledgement.
func (s *settlements) source(n int) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == n {
				return 0, nil, errEOF
			}
			i++
			return i - 1, settlement{s, i - 1}, nil
		}, nil
	})
}

// fate reports what became of item id: "none" (never settled), "ok" (settled
// nil) or "err" (settled with an error, returned too). An item settled more
// than once is an error of its own.
func (s *settlements) fate(id int) (string, error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.errs[id]
	switch {
	case len(d) > 1:
		return "", nil, fmt.Errorf("item %d: Done called %d times (%v)", id, len(d), d)
	case len(d) == 0:
		return "none", nil, nil
	case d[0] == nil:
		return "ok", nil, nil
	}
	return "err", d[0], nil
}

// TestAckUnbatchAfterANamedStageOverBatches pins: an Unbatch that follows a
// stage over whole batches (not a Batch itself, whatever that stage is named)
// does not hand batch members' acknowledgements to elements by position. When a
// stage rearranges a batch, an item is settled nil only once every output its
// batch led to was committed, and a failed commit of any of them settles every
// member with the commit's error.
func TestAckUnbatchAfterANamedStageOverBatches(t *testing.T) {
	errDB := errors.New("db down")
	for _, name := range []string{"batch", "rearrange"} {
		t.Run("stage named "+name, func(t *testing.T) {
			a := newSettlements()
			b := stage.Batch(a.source(3), 3, time.Hour)
			// The stage over the batch keeps the data of items 2 and 0, in that order.
			b = stage.Map(b, func(_ context.Context, batch []int) ([]int, error) {
				return []int{batch[2], batch[0]}, nil
			}, stage.Name(name), stage.Workers(1))
			var committed []int
			err := sink.ForEach(context.Background(), stage.Unbatch(b), func(_ context.Context, x int) error {
				if x == 0 {
					return errDB // item 0's data is never committed
				}
				committed = append(committed, x)
				return nil
			})
			if !errors.Is(err, errDB) {
				t.Fatalf("err = %v, want the failed commit", err)
			}
			if !slices.Equal(committed, []int{2}) {
				t.Fatalf("committed %v, want [2]", committed)
			}
			// One batch, one of its outputs failed to commit: no member may be
			// settled nil, and each is settled with the commit's error.
			for id := range 3 {
				f, e, dup := a.fate(id)
				if dup != nil {
					t.Fatal(dup)
				}
				if f == "ok" {
					t.Errorf("item %d settled nil although only item 2's data was committed and its batch's other output failed", id)
				} else if f != "err" || !errors.Is(e, errDB) {
					t.Errorf("item %d: %s (%v), want settled with the failed commit's error", id, f, e)
				}
			}
		})
	}
}

// TestAckForwardedErrorThroughBatchAndUnbatch pins: an item whose forwarded
// error reaches the sink is settled with that error, also when the error
// passed through a Batch and the Unbatch straight after it; every other item,
// committed, is settled nil.
func TestAckForwardedErrorThroughBatchAndUnbatch(t *testing.T) {
	const n = 6
	a := newSettlements()
	s := stage.Batch(a.source(n), 1, time.Hour)
	s = stage.Map(s, func(_ context.Context, b []int) ([]int, error) { return b, nil }, stage.Workers(1))
	items := stage.Unbatch(s)
	items = stage.Map(items, func(_ context.Context, x int) (int, error) {
		if x == 2 {
			return 0, errBoom
		}
		return x, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	items = stage.Unbatch(stage.Batch(items, 2, time.Hour))
	var forwarded []error
	var committed []int
	err := stage.Run(context.Background(), items, func(_ context.Context, x int, err error) error {
		if err != nil {
			forwarded = append(forwarded, err)
			return nil
		}
		committed = append(committed, x)
		return nil
	})
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if len(forwarded) != 1 || !errors.Is(forwarded[0], errBoom) {
		t.Fatalf("forwarded %v, want item 2's error", forwarded)
	}
	for id := range n {
		f, e, dup := a.fate(id)
		if dup != nil {
			t.Fatal(dup)
		}
		want := "ok"
		if id == 2 {
			want = "err"
		}
		if f != want {
			t.Errorf("item %d: %s, want %s", id, f, want)
		}
		if id == 2 && f == "err" && !errors.Is(e, errBoom) {
			t.Errorf("item 2 settled with %v, want its forwarded error", e)
		}
	}
}

// checkCommitFates checks, after a run, the promise of Ack for every item of
// a source of n: an item whose commit succeeded is settled nil, an item whose
// commit failed is settled with the commit's error, and an item that was not
// committed is never settled nil; no item is settled twice.
func checkCommitFates(a *settlements, n int, committed map[int]bool, failed map[int]error) error {
	for id := range n {
		f, e, dup := a.fate(id)
		if dup != nil {
			return dup
		}
		switch {
		case committed[id] && f != "ok":
			return fmt.Errorf("item %d was committed but is %s (%v), want settled nil", id, f, e)
		case failed[id] != nil && (f != "err" || !errors.Is(e, failed[id])):
			return fmt.Errorf("item %d failed its commit with %v but is %s (%v), want settled with that error", id, failed[id], f, e)
		case !committed[id] && f == "ok":
			return fmt.Errorf("item %d settled nil but was never committed", id)
		}
	}
	return nil
}

// TestAckFailedCommitIsAlwaysSettled pins: when the sink's callback fails for
// an item (the commit failed), that item is settled with the callback's error,
// and every item committed before is settled nil, however the workers and the
// sink interleave as the run ends. The scenario runs many times; any run that
// breaks the promise fails the test.
func TestAckFailedCommitIsAlwaysSettled(t *testing.T) {
	const runs, n = 1000, 20
	errDB := errors.New("db down")
	bad := 0
	var first error
	for range runs {
		a := newSettlements()
		committed := map[int]bool{}
		failed := map[int]error{}
		s := stage.Map(a.source(n), double, stage.Workers(1))
		err := sink.ForEach(context.Background(), s, func(_ context.Context, x int) error {
			if x/2 == 5 {
				failed[5] = errDB
				return errDB
			}
			committed[x/2] = true
			return nil
		})
		if !errors.Is(err, errDB) {
			t.Fatalf("err = %v, want the failed commit", err)
		}
		if e := checkCommitFates(a, n, committed, failed); e != nil {
			if bad++; first == nil {
				first = e
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d runs broke the promise; first: %v", bad, runs, first)
	}
}

// TestAckCommittedBeforeCancelIsSettled pins: an item whose commit succeeded
// is settled nil even if the run is cancelled right after (the cancellation
// comes from the caller, after the callback returned nil for it, while the
// stage's worker may still hold the item). The scenario runs many times; any
// run that breaks the promise fails the test.
func TestAckCommittedBeforeCancelIsSettled(t *testing.T) {
	const runs, n = 200, 20
	bad := 0
	var first error
	for range runs {
		a := newSettlements()
		var mu sync.Mutex
		committed := map[int]bool{}
		ctx, cancel := context.WithCancel(context.Background())
		justCommitted := make(chan struct{})
		cancelled := make(chan struct{})
		go func() {
			defer close(cancelled)
			<-justCommitted
			cancel()
		}()
		s := stage.Map(a.source(n), double, stage.Workers(1))
		err := stage.Run(ctx, s, func(_ context.Context, x int, err error) error {
			if err != nil {
				return err
			}
			mu.Lock()
			committed[x/2] = true
			mu.Unlock()
			if x/2 == 3 {
				close(justCommitted) // the caller cancels once this commit is done
			}
			return nil
		})
		<-cancelled
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		mu.Lock()
		e := checkCommitFates(a, n, committed, nil)
		mu.Unlock()
		if e != nil {
			if bad++; first == nil {
				first = e
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d runs broke the promise; first: %v", bad, runs, first)
	}
}

// holdAfterEmit is a stage function over acknowledged items that emits its
// item and then, for the item hold, keeps its worker until the run ends: the
// item's output is in the sink's hands while the worker still holds the item.
func holdAfterEmit(hold int, before func(x int)) func(ctx context.Context, x int, emit func(int) bool) error {
	return func(ctx context.Context, x int, emit func(int) bool) error {
		if before != nil {
			before(x)
		}
		if !emit(x) {
			return ctx.Err()
		}
		if x == hold {
			<-ctx.Done()
		}
		return nil
	}
}

// TestAckFailedCommitWhileTheWorkerHoldsTheItem pins: an item whose commit
// failed is settled with the commit's error even when the worker that
// produced it only lets go of it after the run was cancelled by that failure
// (the stage function emits the item, then waits for the run's end).
func TestAckFailedCommitWhileTheWorkerHoldsTheItem(t *testing.T) {
	const n = 10
	errDB := errors.New("db down")
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			a := newSettlements()
			committed := map[int]bool{}
			s := stage.Apply(a.source(n), holdAfterEmit(5, nil), stage.Workers(workers))
			var err error
			hangGuard(t, func() {
				err = sink.ForEach(context.Background(), s, func(_ context.Context, x int) error {
					if x == 5 {
						return errDB
					}
					committed[x] = true
					return nil
				})
			})
			if !errors.Is(err, errDB) {
				t.Fatalf("err = %v, want the failed commit", err)
			}
			if e := checkCommitFates(a, n, committed, map[int]error{5: errDB}); e != nil {
				t.Fatal(e)
			}
		})
	}
}

// TestAckCommittedWhileTheWorkerHoldsTheItem pins: an item whose commit
// succeeded is settled nil even when the run is cancelled afterwards while the
// worker that produced it still holds it. Order, by events: item 3 is emitted
// and committed; only then is item 4 emitted, and its callback cancels the
// run; item 3's worker lets go of it only once the run is cancelled.
func TestAckCommittedWhileTheWorkerHoldsTheItem(t *testing.T) {
	const n = 10
	a := newSettlements()
	committed := map[int]bool{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	commit3 := make(chan struct{})
	s := stage.Apply(a.source(n), holdAfterEmit(3, func(x int) {
		if x == 4 {
			<-commit3 // item 4 leaves only after item 3 was committed
		}
	}), stage.Workers(4))
	var err error
	hangGuard(t, func() {
		err = stage.Run(ctx, s, func(_ context.Context, x int, err error) error {
			if err != nil {
				return err
			}
			if x == 4 {
				cancel() // the caller aborts, after item 3's commit
				return nil
			}
			committed[x] = true
			if x == 3 {
				close(commit3)
			}
			return nil
		})
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the cancellation", err)
	}
	if !committed[3] {
		t.Fatal("item 3 was not committed")
	}
	// Item 4's callback returned nil after cancelling: it may be settled nil
	// or left alone, but it was not a failed commit.
	if f, e, _ := a.fate(4); f == "err" {
		t.Errorf("item 4 settled with %v, but its commit did not fail", e)
	}
	if f, _, _ := a.fate(4); f == "ok" {
		committed[4] = true
	}
	if e := checkCommitFates(a, n, committed, nil); e != nil {
		t.Fatal(e)
	}
}
