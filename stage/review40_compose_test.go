package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r40Panics reports whether f panics.
func r40Panics(f func()) (p bool) {
	defer func() { p = recover() != nil }()
	f()
	return false
}

// TestReview40HostileSizes: the documented panics of Tee, Batch, Merge's
// sharing rule, and the sizes that must work: Tee of 1, Merge of none, Batch
// of size math.MaxInt and a timeout of the longest duration ("a large size
// costs memory only when batches fill up"), in a child process in case a
// size is allocated.
func TestReview40HostileSizes(t *testing.T) {
	src := source.Slice(ints(3))
	for name, f := range map[string]func(){
		"tee-0":         func() { stage.Tee(src, 0) },
		"tee-neg":       func() { stage.Tee(src, -1) },
		"tee-zero":      func() { stage.Tee(stage.Stream[int]{}, 1) },
		"batch-0":       func() { stage.Batch(src, 0, 0) },
		"batch-neg":     func() { stage.Batch(src, -5, 0) },
		"batch-negtime": func() { stage.Batch(src, 1, -1) },
		"batch-zero":    func() { stage.Batch(stage.Stream[int]{}, 1, 0) },
		"unbatch-zero":  func() { stage.Unbatch(stage.Stream[[]int]{}) },
		"merge-zero":    func() { stage.Merge(src, stage.Stream[int]{}) },
		"merge-self":    func() { stage.Merge(src, src) },
		"merge-derived": func() { stage.Merge(src, stage.Map(src, double)) },
		"merge-branch":  func() { b := stage.Tee(src, 2); stage.Merge(b[0], b[0], b[1]) },
		"until-nil":     func() { var stop context.Context; stage.Until(src, stop) },
		"until-zero":    func() { stage.Until(stage.Stream[int]{}, context.Background()) },
		"keyby-nil":     func() { stage.KeyBy[int, int](nil) },
	} {
		if !r40Panics(f) {
			t.Errorf("%s: did not panic", name)
		}
	}
	out, ok := runcheck.InChild(t, func() string {
		var res []string
		// Tee of one branch is the stream itself.
		got, err := sink.Slice(context.Background(), stage.Tee(source.Slice(ints(5)), 1)[0])
		res = append(res, fmt.Sprint(got, err))
		// Merge of none is empty.
		n, err := sink.Count(context.Background(), stage.Merge[int]())
		res = append(res, fmt.Sprint(n, err))
		// A huge size and timeout: one partial batch at the end.
		bs, err := sink.Slice(context.Background(), stage.Batch(source.Slice(ints(5)), math.MaxInt, time.Duration(math.MaxInt64)))
		res = append(res, fmt.Sprint(bs, err))
		// A huge size with a Buffer downstream and Tee of many branches.
		b := stage.Tee(source.Slice(ints(3)), 64)
		n, err = sink.Count(context.Background(), stage.Unbatch(stage.Batch(stage.Merge(b...), math.MaxInt-1, 0)))
		res = append(res, fmt.Sprint(n, err))
		return fmt.Sprint(res)
	})
	if !ok {
		return
	}
	if want := "[[0 1 2 3 4] <nil> 0 <nil> [[0 1 2 3 4]] <nil> 192 <nil>]"; out != want {
		t.Fatalf("got %s, want %s", out, want)
	}
}

// TestReview40TeeUnconsumedBranch: "A run that does not consume every branch
// fails before any goroutine of it starts and before any item is taken, with
// an error that wraps ErrUnconsumedBranch". Every sink, a branch missing
// behind other stages, and no source call at all.
func TestReview40TeeUnconsumedBranch(t *testing.T) {
	for _, sname := range []string{"slice", "first", "all", "foreach", "chan"} {
		var calls atomic.Int32
		src := source.Func(func(ctx context.Context) (int, error) {
			calls.Add(1)
			return 1, nil
		})
		b := stage.Tee(src, 3)
		s := stage.Map(stage.Merge(b[0], stage.Map(b[2], double)), double, stage.Workers(2))
		var err error
		runcheck.Run(t, sname, func() {
			switch sname {
			case "slice":
				_, err = sink.Slice(context.Background(), s)
			case "first":
				_, _, err = sink.First(context.Background(), s)
			case "all":
				for _, e := range sink.All(context.Background(), s) {
					err = e
				}
			case "foreach":
				err = sink.ForEach(context.Background(), s, func(context.Context, int) error { return nil })
			case "chan":
				err = sink.Chan(context.Background(), s, make(chan int, 1))
			}
		})
		if !errors.Is(err, stage.ErrUnconsumedBranch) {
			t.Errorf("%s: a Tee branch left unconsumed: got %v, want ErrUnconsumedBranch", sname, err)
		}
		if c := calls.Load(); c != 0 {
			t.Errorf("%s: the source was called %d times before the check failed the run", sname, c)
		}
	}
}

// TestReview40TeePace attacks "each branch holds at most one item its
// consumer has not taken, so the slowest branch sets the pace and nothing is
// buffered without bound": branch 0's consumer is gated in its first item,
// branch 1 is free. The source may produce only a few items, and branch 1
// may get only a few.
func TestReview40TeePace(t *testing.T) {
	var produced, fast atomic.Int64
	src := source.Func(func(ctx context.Context) (int, error) {
		return int(produced.Add(1)), nil
	})
	b := stage.Tee(src, 2)
	gate := make(chan struct{})
	slow := stage.Map(b[0], func(ctx context.Context, v int) (int, error) {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return v, ctx.Err()
	}, stage.Workers(1))
	quick := stage.Map(b[1], func(ctx context.Context, v int) (int, error) {
		fast.Add(1)
		return v, nil
	}, stage.Workers(1))
	ctx, cancel := context.WithCancel(context.Background())
	done := r40Go(func() { _, _ = sink.Count(ctx, stage.Merge(slow, quick)) })
	const bound = 8
	p := r40Settle(&produced, bound)
	f := fast.Load()
	cancel()
	close(gate)
	r40Wait(t, done, "the run")
	if p > bound || f > bound {
		t.Errorf("one Tee branch gated: the source produced %d items and the free branch processed %d; the slowest branch should set the pace (a few items)", p, f)
	}
}

// TestReview40TeeForwardedToEveryBranch: "every forwarded error (so each
// branch reports it)", in the order of in.
func TestReview40TeeForwardedToEveryBranch(t *testing.T) {
	m := stage.Map(source.Slice(ints(20)), func(_ context.Context, v int) (int, error) {
		if v%5 == 0 {
			return 0, errR40
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	b := stage.Tee(m, 3)
	var mu sync.Mutex
	perBranch := make([][]int, 3)
	var branches []stage.Stream[int]
	for i := range b {
		branches = append(branches, stage.Apply(b[i], func(_ context.Context, v int, emit func(int) bool) error {
			mu.Lock()
			perBranch[i] = append(perBranch[i], v)
			mu.Unlock()
			emit(v)
			return nil
		}, stage.Workers(1)))
	}
	_, err := sink.Slice(context.Background(), stage.Merge(branches...))
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 12 || !errors.Is(err, errR40) {
		t.Fatalf("got %v, want a *ForwardedError of 4 errors × 3 branches", err)
	}
	for i, vs := range perBranch {
		want := []int{}
		for v := range 20 {
			if v%5 != 0 {
				want = append(want, v)
			}
		}
		if !slices.Equal(vs, want) {
			t.Errorf("branch %d saw %v, want %v in order", i, vs, want)
		}
	}
}

// TestReview40MergeAhead attacks Merge's "together they are at most one item
// per input ahead of the merged stream's consumer": three waiting sources, a
// consumer gated in its first item. Each source may have produced at most a
// couple of items.
func TestReview40MergeAhead(t *testing.T) {
	var produced [3]atomic.Int64
	var ins []stage.Stream[int]
	for i := range 3 {
		ins = append(ins, source.Func(func(ctx context.Context) (int, error) {
			return int(produced[i].Add(1)), nil
		}))
	}
	gate := make(chan struct{})
	var total atomic.Int64
	consumer := stage.Map(stage.Merge(ins...), func(ctx context.Context, v int) (int, error) {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return v, ctx.Err()
	}, stage.Workers(1))
	ctx, cancel := context.WithCancel(context.Background())
	done := r40Go(func() { _, _ = sink.Count(ctx, consumer) })
	const bound = 3 + 3 + 1 // one per input held, one per input's goroutine in hand, the consumer's
	for range 40 {
		total.Store(produced[0].Load() + produced[1].Load() + produced[2].Load())
		time.Sleep(2 * time.Millisecond)
	}
	got := total.Load()
	cancel()
	close(gate)
	r40Wait(t, done, "the run")
	if got > bound {
		t.Errorf("Merge of 3 inputs, consumer gated: the sources produced %d items in all (%d, %d, %d); bound about %d", got, produced[0].Load(), produced[1].Load(), produced[2].Load(), bound)
	}
}

// TestReview40BatchAckPerElement attacks Unbatch's "Straight after a Batch,
// each element takes back its own item's acknowledgement (see Ack), so that
// elements are settled one by one; elsewhere they share their slice's": a
// sink callback fails at the third element of a batch of four. Straight
// after the Batch: elements 0, 1 are told nil, element 2 its error, element 3
// nothing (the run ended before its fate was known). With a Map between
// Batch and Unbatch, the four share the fate of the slice.
func TestReview40BatchAckPerElement(t *testing.T) {
	for _, between := range []bool{false, true} {
		acks := make([]*r40Ack, 4)
		for i := range acks {
			acks[i] = &r40Ack{}
		}
		i := 0
		src := stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
			return func(ctx context.Context) (int, stage.Ack, error) {
				if i == 4 {
					return 0, nil, errEOF
				}
				i++
				return i - 1, acks[i-1], nil
			}, nil
		})
		bs := stage.Batch(src, 4, 0)
		if between {
			bs = stage.Map(bs, func(_ context.Context, b []int) ([]int, error) { return b, nil }, stage.Workers(1))
		}
		err := sink.ForEach(context.Background(), stage.Unbatch(bs), func(_ context.Context, v int) error {
			if v == 2 {
				return errR40
			}
			return nil
		})
		var se *stage.Error
		if !errors.As(err, &se) || !errors.Is(err, errR40) || se.Stage != "foreach" || se.Input != 2 {
			t.Fatalf("between=%v: got %v, want the callback's *stage.Error at input 2", between, err)
		}
		fates := make([]string, 4)
		for k, a := range acks {
			a.mu.Lock()
			switch {
			case a.calls.Load() == 0:
				fates[k] = "untold"
			case a.calls.Load() > 1:
				fates[k] = "many"
			case a.err == nil:
				fates[k] = "nil"
			case errors.Is(a.err, errR40):
				fates[k] = "err"
			default:
				fates[k] = "other:" + a.err.Error()
			}
			a.mu.Unlock()
		}
		if !between {
			if want := []string{"nil", "nil", "err", "untold"}; !slices.Equal(fates, want) {
				t.Errorf("Unbatch straight after Batch: fates %v, want %v", fates, want)
			}
		} else if fates[0] != fates[1] || fates[1] != fates[2] || fates[2] != fates[3] || fates[0] == "nil" {
			t.Errorf("Unbatch after a Map after Batch: fates %v, want the slice's one fate (a failure) for all", fates)
		}
	}
}

// TestReview40BatchDropsOnFailure: "A FailFast error or a cancelled run drops
// the partial batch, as it drops every item in flight": the items of the
// partial batch are not told nil, and the sink never sees them.
func TestReview40BatchDropsOnFailure(t *testing.T) {
	for _, how := range []string{"failfast", "cancel"} {
		acks := make([]*r40Ack, 3)
		for i := range acks {
			acks[i] = &r40Ack{}
		}
		ctx, cancel := context.WithCancel(context.Background())
		i := 0
		src := stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
			return func(ctx context.Context) (int, stage.Ack, error) {
				if i == 3 {
					// Three items are in the partial batch: now end the run.
					if how == "cancel" {
						cancel()
						<-ctx.Done()
						return 0, nil, ctx.Err()
					}
					return 99, nil, nil
				}
				i++
				return i - 1, acks[i-1], nil
			}, nil
		})
		m := stage.Map(src, func(_ context.Context, v int) (int, error) {
			if v == 99 {
				return 0, errR40
			}
			return v, nil
		}, stage.Workers(1))
		var got [][]int
		var err error
		runcheck.Run(t, how, func() { got, err = sink.Slice(ctx, stage.Batch(m, 10, 0)) })
		cancel()
		if len(got) != 0 {
			t.Errorf("%s: the sink got %v, want the partial batch dropped", how, got)
		}
		if how == "cancel" && !errors.Is(err, context.Canceled) {
			t.Errorf("cancel: got %v", err)
		}
		if how == "failfast" && !errors.Is(err, errR40) {
			t.Errorf("failfast: got %v", err)
		}
		for k, a := range acks {
			if a.calls.Load() != 0 {
				t.Errorf("%s: item %d of the dropped partial batch was told %v", how, k, a.err)
			}
		}
	}
}

// TestReview40BatchForwardedBoundary: "A forwarded error is a batch boundary:
// the batch before it leaves first, then the error, in order", through All.
func TestReview40BatchForwardedBoundary(t *testing.T) {
	m := stage.Map(source.Slice(ints(10)), func(_ context.Context, v int) (int, error) {
		if v == 4 || v == 5 {
			return 0, errR40
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var got []string
	for b, err := range sink.All(context.Background(), stage.Batch(m, 3, 0)) {
		if err != nil {
			var se *stage.Error
			if !errors.As(err, &se) {
				t.Fatalf("forwarded %v is not a *stage.Error", err)
			}
			got = append(got, fmt.Sprint("E", se.Input))
			continue
		}
		got = append(got, fmt.Sprint(b))
	}
	want := []string{"[0 1 2]", "[3]", "E4", "E5", "[6 7 8]", "[9]"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestReview40BatchHoldBound attacks Batch's "It holds at most size+1 items
// of in, plus one finished batch that waits for its consumer": the consumer
// (a Map of one worker) is gated inside its first batch; the source (a bare
// waiting source, so each item it produced is one Batch took) may have
// produced at most the consumer's batch, one finished batch and size+1.
func TestReview40BatchHoldBound(t *testing.T) {
	for _, size := range []int{1, 3, 10} {
		var produced atomic.Int64
		src := source.Func(func(ctx context.Context) (int, error) {
			return int(produced.Add(1)), nil
		})
		gate := make(chan struct{})
		m := stage.Map(stage.Batch(src, size, 0), func(ctx context.Context, b []int) (int, error) {
			select {
			case <-gate:
			case <-ctx.Done():
			}
			return len(b), ctx.Err()
		}, stage.Workers(1))
		ctx, cancel := context.WithCancel(context.Background())
		done := r40Go(func() { _, _ = sink.Count(ctx, m) })
		bound := int64(3*size + 1)
		got := r40Settle(&produced, bound)
		cancel()
		close(gate)
		r40Wait(t, done, "the run")
		if got > bound {
			t.Errorf("Batch of %d, consumer gated in its first batch: the source produced %d items; bound %d (a batch in the consumer, a finished one, size+1)", size, got, bound)
		}
	}
}
