package stage_test

// Merge and Tee, attacked from their doc comments.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "With no inputs, the stream is empty."
func TestReview67MergeNoInputs(t *testing.T) {
	r67Guard(t, "no inputs", func() {
		got, err := sink.Slice(context.Background(), stage.Merge[int]())
		if err != nil || got != nil {
			t.Errorf("Slice: %v, %v", got, err)
		}
		v, ok, err := sink.First(context.Background(), stage.Merge[int]())
		if v != 0 || ok || err != nil {
			t.Errorf("First: %v, %v, %v", v, ok, err)
		}
		calls := 0
		err = stage.Run(context.Background(), stage.Merge[int](), func(context.Context, int, error) error { calls++; return nil })
		if err != nil || calls != 0 {
			t.Errorf("Run: %d calls, %v", calls, err)
		}
		// Empty as an input of a further stage too.
		got, err = sink.Slice(context.Background(), stage.Map(stage.Merge[int](), r67Id))
		if err != nil || got != nil {
			t.Errorf("Map(Merge()): %v, %v", got, err)
		}
	})
}

// "Merge returns a stream with the items of all ins" ... "The merged
// stream ends when every input has ended." Each item once; within one
// input, one goroutine moves the items on, so their order stays.
func TestReview67MergeAllItems(t *testing.T) {
	for _, n := range []int{1, 2, 5, 50} {
		var ins []stage.Stream[int]
		for k := range n {
			base := 1000 * k
			ins = append(ins, stage.Map(r67Src(k*7, nil), func(_ context.Context, v int) (int, error) { return base + v, nil }, stage.Workers(1)))
		}
		var got []int
		var err error
		r67Guard(t, "merge", func() { got, err = sink.Slice(context.Background(), stage.Merge(ins...)) })
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		var want []int
		last := map[int]int{}
		for k := range n {
			for i := range k * 7 {
				want = append(want, 1000*k+i)
			}
			last[k] = -1
		}
		if !r67SameInts(got, want) {
			t.Errorf("n=%d: got %v; want %v as a multiset", n, got, want)
		}
		for _, v := range got {
			k, i := v/1000, v%1000
			if i <= last[k] {
				t.Errorf("n=%d: input %d's items out of order: %d after %d", n, k, i, last[k])
			}
			last[k] = i
		}
	}
}

// "Forwarded errors pass through." Both inputs forward errors; the sink
// sees each once, as the *Error of its stage.
func TestReview67MergeForwarded(t *testing.T) {
	mk := func(name string) stage.Stream[int] {
		return stage.Map(source.Slice(r67Ints(10)), func(_ context.Context, v int) (int, error) {
			if v%3 == 0 {
				return 0, r67Err
			}
			return v, nil
		}, stage.Name(name), stage.OnError(stage.Forward))
	}
	vals, fwd, err := r67Run(context.Background(), stage.Merge(mk("a"), mk("b")))
	if err != nil || len(vals) != 12 || len(fwd) != 8 {
		t.Fatalf("got %d values, %d forwarded, %v; want 12, 8, nil", len(vals), len(fwd), err)
	}
	var idx []string
	for _, e := range fwd {
		var se *stage.Error
		if !errors.As(e, &se) || !errors.Is(e, r67Err) {
			t.Fatalf("forwarded %v is not an *Error wrapping the function's error", e)
		}
		idx = append(idx, fmt.Sprintf("%s%d", se.Stage, se.Index))
	}
	sort.Strings(idx)
	if got := fmt.Sprint(idx); got != "[a0 a3 a6 a9 b0 b3 b6 b9]" {
		t.Errorf("forwarded: %s", got)
	}
}

// "A source that fails ends the run with a *SourceError ...: the items it
// produced before still go through". In a Merge, the failing input's items
// before its failure all reach the sink.
func TestReview67MergeSourceError(t *testing.T) {
	bad := source.Func(func() func(context.Context) (int, error) {
		i := 0
		return func(context.Context) (int, error) {
			if i == 5 {
				return 0, r67Err
			}
			i++
			return i - 1, nil
		}
	}())
	other := stage.Map(source.Chan(make(chan int)), r67Id) // never gives anything
	var got []int
	var err error
	r67Guard(t, "source error", func() { got, err = sink.Slice(context.Background(), stage.Merge(other, bad)) })
	var se *stage.SourceError
	if !errors.As(err, &se) || !errors.Is(err, r67Err) {
		t.Errorf("err %v; want a *SourceError wrapping the source's error", err)
	}
	if !r67SameInts(got, r67Ints(5)) {
		t.Errorf("delivered %v; want 0..4", got)
	}
}

// "together they are at most one item per input ahead of the merged
// stream's consumer". Three endless inputs, a sink callback that holds the
// first item: the inputs give at most 1 (held) + 3 (one per input) + 1
// (Run's hand-over, see Run) items. See r67Window.
func TestReview67MergeBound(t *testing.T) {
	for _, n := range []int{1, 3} {
		var nexts r67Counter
		var ins []stage.Stream[int]
		for range n {
			ins = append(ins, r67Src(-1, &nexts))
		}
		var held int64
		r67Guard(t, "merge bound", func() {
			_ = stage.Run(context.Background(), stage.Merge(ins...), func(context.Context, int, error) error {
				held = r67Settle(&nexts)
				return stage.ErrStop
			})
		})
		if bound := int64(1 + n + 1); held > bound {
			t.Errorf("n=%d: the inputs gave %d items while the sink held one; bound %d", n, held, bound)
		} else {
			t.Logf("n=%d: the inputs gave %d items (bound %d)", n, held, bound)
		}
	}
}

// Early exit: First over a Merge of endless inputs, and a break out of All.
func TestReview67MergeEarlyExit(t *testing.T) {
	r67Guard(t, "first", func() {
		_, ok, err := sink.First(context.Background(), stage.Merge(r67Src(-1, nil), r67Src(-1, nil), stage.Map(r67Src(-1, nil), r67Id)))
		if !ok || err != nil {
			t.Errorf("First: %v, %v", ok, err)
		}
	})
	r67Guard(t, "break", func() {
		n := 0
		for _, err := range sink.All(context.Background(), stage.Merge(r67Src(-1, nil), stage.Map(r67Src(-1, nil), r67Id, stage.Workers(4)))) {
			if err != nil {
				t.Errorf("All: %v", err)
			}
			if n++; n == 100 {
				break
			}
		}
	})
}

// "Tee returns n streams that each see every item of in, in the order of
// in: the values themselves (a pointer ... is shared between branches, not
// copied)". n = 1, 2, 3, 64.
func TestReview67TeeEveryItemInOrder(t *testing.T) {
	type box struct{ v int }
	boxes := make([]*box, 40)
	for i := range boxes {
		boxes[i] = &box{i}
	}
	for _, n := range []int{1, 2, 3, 64} {
		bs := stage.Tee(source.Slice(boxes), n)
		if len(bs) != n {
			t.Fatalf("Tee(%d) gave %d branches", n, len(bs))
		}
		type tagged struct {
			branch int
			b      *box
		}
		var outs []stage.Stream[tagged]
		for k, b := range bs {
			outs = append(outs, stage.Map(b, func(_ context.Context, x *box) (tagged, error) { return tagged{k, x}, nil }, stage.Workers(1)))
		}
		var got []tagged
		var err error
		r67Guard(t, "tee", func() { got, err = sink.Slice(context.Background(), stage.Merge(outs...)) })
		if err != nil || len(got) != n*len(boxes) {
			t.Fatalf("n=%d: %d items, %v", n, len(got), err)
		}
		next := make([]int, n)
		for _, g := range got {
			if g.b != boxes[next[g.branch]] {
				t.Fatalf("n=%d: branch %d got %v, want the pointer of item %d", n, g.branch, g.b, next[g.branch])
			}
			next[g.branch]++
		}
	}
}

// "and every forwarded error (so each branch reports it)".
func TestReview67TeeForwarded(t *testing.T) {
	m := stage.Map(source.Slice(r67Ints(6)), func(_ context.Context, v int) (int, error) {
		if v == 3 {
			return 0, r67Err
		}
		return v, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	bs := stage.Tee(m, 3)
	vals, fwd, err := r67Run(context.Background(), stage.Merge(bs...))
	if err != nil || len(vals) != 15 || len(fwd) != 3 {
		t.Fatalf("got %d values, %d forwarded, %v; want 15, 3, nil", len(vals), len(fwd), err)
	}
	for _, e := range fwd {
		var se *stage.Error
		if !errors.As(e, &se) || se.Index != 3 || !errors.Is(e, r67Err) {
			t.Errorf("forwarded %v", e)
		}
	}
}

// "A run that does not consume every branch fails before any goroutine of
// it starts and before any item is taken, with an error that wraps
// ErrUnconsumedBranch".
func TestReview67TeeUnconsumed(t *testing.T) {
	var nexts r67Counter
	var calls r67Counter
	bs := stage.Tee(r67Src(10, &nexts), 3)
	f := func(_ context.Context, v int) (int, error) { calls.inc(); return v, nil }
	runs := map[string]stage.Stream[int]{
		"branch 0 alone":       bs[0],
		"Map on branch 1":      stage.Map(bs[1], f),
		"branches 0 and 2":     stage.Merge(bs[0], stage.Map(bs[2], f)),
		"Batch→Unbatch of b 2": stage.Unbatch(stage.Batch(bs[2], 2, 0)),
	}
	for name, s := range runs {
		r67Guard(t, name, func() {
			_, err := sink.Slice(context.Background(), s)
			if !errors.Is(err, stage.ErrUnconsumedBranch) {
				t.Errorf("%s: Slice: %v; want ErrUnconsumedBranch", name, err)
			}
			_, _, err = sink.First(context.Background(), s)
			if !errors.Is(err, stage.ErrUnconsumedBranch) {
				t.Errorf("%s: First: %v; want ErrUnconsumedBranch", name, err)
			}
			for _, err := range sink.All(context.Background(), s) {
				if !errors.Is(err, stage.ErrUnconsumedBranch) {
					t.Errorf("%s: All: %v; want ErrUnconsumedBranch", name, err)
				}
			}
		})
	}
	if nexts.get() != 0 || calls.get() != 0 {
		t.Errorf("the runs took %d items and made %d calls; want none", nexts.get(), calls.get())
	}
	// Two runs at once, each of one branch: the branches are not consumed in
	// one run, so each fails.
	var wg sync.WaitGroup
	for k := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := sink.Slice(context.Background(), bs[k])
			if !errors.Is(err, stage.ErrUnconsumedBranch) {
				t.Errorf("concurrent run of branch %d: %v", k, err)
			}
		}()
	}
	wg.Wait()
	// The whole Tee is still a valid stream afterwards, run twice at once.
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := sink.Slice(context.Background(), stage.Merge(bs...))
			if err != nil || len(got) != 30 {
				t.Errorf("whole Tee: %d items, %v", len(got), err)
			}
		}()
	}
	wg.Wait()
}

// Tee's branches are streams of one pipeline: a branch used twice, or
// Until over some branches but not all, panics when built.
func TestReview67TeeBuildRules(t *testing.T) {
	bs := stage.Tee(source.Slice(r67Ints(3)), 2)
	r67MustPanicSluice(t, "Merge(b0, b0)", func() { stage.Merge(bs[0], bs[0]) })
	r67MustPanicSluice(t, "Merge(b0, Map(b0))", func() { stage.Merge(bs[0], stage.Map(bs[0], r67Id)) })
	r67MustPanicSluice(t, "Until(b0)", func() { stage.Until(bs[0], context.Background()) })
	r67MustPanicSluice(t, "Until(Map(b1))", func() { stage.Until(stage.Map(bs[1], r67Id), context.Background()) })
	r67MustNotPanic(t, "Until(Merge(b0, b1))", func() { stage.Until(stage.Merge(bs[0], bs[1]), context.Background()) })
}

// "each branch holds at most one item its consumer has not taken, so the
// slowest branch sets the pace and nothing is buffered without bound".
// Branch 0's function holds the first item; branch 1 runs freely. The
// source then gives at most: 1 (in branch 0's call) + 1 (held by branch 0)
// + 1 (the Tee's goroutine, on its way to branch 0) + 1 (slack for a
// hand-over). See r67Window.
func TestReview67TeeSlowestBranchSetsPace(t *testing.T) {
	var nexts r67Counter
	bs := stage.Tee(r67Src(-1, &nexts), 2)
	release := r67NewGate()
	var held int64
	entered := make(chan struct{})
	slow := stage.Map(bs[0], func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			close(entered)
			<-release.C()
		}
		return v, nil
	}, stage.Workers(1))
	fast := stage.Map(bs[1], r67Id, stage.Workers(1))
	r67Guard(t, "pace", func() {
		go func() {
			<-entered
			held = r67Settle(&nexts)
			release.Open()
		}()
		n := 0
		for _, err := range sink.All(context.Background(), stage.Merge(slow, fast)) {
			if err != nil {
				t.Errorf("All: %v", err)
			}
			if n++; n == 50 {
				break
			}
		}
	})
	release.Open()
	if held > 4 {
		t.Errorf("the source gave %d items while branch 0 held its first; want at most 4", held)
	} else {
		t.Logf("the source gave %d items while branch 0 held its first", held)
	}
}

// Early exit over a Tee: First, and a break out of All, end the run of
// every branch.
func TestReview67TeeEarlyExit(t *testing.T) {
	r67Guard(t, "first", func() {
		bs := stage.Tee(r67Src(-1, nil), 3)
		_, ok, err := sink.First(context.Background(), stage.Merge(stage.Map(bs[0], r67Id), bs[1], stage.Map(bs[2], r67Id, stage.Workers(4))))
		if !ok || err != nil {
			t.Errorf("First: %v, %v", ok, err)
		}
	})
	r67Guard(t, "break", func() {
		bs := stage.Tee(r67Src(-1, nil), 2)
		n := 0
		for _, err := range sink.All(context.Background(), stage.Merge(stage.Map(bs[0], r67Id, stage.Ordered(), stage.Workers(3)), stage.Unbatch(stage.Batch(bs[1], 3, 0)))) {
			if err != nil {
				t.Errorf("All: %v", err)
			}
			if n++; n == 20 {
				break
			}
		}
	})
}

// A FailFast error on one branch ends the run of all: the sink returns the
// *Error, of the failing branch's stage.
func TestReview67TeeFailFastOneBranch(t *testing.T) {
	bs := stage.Tee(r67Src(-1, nil), 2)
	bad := stage.Map(bs[0], func(_ context.Context, v int) (int, error) {
		if v == 7 {
			return 0, r67Err
		}
		return v, nil
	}, stage.Name("bad"))
	var err error
	r67Guard(t, "failfast", func() {
		_, err = sink.Slice(context.Background(), stage.Merge(bad, stage.Map(bs[1], r67Id)))
	})
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "bad" || se.Input != 7 || !errors.Is(err, r67Err) {
		t.Errorf("err %v; want bad's *Error of item 7", err)
	}
}

// "Merge panics ... if two inputs share a stream (the same stream given
// twice, or two stages built on one stream): each stream feeds one
// consumer", at any depth and through any combinator; Tee's branches are
// distinct streams, but two Tees of one stream share it.
func TestReview67MergeSharedDeep(t *testing.T) {
	in := source.Slice(r67Ints(3))
	x := stage.Map(in, r67Id)
	keep := func(context.Context, int) (bool, error) { return true, nil }
	bs := stage.Tee(in, 2)
	t2 := stage.Tee(in, 2)
	cases := map[string]func(){
		"depth 2":               func() { stage.Merge(stage.Map(x, r67Id), stage.Map(stage.Map(in, r67Id), r67Id)) },
		"filter and map":        func() { stage.Merge(stage.Filter(x, keep), stage.Map(x, r67Id)) },
		"batch and map":         func() { stage.Merge(stage.Unbatch(stage.Batch(in, 2, 0)), in) },
		"until and itself":      func() { stage.Merge(stage.Until(in, context.Background()), in) },
		"tee branch and input":  func() { stage.Merge(bs[0], bs[1], stage.Map(in, r67Id)) },
		"two tees of one input": func() { stage.Merge(bs[0], bs[1], t2[0], t2[1]) },
		"merge inside merge":    func() { stage.Merge(stage.Merge(x, source.Slice([]int{9})), stage.Map(x, r67Id)) },
		"tee branch twice deep": func() { stage.Merge(stage.Map(bs[0], r67Id), stage.Filter(bs[0], keep), bs[1]) },
	}
	for name, f := range cases {
		r67MustPanicSluice(t, name, f)
	}
	// Allowed: Tee branches, nested Tees, branches of distinct Tees of
	// distinct streams.
	cs := stage.Tee(bs[0], 2)
	r67MustNotPanic(t, "nested tee", func() {
		got, err := sink.Slice(context.Background(), stage.Merge(cs[0], cs[1], bs[1]))
		if err != nil || len(got) != 9 {
			t.Errorf("nested tee: %v, %v", got, err)
		}
		_, err = sink.Slice(context.Background(), stage.Merge(cs[0], cs[1]))
		if !errors.Is(err, stage.ErrUnconsumedBranch) {
			t.Errorf("nested tee without bs[1]: %v; want ErrUnconsumedBranch", err)
		}
		_, err = sink.Slice(context.Background(), stage.Merge(cs[0], bs[1]))
		if !errors.Is(err, stage.ErrUnconsumedBranch) {
			t.Errorf("nested tee without cs[1]: %v; want ErrUnconsumedBranch", err)
		}
	})
	r67MustPanicSluice(t, "Until over some branches of a nested tee", func() { stage.Until(stage.Merge(cs[0], cs[1]), context.Background()) })
	r67MustPanicSluice(t, "Until over a branch and another stream", func() { stage.Until(stage.Merge(bs[0], source.Slice([]int{1})), context.Background()) })
	r67MustNotPanic(t, "Until over all branches of a nested tee", func() { stage.Until(stage.Merge(cs[0], cs[1], bs[1]), context.Background()) })
}

// Empty inputs through every combinator and option: nothing, and nil.
func TestReview67EmptyInputs(t *testing.T) {
	empty := func() stage.Stream[int] { return source.Slice([]int{}) }
	bs := stage.Tee(empty(), 3)
	shapes := map[string]stage.Stream[int]{
		"tee":        stage.Merge(bs...),
		"flatmap":    stage.FlatMap(empty(), func(context.Context, int) ([]int, error) { return []int{1}, nil }),
		"filter":     stage.Filter(empty(), func(context.Context, int) (bool, error) { return true, nil }, stage.Ordered()),
		"concurrent": stage.Concurrent(stage.Map(empty(), r67ToTask), stage.Workers(-1)),
		"keyby":      stage.Map(empty(), r67Id, stage.KeyBy(func(v int) int { return v }), stage.Ordered(), stage.Buffer(3)),
		"until":      stage.Until(r67Src(0, nil), context.Background()),
		"options": stage.Map(r67Src(0, nil), r67Id, stage.Retry(3, time.Hour), stage.RateLimit(1e-9, 1),
			stage.Timeout(time.Nanosecond), stage.OnError(stage.Budget(0, nil))),
		"unbatch of empty slices": stage.Unbatch(source.Slice([][]int{{}, nil, {}})),
		"merge of empties":        stage.Merge(empty(), r67Src(0, nil), stage.Merge[int]()),
	}
	for name, s := range shapes {
		r67Guard(t, name, func() {
			got, err := sink.Slice(context.Background(), s)
			if err != nil || got != nil {
				t.Errorf("%s: %v, %v", name, got, err)
			}
			v, ok, err := sink.First(context.Background(), s)
			if v != 0 || ok || err != nil {
				t.Errorf("%s: First %v, %v, %v", name, v, ok, err)
			}
		})
	}
}

// The error of an unconsumed branch "names the missing branch".
func TestReview67TeeUnconsumedNamesBranch(t *testing.T) {
	bs := stage.Tee(source.Slice(r67Ints(3)), 4)
	_, err := sink.Slice(context.Background(), stage.Merge(bs[0], bs[1], bs[3]))
	if !errors.Is(err, stage.ErrUnconsumedBranch) {
		t.Fatalf("%v", err)
	}
	t.Logf("the error: %v", err)
	if !strings.Contains(err.Error(), "2") {
		t.Errorf("the error %q does not name branch 2", err)
	}
}
