package stage_test

// Adversarial tests of the composition primitives (Tee, Merge, Until, Batch,
// Unbatch, KeyBy, Ordered, Buffer, Apply/FlatMap, Run), written from the
// documentation only: how they combine with each other, with
// acknowledgements (AckSource) and with error policies. Gates and channels
// decide the order of events; durations are only hang watchdogs (or random
// jitter whose value no assertion depends on).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// rcWatch is the only duration these tests use to wait: a hang watchdog.
const rcWatch = 30 * time.Second

// rcNexts is how many items an rvAcks source handed out.
func rcNexts(a *rvAcks) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.nexts
}

// rcJitter shuffles the order in which concurrent calls finish. No assertion
// depends on what it does.
func rcJitter() {
	switch rand.IntN(4) {
	case 0:
		time.Sleep(time.Duration(rand.IntN(40)) * time.Microsecond)
	case 1:
		for range rand.IntN(20) {
			runtime.Gosched()
		}
	}
}

// rcBlockUntilCancelled is a branch function that holds every item until the
// run is cancelled (the watchdog reports a hang instead of waiting for ever).
func rcBlockUntilCancelled(ctx context.Context, _ int) (tagged, error) {
	select {
	case <-ctx.Done():
		return tagged{}, ctx.Err()
	case <-time.After(rcWatch):
		return tagged{}, errors.New("watchdog: the run was never cancelled")
	}
}

// TestReviewComposeTeeAckWaitsForEveryBranch attacks: "An item that fans out
// (FlatMap, Tee) is done when all its outputs are"; a copy dropped on purpose
// (a Filter on one branch) counts as done. Branch 1 holds item 0 at a gate
// while branch 0 commits items 0 and 1; when the sink gets branch 0's item 1,
// item 0 must still be unsettled. Then everything commits: every item nil,
// exactly once.
func TestReviewComposeTeeAckWaitsForEveryBranch(t *testing.T) {
	a := newRvAcks()
	gate := make(chan struct{})
	b := stage.Tee(a.source(ints(5)), 3)
	b0 := stage.Map(b[0], tag(0), stage.Workers(1))
	b1 := stage.Map(b[1], func(ctx context.Context, v int) (tagged, error) {
		if v == 0 {
			select {
			case <-gate:
			case <-ctx.Done():
				return tagged{}, ctx.Err()
			}
		}
		return tagged{1, v}, nil
	}, stage.Workers(1))
	kept := stage.Filter(b[2], func(_ context.Context, v int) (bool, error) { return v != 0, nil }, stage.Workers(1))
	b2 := stage.Map(kept, tag(2), stage.Workers(1))
	var early string
	var err error
	hangGuard(t, func() {
		err = stage.Run(context.Background(), stage.Merge(b0, b1, b2), func(_ context.Context, v tagged, err error) error {
			if err != nil {
				return err
			}
			if v.branch == 0 && v.v == 1 {
				// Branch 0 committed item 0 before this (one worker, in
				// order); branch 1's copy of item 0 waits at the gate.
				early = a.fate(0)
				close(gate)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if early != "none" {
		t.Errorf("item 0 was settled (%s) while branch 1's copy of it was still held", early)
	}
	for id := range 5 {
		if f := a.fate(id); f != "nil" {
			t.Errorf("item %d: %s, want nil once (every copy committed or dropped on purpose)", id, f)
		}
	}
}

// TestReviewComposeTeeForwardedErrorSettlesAtOnce attacks: "Done(err) as soon
// as its way failed ... a forwarded *Error it led to reached the sink ...
// Outputs of it still on their way do not change its fate." Branch 1 forwards
// an error for item 0; branch 0's copy of item 0 waits until item 0 is
// settled. If the item is settled only once every copy is done, branch 0
// waits for the watchdog and the test fails.
func TestReviewComposeTeeForwardedErrorSettlesAtOnce(t *testing.T) {
	a := newRvAcks()
	errX := errors.New("branch 1 rejects item 0")
	b := stage.Tee(a.source(ints(3)), 2)
	var stuck atomic.Bool
	b0 := stage.Map(b[0], func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			select {
			case <-a.done(0):
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(rcWatch):
				stuck.Store(true)
			}
		}
		return v, nil
	}, stage.Workers(1))
	b1 := stage.Map(b[1], func(_ context.Context, v int) (int, error) {
		if v == 0 {
			return 0, errX
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var values, forwarded int
	var err error
	hangGuard(t, func() {
		err = stage.Run(context.Background(), stage.Merge(b0, b1), func(_ context.Context, _ int, err error) error {
			if err != nil {
				forwarded++
			} else {
				values++
			}
			return nil
		})
	})
	if stuck.Load() {
		t.Fatalf("item 0 was not settled after its forwarded error reached the sink, while its other copy was on its way (fate now %s)", a.fate(0))
	}
	if err != nil || values != 5 || forwarded != 1 {
		t.Fatalf("Run = %v with %d values and %d forwarded errors; want nil, 5, 1", err, values, forwarded)
	}
	if a.count(0) != 1 || !errors.Is(a.err(0), errX) {
		t.Errorf("item 0: %s, want settled once with the forwarded error", a.fate(0))
	}
	for id := 1; id < 3; id++ {
		if f := a.fate(id); f != "nil" {
			t.Errorf("item %d: %s, want nil", id, f)
		}
	}
}

// TestReviewComposeTeeCommitFailsOnOneBranch attacks: "one whose commit
// failed is told its error" whatever ends the run, even when another copy of
// the item never reaches the sink (branch 1 holds it until the run is
// cancelled); items whose copies were never committed stay unsettled.
func TestReviewComposeTeeCommitFailsOnOneBranch(t *testing.T) {
	a := newRvAcks()
	errC := errors.New("commit of branch 0's item 0 failed")
	b := stage.Tee(a.source(ints(5)), 2)
	b0 := stage.Map(b[0], tag(0), stage.Workers(1))
	b1 := stage.Map(b[1], rcBlockUntilCancelled, stage.Workers(1))
	var err error
	var calls []tagged
	hangGuard(t, func() {
		err = stage.Run(context.Background(), stage.Merge(b0, b1), func(_ context.Context, v tagged, err error) error {
			calls = append(calls, v)
			if err != nil {
				return err
			}
			if v == (tagged{0, 0}) {
				return errC
			}
			return nil
		})
	})
	if !errors.Is(err, errC) || len(calls) != 1 {
		t.Fatalf("Run = %v after %v; want the commit error after one call", err, calls)
	}
	if a.count(0) != 1 || !errors.Is(a.err(0), errC) {
		t.Errorf("item 0: %s, want settled once with the failed commit's error", a.fate(0))
	}
	for id := 1; id < 5; id++ {
		if f := a.fate(id); f != "none" {
			t.Errorf("item %d: %s, want none (never committed)", id, f)
		}
	}
}

// TestReviewComposeErrStopCommitsOnlyWhatItSaw attacks: an item for which the
// callback returned ErrStop is committed; "an item whose outputs were all
// committed is told nil" and an item whose fate is not known is not told.
// Through a Tee, ErrStop at one copy commits one of two outputs: the item
// must stay unsettled. Straight after a Batch, Unbatch settles each element on
// its own: ErrStop at element 1 settles items 0 and 1 nil, and leaves the
// batch's other members unsettled.
func TestReviewComposeErrStopCommitsOnlyWhatItSaw(t *testing.T) {
	t.Run("tee", func(t *testing.T) {
		a := newRvAcks()
		b := stage.Tee(a.source(ints(4)), 2)
		b0 := stage.Map(b[0], tag(0), stage.Workers(1))
		b1 := stage.Map(b[1], rcBlockUntilCancelled, stage.Workers(1))
		var err error
		var calls []tagged
		hangGuard(t, func() {
			err = stage.Run(context.Background(), stage.Merge(b0, b1), func(_ context.Context, v tagged, err error) error {
				calls = append(calls, v)
				return stage.ErrStop
			})
		})
		if err != nil || len(calls) != 1 || calls[0] != (tagged{0, 0}) {
			t.Fatalf("Run = %v after %v; want nil after branch 0's item 0", err, calls)
		}
		if f := a.fate(0); f != "none" {
			t.Errorf("item 0: %s, want none: only one of its two copies was committed", f)
		}
	})
	t.Run("unbatch", func(t *testing.T) {
		a := newRvAcks()
		s := stage.Unbatch(stage.Batch(a.source(ints(8)), 4, time.Hour))
		var err error
		var seen []int
		hangGuard(t, func() {
			err = stage.Run(context.Background(), s, func(_ context.Context, v int, err error) error {
				seen = append(seen, v)
				if v == 1 {
					return stage.ErrStop
				}
				return err
			})
		})
		if err != nil || !slices.Equal(seen, []int{0, 1}) {
			t.Fatalf("Run = %v after %v; want nil after 0, 1", err, seen)
		}
		for id := range 8 {
			want := "none"
			if id < 2 {
				want = "nil"
			}
			if f := a.fate(id); f != want {
				t.Errorf("item %d: %s, want %s", id, f, want)
			}
		}
	})
}

// TestReviewComposeBatchFailFastDropsPartialBatch attacks Batch's "A FailFast
// error or a cancelled run drops the partial batch": the batch [0..4] never
// fills (size 100, no timeout), so nothing may reach the sink when item 5
// fails the run; its members were never committed, so they stay unsettled,
// and item 5 is told the error.
func TestReviewComposeBatchFailFastDropsPartialBatch(t *testing.T) {
	errX := errors.New("item 5 fails")
	for run := range 20 {
		a := newRvAcks()
		m := stage.Map(a.source(ints(10)), func(_ context.Context, x int) (int, error) {
			if x == 5 {
				return 0, errX
			}
			return x, nil
		}, stage.Workers(1))
		var got [][]int
		var err error
		hangGuard(t, func() {
			err = stage.Run(context.Background(), stage.Batch(m, 100, 0), func(_ context.Context, b []int, err error) error {
				got = append(got, b)
				return err
			})
		})
		if !errors.Is(err, errX) || len(got) != 0 {
			t.Fatalf("run %d: Run = %v, the sink got %v; want the item error and no batch (the partial one is dropped)", run, err, got)
		}
		if a.count(5) != 1 || !errors.Is(a.err(5), errX) {
			t.Errorf("run %d: item 5: %s, want its error", run, a.fate(5))
		}
		for id := range 5 {
			if f := a.fate(id); f != "none" {
				t.Errorf("run %d: item %d: %s, want none (its batch was dropped)", run, id, f)
			}
		}
	}
}

// TestReviewComposeBatchErrorBoundariesMakeNoEmptyBatch attacks "A forwarded
// error is a batch boundary: the batch before it leaves first, then the
// error, in order" at its edges: an error first, an error right after a full
// batch, two errors in a row, errors last. No empty batch may appear (there
// is no batch before such an error), the order holds, and each batch's
// members are settled nil and each failed item with its error.
func TestReviewComposeBatchErrorBoundariesMakeNoEmptyBatch(t *testing.T) {
	errX := errors.New("rejected")
	fails := map[int]bool{0: true, 4: true, 5: true, 9: true, 10: true}
	a := newRvAcks()
	m := stage.Map(a.source(ints(11)), func(_ context.Context, x int) (int, error) {
		if fails[x] {
			return 0, fmt.Errorf("item %d: %w", x, errX)
		}
		return x, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var got []string
	hangGuard(t, func() {
		for b, err := range sink.All(context.Background(), stage.Batch(m, 3, time.Hour)) {
			if err != nil {
				var se *stage.Error
				if !errors.As(err, &se) || !errors.Is(err, errX) {
					t.Errorf("forwarded %v, want a *stage.Error wrapping errX", err)
				}
				got = append(got, fmt.Sprintf("E%v", se.Input))
				continue
			}
			got = append(got, fmt.Sprint(b))
		}
	})
	want := []string{"E0", "[1 2 3]", "E4", "E5", "[6 7 8]", "E9", "E10"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for id := range 11 {
		f := a.fate(id)
		if fails[id] {
			if a.count(id) != 1 || !errors.Is(a.err(id), errX) {
				t.Errorf("item %d: %s, want its forwarded error", id, f)
			}
		} else if f != "nil" {
			t.Errorf("item %d: %s, want nil (its batch was committed)", id, f)
		}
	}
}

// TestReviewComposeFirstOverUnbatch attacks the acknowledgement of what
// sink.First returns through a Batch: "the item sink.First returns ...
// counts" as committed. Straight after a Batch, elements are settled on their
// own: item 0 is told nil and its batch's other members nothing. Elsewhere
// (a stage between Batch and Unbatch) elements share their slice's
// acknowledgement, so one committed element of four settles nobody.
func TestReviewComposeFirstOverUnbatch(t *testing.T) {
	for _, straight := range []bool{true, false} {
		t.Run(fmt.Sprintf("straight=%v", straight), func(t *testing.T) {
			a := newRvAcks()
			b := stage.Batch(a.source(ints(8)), 4, time.Hour)
			if !straight {
				b = stage.Map(b, func(_ context.Context, xs []int) ([]int, error) { return xs, nil }, stage.Workers(1))
			}
			var v int
			var ok bool
			var err error
			hangGuard(t, func() { v, ok, err = sink.First(context.Background(), stage.Unbatch(b)) })
			if v != 0 || !ok || err != nil {
				t.Fatalf("First = %d, %v, %v; want 0, true, nil", v, ok, err)
			}
			for id := range 8 {
				want := "none"
				if straight && id == 0 {
					want = "nil"
				}
				if f := a.fate(id); f != want {
					t.Errorf("item %d: %s, want %s", id, f, want)
				}
			}
		})
	}
}

// TestReviewComposeRebatchSettlesPerSecondBatch attacks Batch → Unbatch →
// Batch: the Unbatch straight after the first Batch gives each element its own
// item's acknowledgement, and the second Batch then makes each item "done when
// its batch is". Batches of 2: [0 1] commits, [2 3] fails its commit. Items 0
// and 1 nil, 2 and 3 the commit's error (although 2 shared a first-level batch
// with 0 and 1, and 3 with 4 and 5), the rest unsettled.
func TestReviewComposeRebatchSettlesPerSecondBatch(t *testing.T) {
	errC := errors.New("bulk insert failed")
	a := newRvAcks()
	s := stage.Batch(stage.Unbatch(stage.Batch(a.source(ints(9)), 3, time.Hour)), 2, time.Hour)
	var got [][]int
	var err error
	hangGuard(t, func() {
		err = stage.Run(context.Background(), s, func(_ context.Context, b []int, err error) error {
			got = append(got, b)
			if slices.Contains(b, 2) {
				return errC
			}
			return err
		})
	})
	if !errors.Is(err, errC) || fmt.Sprint(got) != "[[0 1] [2 3]]" {
		t.Fatalf("Run = %v after %v; want the commit error after [0 1] [2 3]", err, got)
	}
	for id := range 9 {
		want := "none"
		switch {
		case id < 2:
			want = "nil"
		case id < 4:
			want = "err: " + errC.Error()
		}
		if f := a.fate(id); f != want {
			t.Errorf("item %d: %s, want %s", id, f, want)
		}
	}
}

// TestReviewComposeUntilDrainsApplyMidEmission attacks Until's drain through
// a stage with many outputs per item and a Batch: the stop comes while an
// item is between its outputs. "calls in flight finish" (emit keeps
// returning true, the call's ctx is not done), "Batch flushes its partial
// batch", "the sink returns nil"; every item the source handed out has all
// its outputs delivered and is acknowledged nil, and no other item was taken.
func TestReviewComposeUntilDrainsApplyMidEmission(t *testing.T) {
	for _, m := range []mode{{1, false}, {3, false}, {3, true}} {
		t.Run(m.String(), func(t *testing.T) {
			a := newRvAcks()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			var bad atomic.Value
			s := stage.Until(a.source(ints(1000)), stop)
			ap := stage.Apply(s, func(ctx context.Context, x int, emit func(int) bool) error {
				for j := range 5 {
					if x == 3 && j == 2 {
						drain()
					}
					if !emit(x*10 + j) {
						bad.Store(fmt.Sprintf("emit of item %d's output %d returned false during a drain", x, j))
						return ctx.Err()
					}
				}
				if ctx.Err() != nil {
					bad.Store(fmt.Sprintf("item %d: the call's ctx was done during a drain: %v", x, context.Cause(ctx)))
				}
				return nil
			}, m.opts()...)
			var outs []int
			var sizes []int
			var err error
			hangGuard(t, func() {
				err = stage.Run(context.Background(), stage.Batch(ap, 4, 0), func(_ context.Context, b []int, err error) error {
					outs = append(outs, b...)
					sizes = append(sizes, len(b))
					return err
				})
			})
			if b := bad.Load(); b != nil {
				t.Fatal(b)
			}
			if err != nil {
				t.Fatalf("Run = %v, want nil after a drain", err)
			}
			taken := rcNexts(a)
			var want []int
			for x := range taken {
				for j := range 5 {
					want = append(want, x*10+j)
				}
			}
			if slices.Sort(outs); !slices.Equal(outs, want) || taken < 4 {
				t.Fatalf("the source handed out %d items; the sink got %v (batches %v), want all 5 outputs of each", taken, outs, sizes)
			}
			for id := range 1000 {
				want := "none"
				if id < taken {
					want = "nil"
				}
				if f := a.fate(id); f != want {
					t.Fatalf("item %d: %s, want %s (%d taken)", id, f, want, taken)
				}
			}
		})
	}
}

// TestReviewComposeUntilOverMerge attacks "Until drains only the sources it
// is built on" from the other side: Until built on a Merge drains every
// source upstream of it, each of which waits in a channel receive that
// never gets a value ("a source blocked waiting for one, such as source.Chan,
// sees its context end and stops quietly"), also through a nested Until whose
// own stop never comes. An inner Until that drains its branch leaves the
// other branch running to its end. A stop already done keeps its branch
// empty.
func TestReviewComposeUntilOverMerge(t *testing.T) {
	never := context.Background()
	t.Run("outer", func(t *testing.T) {
		for _, nested := range []bool{false, true} {
			ca := make(chan int, 3)
			ca <- 1
			ca <- 2
			ca <- 3
			cb := make(chan int) // never sent on
			stop, drain := context.WithCancel(context.Background())
			var left stage.Stream[int] = stage.Map(source.Chan(ca), double, stage.Workers(2))
			if nested {
				left = stage.Until(left, never)
			}
			s := stage.Until(stage.Merge(left, source.Chan(cb)), stop)
			var got []int
			var err error
			hangGuard(t, func() {
				err = stage.Run(context.Background(), s, func(_ context.Context, v int, err error) error {
					if got = append(got, v); len(got) == 3 {
						drain()
					}
					return err
				})
			})
			drain()
			if slices.Sort(got); err != nil || !slices.Equal(got, []int{2, 4, 6}) {
				t.Fatalf("nested=%v: Run = %v with %v; want nil with [2 4 6]", nested, err, got)
			}
		}
	})
	t.Run("inner", func(t *testing.T) {
		ca := make(chan int, 3)
		ca <- 1
		ca <- 2
		ca <- 3
		cb := make(chan int)
		stop, drain := context.WithCancel(context.Background())
		defer drain()
		s := stage.Merge(stage.Until(source.Chan(ca), stop), source.Chan(cb))
		var got []int
		var err error
		var fed sync.WaitGroup
		hangGuard(t, func() {
			err = stage.Run(context.Background(), s, func(_ context.Context, v int, err error) error {
				if got = append(got, v); len(got) == 3 {
					drain()
					fed.Go(func() {
						cb <- 100
						cb <- 200
						close(cb)
					})
				}
				return err
			})
		})
		fed.Wait()
		if slices.Sort(got); err != nil || !slices.Equal(got, []int{1, 2, 3, 100, 200}) {
			t.Fatalf("Run = %v with %v; want nil with [1 2 3 100 200]", err, got)
		}
	})
	t.Run("stopped-before", func(t *testing.T) {
		stop, drain := context.WithCancel(context.Background())
		drain()
		s := stage.Merge(stage.Until(source.Slice(ints(50)), stop), stage.Map(source.Slice([]int{-1, -2}), double))
		got, err := sink.Slice(context.Background(), stage.Unbatch(stage.Batch(s, 10, 0)))
		if slices.Sort(got); err != nil || !slices.Equal(got, []int{-4, -2}) {
			t.Fatalf("got %v, %v; want [-4 -2], nil", got, err)
		}
	})
}

// TestReviewComposeUntilQuietOnAnyNextError attacks Source's "under Until,
// [next's ctx] also ends when the stop context does, and an error next then
// returns ends the stream quietly": a next that waits on its ctx and then
// returns its own error (not ctx.Err()) after the stop must not fail the run;
// the partial batch behind it is flushed and the sink returns nil.
func TestReviewComposeUntilQuietOnAnyNextError(t *testing.T) {
	errConn := errors.New("connection closed")
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	waiting := make(chan struct{})
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
			if i < 3 {
				i++
				return i, nil
			}
			if i == 3 {
				i++
				close(waiting)
			}
			select {
			case <-ctx.Done():
				return 0, errConn
			case <-time.After(rcWatch):
				return 0, errors.New("watchdog: next's ctx never ended after the stop")
			}
		}, nil
	})
	go func() {
		<-waiting
		drain()
	}()
	s := stage.Batch(stage.Map(stage.Until(src, stop), double, stage.Workers(2)), 10, 0)
	var got [][]int
	var err error
	hangGuard(t, func() {
		err = stage.Run(context.Background(), s, func(_ context.Context, b []int, err error) error {
			got = append(got, b)
			return err
		})
	})
	if err != nil || len(got) != 1 || fmt.Sprint(rvSorted(got[0])) != "[2 4 6]" {
		t.Fatalf("Run = %v with %v; want nil and the partial batch [2 4 6] (any order)", err, got)
	}
}

// TestReviewComposeUntilBeforeTee attacks "Put Until before a Tee": a drain
// stops the shared source, and both branches get every item it took, in the
// same order, and the sink returns nil.
func TestReviewComposeUntilBeforeTee(t *testing.T) {
	feed, stopFeed := context.WithCancel(context.Background())
	var sent atomic.Int64
	ch, fed := endless(feed, &sent)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	b := stage.Tee(stage.Until(source.Chan(ch), stop), 2)
	b0 := stage.Map(b[0], tag(0), stage.Workers(3), stage.Ordered())
	b1 := stage.Map(b[1], tag(1), stage.Workers(1))
	got := [2][]int{}
	var err error
	hangGuard(t, func() {
		err = stage.Run(context.Background(), stage.Merge(b0, b1), func(_ context.Context, v tagged, err error) error {
			if got[v.branch] = append(got[v.branch], v.v); v.branch == 0 && len(got[0]) == 20 {
				drain()
			}
			return err
		})
	})
	stopFeed()
	fed()
	want := ints(int(sent.Load()))
	if err != nil || !slices.Equal(got[0], want) || !slices.Equal(got[1], want) {
		t.Fatalf("Run = %v; the source took %d; branch 0 got %v, branch 1 got %v", err, len(want), got[0], got[1])
	}
}

// TestReviewComposeMergeEnds attacks Merge with inputs that never end, fail
// or are cancelled: a merged stream's run must end for sink.First (the run
// stops early) while another input waits in a channel receive; for a FailFast
// error on one input, with the item error; and for a cancelled ctx, with context.Canceled. A channel source never closes the
// caller's channel.
func TestReviewComposeMergeEnds(t *testing.T) {
	errX := errors.New("item 2 fails")
	t.Run("first", func(t *testing.T) {
		idle := make(chan int)
		var v int
		var ok bool
		var err error
		hangGuard(t, func() {
			v, ok, err = sink.First(context.Background(), stage.Merge(source.Chan(idle), stage.Map(source.Slice([]int{5, 6}), double)))
		})
		if !ok || err != nil || (v != 10 && v != 12) {
			t.Fatalf("First = %d, %v, %v; want 10 or 12, true, nil", v, ok, err)
		}
		close(idle) // panics if Merge or the source had closed it
	})
	t.Run("failfast", func(t *testing.T) {
		idle := make(chan int)
		failing := stage.Map(source.Slice(ints(5)), func(_ context.Context, x int) (int, error) {
			if x == 2 {
				return 0, errX
			}
			return x, nil
		}, stage.Workers(1))
		var err error
		hangGuard(t, func() {
			_, err = sink.Count(context.Background(), stage.Merge(source.Chan(idle), stage.Until(failing, context.Background())))
		})
		var se *stage.Error
		if !errors.As(err, &se) || !errors.Is(err, errX) || se.Input != 2 {
			t.Fatalf("err = %v, want the *stage.Error of item 2", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		idle := make(chan int)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		held := stage.Map(source.Slice(ints(10)), func(ctx context.Context, x int) (int, error) {
			if x > 0 {
				<-ctx.Done()
				return 0, ctx.Err()
			}
			return x, nil
		}, stage.Workers(2), stage.Buffer(1))
		var err error
		hangGuard(t, func() {
			err = stage.Run(ctx, stage.Merge(source.Chan(idle), held), func(context.Context, int, error) error {
				cancel()
				return nil
			})
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

// TestReviewComposeMergeSourceErrorWithWaitingInput attacks "A source that
// fails ends the run with a *SourceError whatever the policies: the source
// stops, the items it produced before still go through, then the sink
// returns the error" and "Every blocking step of a run (..., a receive from a
// channel source) can be abandoned" in a Merge whose other input is a source
// waiting in next for an item that does not come, as source.Chan does (a
// select on its channel and ctx.Done()). The failing source fails only once
// the other is inside next. The run must end with the *SourceError after the
// three items before it; it runs in a child process, since it hangs.
func TestReviewComposeMergeSourceErrorWithWaitingInput(t *testing.T) {
	out, parent := inChild(t, func() string {
		errSrc := errors.New("source broke")
		inside := make(chan struct{})
		idle := make(chan int) // never sent on, never closed
		waiting := stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			first := true
			return func(ctx context.Context) (int, error) {
				if first {
					first = false
					close(inside)
				}
				select {
				case v := <-idle:
					return v, nil
				case <-ctx.Done():
					return 0, context.Cause(ctx)
				}
			}, nil
		}))
		i := 0
		failing := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(context.Context) (int, error) {
				if i == 3 {
					<-inside
					return 0, errSrc
				}
				i++
				return i, nil
			}, nil
		})
		var got []int
		err := stage.Run(context.Background(), stage.Merge(waiting, stage.Map(failing, double, stage.Workers(2))), func(_ context.Context, v int, err error) error {
			got = append(got, v)
			return err
		})
		var se *stage.SourceError
		slices.Sort(got)
		return fmt.Sprintf("sourceError=%v got=%v", errors.As(err, &se) && errors.Is(err, errSrc), got)
	})
	if !parent {
		return
	}
	if out != "sourceError=true got=[2 4 6]" {
		t.Fatalf("outcome %q, want the *SourceError after 2 4 6", out)
	}
}

// TestReviewComposeBudgetPerStageAcrossTee attacks Budget's "The count is per
// stage and per run" on two branches of a Tee, and the acknowledgements of
// items whose copy a Budget accepted on one branch ("dropped on purpose")
// while the other copy was committed: nil. Two failures per branch fit a
// budget of 2 on each branch (four in the run); a third on one branch fails
// the run with ErrBudget at that item, which is told an error. Each run
// starts with a full budget.
func TestReviewComposeBudgetPerStageAcrossTee(t *testing.T) {
	errX := errors.New("rejected")
	failing := func(ids ...int) func(context.Context, int) (int, error) {
		return func(_ context.Context, x int) (int, error) {
			if slices.Contains(ids, x) {
				return 0, errX
			}
			return x, nil
		}
	}
	build := func(a *rvAcks, fails0 []int) stage.Stream[int] {
		b := stage.Tee(a.source(ints(8)), 2)
		b0 := stage.Map(b[0], failing(fails0...), stage.Workers(1), stage.OnError(stage.Budget(2, nil)))
		b1 := stage.Map(b[1], failing(3, 4), stage.Workers(1), stage.OnError(stage.Budget(2, nil)))
		return stage.Merge(b0, b1)
	}
	for run := range 2 {
		a := newRvAcks()
		var n int
		var err error
		hangGuard(t, func() { n, err = sink.Count(context.Background(), build(a, []int{1, 2})) })
		if err != nil || n != 12 {
			t.Fatalf("run %d: Count = %d, %v; want 12, nil (2 failures per branch, budget 2 each)", run, n, err)
		}
		for id := range 8 {
			if f := a.fate(id); f != "nil" {
				t.Errorf("run %d: item %d: %s, want nil", run, id, f)
			}
		}
	}
	a := newRvAcks()
	var err error
	hangGuard(t, func() { _, err = sink.Count(context.Background(), build(a, []int{1, 2, 5})) })
	var se *stage.Error
	if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || se.Input != 5 {
		t.Fatalf("err = %v; want ErrBudget at item 5", err)
	}
	if a.count(5) != 1 || a.err(5) == nil {
		t.Errorf("item 5: %s, want told the budget's error", a.fate(5))
	}
}

// TestReviewComposeKeyByReadAheadWithOneKey attacks KeyBy's "an item waiting
// for its key holds one of the stage's read-ahead places, so the stage still
// takes at most workers+buffer items ahead of its consumer". Every item has
// one key; item 0 is held until the source has been asked for the
// workers+buffer-th item (so a stage that takes fewer hangs), and asking for
// one more while item 0 is still in its call is a violation.
func TestReviewComposeKeyByReadAheadWithOneKey(t *testing.T) {
	for _, c := range []struct{ w, b int }{{1, 0}, {3, 0}, {2, 3}} {
		window := c.w + c.b
		var mu sync.Mutex
		produced, item0Done := 0, false
		var over []int
		gate := make(chan struct{})
		src := source.Func(func(context.Context) (event, error) {
			mu.Lock()
			defer mu.Unlock()
			if produced == 40 {
				return event{}, errEOF
			}
			if !item0Done && produced >= window {
				over = append(over, produced)
			}
			produced++
			if produced == window {
				close(gate)
			}
			return event{key: 7, seq: produced - 1}, nil
		})
		f := func(ctx context.Context, e event) (event, error) {
			if e.seq == 0 {
				select {
				case <-gate:
				case <-ctx.Done():
					return e, ctx.Err()
				}
				mu.Lock()
				item0Done = true
				mu.Unlock()
			}
			return e, nil
		}
		var got []event
		var err error
		hangGuard(t, func() {
			got, err = sink.Slice(context.Background(), stage.Map(src, f, stage.Workers(c.w), stage.Buffer(c.b), stage.KeyBy(func(e event) int { return e.key })))
		})
		want := events(40, 1)
		for i := range want {
			want[i].key = 7
		}
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("workers=%d buffer=%d: %v, %v; want the 40 items in order", c.w, c.b, got, err)
		}
		if len(over) > 0 {
			t.Fatalf("workers=%d buffer=%d: took items %v while item 0 was in its call; at most %d ahead", c.w, c.b, over, window)
		}
	}
}

// TestReviewComposeKeyByOrderedApply attacks KeyBy with Ordered and many
// outputs per item under random delays, with a Handle policy: items of one
// key run one at a time in input order, a failed item the handler accepts
// does not stop its key, and "with Ordered, the outputs follow the input
// order across keys too", each item's outputs together.
func TestReviewComposeKeyByOrderedApply(t *testing.T) {
	type out struct {
		e event
		j int
	}
	errX := errors.New("rejected")
	evs := events(160, 5)
	var mu sync.Mutex
	busy := map[int]bool{}
	last := map[int]int{}
	var bad []string
	var handled []any
	f := func(_ context.Context, e event, emit func(out) bool) error {
		mu.Lock()
		if busy[e.key] {
			bad = append(bad, fmt.Sprintf("two calls of key %d at once", e.key))
		}
		if l, ok := last[e.key]; ok && e.seq != l+1 || !ok && e.seq != 0 {
			bad = append(bad, fmt.Sprintf("key %d: seq %d after %d", e.key, e.seq, last[e.key]))
		}
		busy[e.key], last[e.key] = true, e.seq
		mu.Unlock()
		defer func() {
			mu.Lock()
			busy[e.key] = false
			mu.Unlock()
		}()
		for j := range 3 {
			rcJitter()
			if e.key == 1 && e.seq%7 == 2 && j == 0 {
				return errX
			}
			emit(out{e, j})
		}
		return nil
	}
	h := stage.Handle(func(_ context.Context, e *stage.Error) error {
		handled = append(handled, e.Input)
		return nil
	})
	s := stage.Apply(source.Slice(evs), f, stage.Workers(4), stage.Ordered(), stage.KeyBy(func(e event) int { return e.key }), stage.OnError(h))
	var got []out
	var err error
	hangGuard(t, func() { got, err = sink.Slice(context.Background(), s) })
	var want []out
	var wantHandled []any
	for _, e := range evs {
		if e.key == 1 && e.seq%7 == 2 {
			wantHandled = append(wantHandled, e)
			continue
		}
		for j := range 3 {
			want = append(want, out{e, j})
		}
	}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("err %v; got %d outputs, want %d in input order (first difference at %d)", err, len(got), len(want), firstDiff(got, want))
	}
	if len(bad) > 0 {
		t.Fatalf("per-key order broken: %v", bad[:min(len(bad), 5)])
	}
	if fmt.Sprint(handled) != fmt.Sprint(wantHandled) {
		t.Fatalf("handled %v, want %v", handled, wantHandled)
	}
}

func firstDiff[T comparable](a, b []T) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestReviewComposeOrderedChain attacks "input order with Ordered() or with
// Workers(1), kept across stages that all keep it" through a FlatMap with 0
// to 3 outputs per item, a Map with a Buffer, an Apply with two outputs per
// item, a Batch and an Unbatch, under random delays.
func TestReviewComposeOrderedChain(t *testing.T) {
	for run := range 3 {
		fm := stage.FlatMap(source.Slice(ints(150)), func(_ context.Context, x int) ([]int, error) {
			rcJitter()
			out := make([]int, x%4)
			for j := range out {
				out[j] = x*10 + j
			}
			return out, nil
		}, stage.Workers(4), stage.Ordered())
		m := stage.Map(fm, func(_ context.Context, y int) (int, error) { rcJitter(); return y, nil }, stage.Workers(3), stage.Ordered(), stage.Buffer(2))
		ap := stage.Apply(m, func(_ context.Context, y int, emit func(int) bool) error {
			rcJitter()
			emit(2 * y)
			rcJitter()
			emit(2*y + 1)
			return nil
		}, stage.Workers(5), stage.Ordered())
		last := stage.Map(stage.Unbatch(stage.Batch(ap, 7, 0)), func(_ context.Context, y int) (int, error) { return y, nil }, stage.Workers(1))
		var got []int
		var err error
		hangGuard(t, func() { got, err = sink.Slice(context.Background(), last) })
		var want []int
		for x := range 150 {
			for j := range x % 4 {
				want = append(want, 2*(x*10+j), 2*(x*10+j)+1)
			}
		}
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("run %d: err %v; order broken at %d of %d", run, err, firstDiff(got, want), len(want))
		}
	}
}

// TestReviewComposeOrderedFlatMapWindow attacks Ordered's read-ahead bound
// with many outputs per item: "the stage takes at most 2×workers+buffer items
// from upstream that its consumer has not yet taken, and then stops
// pulling". Item 0 is held until the source has been asked for the window's
// last item; the others emit three outputs each; asking for one more item
// while item 0 is in its call is a violation. Then every output arrives in
// order.
func TestReviewComposeOrderedFlatMapWindow(t *testing.T) {
	// At least two workers: with one, item 0 holds the only worker and
	// nothing else is taken.
	for _, c := range []struct{ w, b int }{{2, 0}, {3, 2}, {4, 1}} {
		window := 2*c.w + c.b
		var mu sync.Mutex
		produced, item0Done := 0, false
		var over []int
		gate := make(chan struct{})
		src := source.Func(func(context.Context) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			if produced == 30 {
				return 0, errEOF
			}
			if !item0Done && produced >= window {
				over = append(over, produced)
			}
			produced++
			if produced == window {
				close(gate)
			}
			return produced - 1, nil
		})
		f := func(ctx context.Context, x int) ([]int, error) {
			if x == 0 {
				select {
				case <-gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				mu.Lock()
				item0Done = true
				mu.Unlock()
			}
			return []int{3 * x, 3*x + 1, 3*x + 2}, nil
		}
		var got []int
		var err error
		hangGuard(t, func() {
			got, err = sink.Slice(context.Background(), stage.FlatMap(src, f, stage.Workers(c.w), stage.Buffer(c.b), stage.Ordered()))
		})
		if err != nil || !slices.Equal(got, ints(90)) {
			t.Fatalf("workers=%d buffer=%d: err %v, order broken at %d", c.w, c.b, err, firstDiff(got, ints(90)))
		}
		if len(over) > 0 {
			t.Fatalf("workers=%d buffer=%d: took items %v while item 0 was in its call; window %d", c.w, c.b, over, window)
		}
	}
}

// TestReviewComposeRunPanicWaitsForEverything attacks Run's "A panic in f is
// not recovered: Run cancels the run, waits for it, and lets the panic
// continue" through Until, Tee, Merge and Batch: when the panic reaches the
// caller, every call that started has returned, the panic value is f's, and
// the same stream runs again normally.
func TestReviewComposeRunPanicWaitsForEverything(t *testing.T) {
	type boom struct{ n int }
	var started, returned atomic.Int64
	first := make(chan struct{})
	var once sync.Once
	b := stage.Tee(stage.Until(source.Slice(ints(50)), context.Background()), 2)
	b0 := stage.Map(b[0], tag(0), stage.Workers(2))
	b1 := stage.Map(b[1], func(ctx context.Context, v int) (tagged, error) {
		started.Add(1)
		defer returned.Add(1)
		once.Do(func() { close(first) })
		select {
		case <-ctx.Done():
			return tagged{}, ctx.Err()
		case <-time.After(rcWatch):
			return tagged{}, errors.New("watchdog: never cancelled")
		}
	}, stage.Workers(3))
	s := stage.Batch(stage.Merge(b0, b1), 2, 0)
	var recovered any
	hangGuard(t, func() {
		defer func() { recovered = recover() }()
		_ = stage.Run(context.Background(), s, func(context.Context, []tagged, error) error {
			select {
			case <-first:
			case <-time.After(rcWatch):
			}
			panic(boom{7})
		})
	})
	if recovered != (boom{7}) {
		t.Fatalf("recovered %v, want f's panic value", recovered)
	}
	if st, rt := started.Load(), returned.Load(); st == 0 || st != rt {
		t.Fatalf("when the panic reached the caller, %d calls had started and %d returned", st, rt)
	}
	// The stream is a description: it runs again after the panic.
	var err error
	hangGuard(t, func() {
		err = stage.Run(context.Background(), s, func(context.Context, []tagged, error) error { return stage.ErrStop })
	})
	if st, rt := started.Load(), returned.Load(); err != nil || st != rt {
		t.Fatalf("second run: %v, %d calls started and %d returned; want nil and all returned", err, st, rt)
	}
}

// TestReviewComposeTeeSharesValues attacks Tee's "the values themselves (a
// pointer or a slice is shared between branches, not copied)", a Tee of one
// branch, and a Tee of a Tee's branch: each branch sees every item in order.
func TestReviewComposeTeeSharesValues(t *testing.T) {
	ptrs := make([]*int, 20)
	for i := range ptrs {
		ptrs[i] = new(i)
	}
	outer := stage.Tee(source.Slice(ptrs), 2)
	inner := stage.Tee(outer[1], 2)
	one := stage.Tee(inner[1], 1)
	type seen struct {
		branch int
		p      *int
	}
	mark := func(branch int) func(context.Context, *int) (seen, error) {
		return func(_ context.Context, p *int) (seen, error) { return seen{branch, p}, nil }
	}
	s := stage.Merge(stage.Map(outer[0], mark(0), stage.Workers(1)), stage.Map(inner[0], mark(1), stage.Workers(1)), stage.Map(one[0], mark(2), stage.Workers(1)))
	got := [3][]*int{}
	var err error
	hangGuard(t, func() {
		err = stage.Run(context.Background(), s, func(_ context.Context, v seen, err error) error {
			got[v.branch] = append(got[v.branch], v.p)
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for br := range 3 {
		if !slices.Equal(got[br], ptrs) {
			t.Errorf("branch %d did not get the same pointers in order", br)
		}
	}
}

// TestReviewComposeUnbatchEmptySlices attacks the acknowledgement of an item
// that leads to no output through Unbatch: "Done(nil) when ... every output
// it led to was committed; or it was dropped on purpose". An item mapped to
// an empty slice, and a batch a stage empties, lead to no output: their
// items must be settled nil, not left for a broker to redeliver for ever.
func TestReviewComposeUnbatchEmptySlices(t *testing.T) {
	t.Run("map-to-slices", func(t *testing.T) {
		a := newRvAcks()
		sl := stage.Map(a.source(ints(9)), func(_ context.Context, x int) ([]int, error) {
			return slices.Repeat([]int{x}, x%3), nil
		}, stage.Workers(2))
		var n int
		var err error
		hangGuard(t, func() { n, err = sink.Count(context.Background(), stage.Unbatch(sl)) })
		if err != nil || n != 9 {
			t.Fatalf("Count = %d, %v; want 9, nil", n, err)
		}
		for id := range 9 {
			if f := a.fate(id); f != "nil" {
				t.Errorf("item %d (%d outputs): %s, want nil", id, id%3, f)
			}
		}
	})
	t.Run("emptied-batch", func(t *testing.T) {
		a := newRvAcks()
		b := stage.Map(stage.Batch(a.source(ints(9)), 3, time.Hour), func(_ context.Context, xs []int) ([]int, error) {
			if xs[0] == 3 {
				return nil, nil // the batch [3 4 5] is filtered out whole
			}
			return xs, nil
		}, stage.Workers(1))
		var got []int
		var err error
		hangGuard(t, func() { got, err = sink.Slice(context.Background(), stage.Unbatch(b)) })
		if err != nil || !slices.Equal(got, []int{0, 1, 2, 6, 7, 8}) {
			t.Fatalf("got %v, %v; want [0 1 2 6 7 8], nil", got, err)
		}
		for id := range 9 {
			if f := a.fate(id); f != "nil" {
				t.Errorf("item %d: %s, want nil", id, f)
			}
		}
	})
}

// TestReviewComposeFirstOverTee attacks the acknowledgement of what
// sink.First returns through a Tee: it commits one copy of item 0 of two, so
// item 0 must stay unsettled; and a Tee under an Until whose stop is done
// before the run gives every branch nothing, and the run succeeds.
func TestReviewComposeFirstOverTee(t *testing.T) {
	a := newRvAcks()
	b := stage.Tee(a.source(ints(4)), 2)
	s := stage.Merge(stage.Map(b[0], tag(0), stage.Workers(1)), stage.Map(b[1], rcBlockUntilCancelled, stage.Workers(1)))
	var v tagged
	var ok bool
	var err error
	hangGuard(t, func() { v, ok, err = sink.First(context.Background(), s) })
	if v != (tagged{0, 0}) || !ok || err != nil {
		t.Fatalf("First = %v, %v, %v; want branch 0's item 0", v, ok, err)
	}
	for id := range 4 {
		if f := a.fate(id); f != "none" {
			t.Errorf("item %d: %s, want none (one copy of item 0 committed, of two)", id, f)
		}
	}
	stop, drain := context.WithCancel(context.Background())
	drain()
	bt := stage.Tee(stage.Until(source.Slice(ints(10)), stop), 3)
	var n int
	hangGuard(t, func() { n, err = sink.Count(context.Background(), stage.Merge(bt[0], stage.Map(bt[1], double), bt[2])) })
	if n != 0 || err != nil {
		t.Fatalf("Count = %d, %v; want 0, nil", n, err)
	}
}

// TestReviewComposeCancelAbortsEvenWhenStopFollowsCtx attacks Until's
// "Cancelling the run's context (the ctx given to the sink) is the other way
// to stop, and it aborts: ... the sink returns the cancellation error" in the
// documentation's own setup, where stop is derived from ctx
// (signal.NotifyContext(ctx, ...)): cancelling ctx also ends stop, and the
// drain must not turn the abort into a nil result, whatever the timing.
func TestReviewComposeCancelAbortsEvenWhenStopFollowsCtx(t *testing.T) {
	for run := range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		stop, stopCancel := context.WithCancel(ctx)
		ch := make(chan int, 10)
		for i := range 10 {
			ch <- i
		}
		var s stage.Stream[int] = stage.Until(source.Chan(ch), stop)
		switch run % 3 {
		case 1:
			s = stage.Map(s, double, stage.Workers(4))
		case 2:
			s = stage.Unbatch(stage.Batch(stage.Map(s, double, stage.Workers(2), stage.Ordered()), 3, 0))
		}
		var err error
		hangGuard(t, func() {
			n := 0
			err = stage.Run(ctx, s, func(context.Context, int, error) error {
				if n++; n == 2 {
					cancel()
				}
				return nil
			})
		})
		stopCancel()
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run %d (shape %d): Run = %v, want context.Canceled: cancelling ctx aborts", run, run%3, err)
		}
	}
}

// TestReviewComposeTeeSlowBranchBound attacks Tee's "One goroutine moves the
// items on; each branch holds at most one item its consumer has not taken, so
// the slowest branch sets the pace". Branch 1's only worker holds item 0;
// then branch 1 holds item 1 and the Tee's goroutine item 2, so the source is
// asked for 3 items and no more while item 0 is held (the gate opens at the
// third; a fourth before item 0 is released is a violation), however fast
// branch 0 consumes.
func TestReviewComposeTeeSlowBranchBound(t *testing.T) {
	for run := range 10 {
		var mu sync.Mutex
		produced, released := 0, false
		var over []int
		gate := make(chan struct{})
		src := source.Func(func(context.Context) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			if produced == 30 {
				return 0, errEOF
			}
			if !released && produced >= 3 {
				over = append(over, produced)
			}
			produced++
			if produced == 3 {
				close(gate)
			}
			return produced - 1, nil
		})
		b := stage.Tee(src, 2)
		b1 := stage.Map(b[1], func(ctx context.Context, v int) (tagged, error) {
			if v == 0 {
				select {
				case <-gate:
				case <-ctx.Done():
					return tagged{}, ctx.Err()
				}
				mu.Lock()
				released = true
				mu.Unlock()
			}
			return tagged{1, v}, nil
		}, stage.Workers(1))
		var n int
		var err error
		hangGuard(t, func() {
			n, err = sink.Count(context.Background(), stage.Merge(stage.Map(b[0], tag(0), stage.Workers(1)), b1))
		})
		if err != nil || n != 60 {
			t.Fatalf("run %d: Count = %d, %v; want 60, nil", run, n, err)
		}
		if len(over) > 0 {
			t.Fatalf("run %d: the source was asked for items %v while the slow branch held item 0; want at most 3 items", run, over)
		}
	}
}
