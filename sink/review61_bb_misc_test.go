package sink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/acktest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// sink.Slice: "When s knows its length (stage.Stream.Len), the slice is made
// with room for that many values before the run ... Without any value it
// returns a nil slice." Stream.Len: "a Map or Concurrent under a Handle or
// Budget policy dropped items: Len is then the most s can carry".
func TestReview61BBSliceNilWhenAllDropped(t *testing.T) {
	fail := func(_ context.Context, v int) (int, error) { return 0, errR61 }
	drop := stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil }))
	cases := map[string]stage.Stream[int]{
		"handle-all":   stage.Map(source.Slice([]int{1, 2, 3}), fail, drop),
		"handle-w1":    stage.Map(source.Slice([]int{1, 2, 3}), fail, drop, stage.Workers(1)),
		"budget":       stage.Map(source.Slice([]int{1, 2, 3}), fail, stage.OnError(stage.Budget(5, nil))),
		"forward":      stage.Map(source.Slice([]int{1, 2, 3}), fail, stage.OnError(stage.Forward)),
		"failfast":     stage.Map(source.Slice([]int{1, 2, 3}), fail),
		"until-done":   stage.Map(stage.Until(source.Slice([]int{1, 2, 3}), doneCtxR61()), func(_ context.Context, v int) (int, error) { return v, nil }),
		"map-of-empty": stage.Map(source.Slice([]int{}), fail),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			var got []int
			runcheck.Run(t, "slice", func() { got, _ = sink.Slice(context.Background(), s) })
			if got != nil {
				t.Fatalf("Slice = %#v (len %d cap %d); want a nil slice (no value)", got, len(got), cap(got))
			}
		})
	}
}

func doneCtxR61() context.Context {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	return c
}

// stage.Until: "Once stop is done, no source upstream is asked for another
// item." and the sink "returns nil once the last of them has arrived, as at
// the end of the input". With stop done before the run starts, nothing is
// taken, over every kind of source, through Merge and Tee; a Merge's branch
// without Until runs on ("in a Merge of an Until branch and another, the
// other branch runs on").
func TestReview61BBUntilDoneBeforeRun(t *testing.T) {
	stop := doneCtxR61()
	var at, next int
	idx := stage.Indexed(5, func(i int) int { at++; return i })
	fn := source.Func(func(context.Context) (int, error) {
		next++
		if next > 3 {
			return 0, ioEOF
		}
		return 100, nil
	})
	b := stage.Tee(stage.Until(stage.Merge(idx, fn), stop), 2)
	other := source.Slice([]int{7, 8})
	s := stage.Merge(stage.Map(b[0], func(_ context.Context, v int) (int, error) { return v, nil }), b[1], other)
	var got []int
	var err error
	runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
	if err != nil || len(got) != 2 || at != 0 || next != 0 {
		t.Fatalf("got %v %v, at called %d, next called %d; want [7 8] nil 0 0", got, err, at, next)
	}
}

// stage.Info.Total: "the number of items the stage expects, when its source
// knows its length ... and the stages between keep one output per input (Map,
// Concurrent, Until)". Stream.Len: "a source.Slice or Indexed source of n
// items, through stages that give one item per item (Map, Concurrent),
// carries n".
func TestReview61BBTotalThroughUntilAndKeyBy(t *testing.T) {
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := stage.Until(source.Slice([]int{1, 2, 3, 4, 5}), stop)
	m := stage.Map(u, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("m"), stage.KeyBy(func(v int) int { return v % 2 }))
	tasks := stage.Map(m, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
		return func(context.Context) (int, error) { return v, nil }, nil
	}, stage.Name("t"), stage.Workers(-1), stage.Ordered())
	c := stage.Concurrent(tasks, stage.Name("c"))
	last := stage.Map(stage.Until(c, stop), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("last"))
	if u.Len() != 5 || m.Len() != 5 || c.Len() != 5 || last.Len() != 5 {
		t.Fatalf("Len: until %d, keyby map %d, concurrent %d, last %d; want 5", u.Len(), m.Len(), c.Len(), last.Len())
	}
	var st stage.Stats
	n, err := sink.Count(stage.Observe(context.Background(), &st), last)
	if n != 5 || err != nil {
		t.Fatalf("Count = %d %v", n, err)
	}
	for _, name := range []string{"m", "t", "c", "last"} {
		cn, ok := st.Get(name)
		if !ok || cn.Total != 5 || cn.Received != 5 || cn.Finished != 5 || cn.Running != 0 {
			t.Fatalf("stage %s: %+v %v; want Total/Received/Finished 5, Running 0", name, cn, ok)
		}
	}
}

// stage.Ack: "An item that fans out (FlatMap, Tee) is done when all its
// outputs are"; "Done is not called when the run ended before the item's fate
// was known: ... a sink that stopped early". First over a Merge of Tee
// branches commits one output of one item: that item must not be told.
// Then ForEach with a callback that fails on one branch's copy: the item is
// told that error ("Done(err) as soon as its way failed, with the first error").
func TestReview61BBTeeAcks(t *testing.T) {
	t.Run("first", func(t *testing.T) {
		a := r61NewAcks(3)
		b := stage.Tee(a.src(), 2)
		s := stage.Merge(b[0], stage.Map(b[1], func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1)))
		var ok bool
		runcheck.Run(t, "first", func() { _, ok, _ = sink.First(context.Background(), s) })
		if !ok {
			t.Fatal("no item")
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		for i := range a.n {
			if a.done[i] != 0 {
				t.Fatalf("item %d told %v: only one of its two outputs was committed", i, a.errs[i])
			}
		}
	})
	t.Run("foreach-fails-a-copy", func(t *testing.T) {
		a := r61NewAcks(3)
		b := stage.Tee(a.src(), 2)
		tag := func(k int) func(context.Context, int) (string, error) {
			return func(_ context.Context, v int) (string, error) { return fmt.Sprintf("%d%d", k, v), nil }
		}
		s := stage.Merge(stage.Map(b[0], tag(0), stage.Workers(1)), stage.Map(b[1], tag(1), stage.Workers(1)))
		errCb := errors.New("cb")
		seen := map[string]bool{}
		var err error
		runcheck.Run(t, "foreach", func() {
			err = sink.ForEach(context.Background(), s, func(_ context.Context, v string) error {
				seen[v] = true
				if v == "10" {
					return errCb
				}
				return nil
			})
		})
		if !errors.Is(err, errCb) {
			t.Fatalf("err %v", err)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.done[0] != 1 || !errors.Is(a.errs[0], errCb) {
			t.Fatalf("item 0 told %d times %v; want once with the commit's error (acks %v)", a.done[0], a.errs[0], a.done)
		}
		for i := 1; i < a.n; i++ {
			both := seen[fmt.Sprintf("0%d", i)] && seen[fmt.Sprintf("1%d", i)]
			if a.done[i] > 1 || (a.done[i] == 1 && (!both || a.errs[i] != nil)) {
				t.Fatalf("item %d told %d times %v, both committed %v", i, a.done[i], a.errs[i], both)
			}
		}
	})
}

// stage.Run: "one for which f returned an error failed with it, unless the
// run was ending already when f returned". A callback that returns
// context.Canceled while nothing ends the run is a failure of its item: the
// sink returns a *stage.Error (foreach) and the item's Ack is told the error.
func TestReview61BBCallbackCanceledNotEnding(t *testing.T) {
	a := r61NewAcks(3)
	var err error
	runcheck.Run(t, "foreach", func() {
		err = sink.ForEach(context.Background(), a.src(), func(_ context.Context, v int) error {
			if v == 1 {
				return fmt.Errorf("mine: %w", context.Canceled)
			}
			return nil
		})
	})
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "foreach" || se.Index != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v; want foreach *Error at 1", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done[0] != 1 || a.errs[0] != nil || a.done[1] != 1 || !errors.Is(a.errs[1], context.Canceled) || a.done[2] != 0 {
		t.Fatalf("acks %v %v", a.done, a.errs)
	}
}

// sink: "the other sinks go on and return what succeeded together with a
// *ForwardedError: how many were forwarded and the first SampleSize of them
// ... (joined with the error that ended the run, if any)"; ForwardedError.Sample:
// "the first min(Count, SampleSize) of them, in arrival order". Twelve
// forwarded errors, then a FailFast failure downstream at a value; one worker
// each so arrival order is input order. The failure at 15 comes once item 14
// was committed (its Ack told nil): everything before it was delivered then
// (outputs still on their way when a FailFast error cancels the run may be
// dropped, so a failure not gated so could leave any prefix).
func TestReview61BBForwardedSampleJoined(t *testing.T) {
	src, committed14 := acktest.CommitGated(20, 14)
	a := stage.Map(src, func(_ context.Context, v int) (int, error) {
		if v < 12 {
			return 0, fmt.Errorf("f%d: %w", v, errR61)
		}
		return v, nil
	}, stage.Workers(1), stage.Name("a"), stage.OnError(stage.Forward))
	errB := errors.New("b")
	// Buffer(1): item 15's call waits for its consumer to take item 14 (see
	// stage.Workers).
	b := stage.Map(a, func(_ context.Context, v int) (int, error) {
		if v == 15 {
			<-committed14()
			return 0, errB
		}
		return v, nil
	}, stage.Workers(1), stage.Buffer(1), stage.Name("b"))
	check := func(label string, err error) {
		var fe *sink.ForwardedError
		var se *stage.Error
		if !errors.As(err, &fe) || fe.Count != 12 || len(fe.Sample) != sink.SampleSize {
			t.Fatalf("%s: err %v; want a ForwardedError of 12 with 8 kept", label, err)
		}
		for i, e := range fe.Sample {
			if !errors.As(e, &se) || se.Stage != "a" || se.Index != i {
				t.Fatalf("%s: sample %d = %v", label, i, e)
			}
		}
		if !errors.Is(err, errB) {
			t.Fatalf("%s: err %v does not hold the run's error", label, err)
		}
	}
	var err error
	var acc int
	runcheck.Run(t, "reduce", func() { acc, err = sink.Reduce(context.Background(), b, 0, func(a, v int) int { return a + v }) })
	if acc != 12+13+14 {
		t.Fatalf("acc %d", acc)
	}
	check("reduce", err)
	var got []int
	runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), b) })
	if len(got) != 3 {
		t.Fatalf("slice %v", got)
	}
	check("slice", err)
	runcheck.Run(t, "count", func() { _, err = sink.Count(context.Background(), b) })
	check("count", err)
	runcheck.Run(t, "foreach", func() { err = sink.ForEach(context.Background(), b, func(context.Context, int) error { return nil }) })
	check("foreach", err)
	out := make(chan int, 20)
	runcheck.Run(t, "chan", func() { err = sink.Chan(context.Background(), b, out) })
	check("chan", err)
}
