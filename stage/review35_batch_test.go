package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r35Collect runs s with All and renders what arrives: "[0 1]" for a batch,
// "E<idx>" for a forwarded *Error, "!<err>" for the final error.
func r35Collect[T any](t *testing.T, ctx context.Context, s stage.Stream[T]) []string {
	t.Helper()
	var out []string
	r35Run(t, func() {
		for v, err := range sink.All(ctx, s) {
			var e *stage.Error
			switch {
			case err == nil:
				out = append(out, fmt.Sprint(v))
			case errors.As(err, &e):
				out = append(out, fmt.Sprintf("E%d", e.Index))
			default:
				out = append(out, "!"+err.Error())
			}
		}
	})
	return out
}

// Doc: "Batch groups the items of in into slices of up to size items, in
// input order. A batch leaves when it is full, ... or when the input ends".
func TestReview35BatchSizes(t *testing.T) {
	for _, c := range []struct {
		n, size int
		want    string
	}{
		{10, 3, "[[0 1 2] [3 4 5] [6 7 8] [9]]"},
		{6, 3, "[[0 1 2] [3 4 5]]"},
		{3, 1, "[[0] [1] [2]]"},
		{0, 3, "[]"},
		{5, math.MaxInt, "[[0 1 2 3 4]]"},
	} {
		var got []string
		var caps []int
		r35Run(t, func() {
			err := sink.ForEach(context.Background(), stage.Batch(source.Slice(ints(c.n)), c.size, 0), func(_ context.Context, b []int) error {
				got = append(got, fmt.Sprint(b))
				caps = append(caps, cap(b))
				return nil
			})
			if err != nil {
				t.Errorf("n=%d size=%d: %v", c.n, c.size, err)
			}
		})
		if s := "[" + strings.Join(got, " ") + "]"; s != c.want {
			t.Errorf("n=%d size=%d: got %s, want %s", c.n, c.size, s, c.want)
		}
		for _, cp := range caps {
			if cp > 1<<16 {
				t.Errorf("size=%d: a batch of at most %d items has capacity %d (doc: a large size costs memory only when batches fill up)", c.size, c.n, cp)
			}
		}
	}
}

// Doc: "A batch leaves ... when timeout has passed since its first item
// arrived". The source holds its next item until the sink has seen the
// partial batch: only the timeout can release it.
func TestReview35BatchTimeoutFlushesPartial(t *testing.T) {
	seen := make(chan struct{}, 3)
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
			if i > 0 {
				select {
				case <-seen:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
			if i == 3 {
				return 0, io.EOF
			}
			i++
			return i - 1, nil
		}, nil
	})
	var got []string
	r35Run(t, func() {
		err := sink.ForEach(context.Background(), stage.Batch(src, 100, time.Millisecond), func(_ context.Context, b []int) error {
			got = append(got, fmt.Sprint(b))
			seen <- struct{}{}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	if fmt.Sprint(got) != "[[0] [1] [2]]" {
		t.Errorf("got %v, want [[0] [1] [2]]", got)
	}
}

// Doc: "timeout 0: only when full". A partial batch must not leave while the
// source is slow; it leaves full.
func TestReview35BatchZeroTimeoutOnlyFull(t *testing.T) {
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
			if i == 6 {
				return 0, io.EOF
			}
			if i%3 != 0 {
				time.Sleep(2 * time.Millisecond) // a slow source: room for a wrong timer to fire
			}
			i++
			return i - 1, nil
		}, nil
	})
	for _, to := range []time.Duration{0, time.Hour, math.MaxInt64} {
		got := r35Collect(t, context.Background(), stage.Batch(src, 3, to))
		if fmt.Sprint(got) != "[[0 1 2] [3 4 5]]" {
			t.Errorf("timeout %v: got %v, want [[0 1 2] [3 4 5]]", to, got)
		}
	}
}

// Doc: "A forwarded error is a batch boundary: the batch before it leaves
// first, then the error, in order."
func TestReview35BatchForwardedBoundary(t *testing.T) {
	fail := map[int]bool{0: true, 3: true, 4: true, 6: true, 9: true}
	m := stage.Map(source.Slice(ints(10)), func(_ context.Context, x int) (int, error) {
		if fail[x] {
			return 0, errors.New("bad")
		}
		return x, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	for _, to := range []time.Duration{0, time.Hour} {
		got := r35Collect(t, context.Background(), stage.Batch(m, 10, to))
		want := "[E0 [1 2] E3 E4 [5] E6 [7 8] E9]"
		if fmt.Sprint(got) != want {
			t.Errorf("timeout %v: got %v, want %s", to, got, want)
		}
	}
}

// Doc (Source/SourceError): "items produced before it still go through, then
// the sink returns it"; Batch: "the last, partial batch is never lost".
func TestReview35BatchSourceErrorFlushes(t *testing.T) {
	boom := errors.New("boom")
	src := source.Func(func() func(context.Context) (int, error) {
		i := 0
		return func(context.Context) (int, error) {
			if i == 4 {
				return 0, boom
			}
			i++
			return i - 1, nil
		}
	}())
	var got []string
	var err error
	r35Run(t, func() {
		err = sink.ForEach(context.Background(), stage.Batch(src, 3, 0), func(_ context.Context, b []int) error {
			got = append(got, fmt.Sprint(b))
			return nil
		})
	})
	var se *stage.SourceError
	if !errors.As(err, &se) || !errors.Is(err, boom) {
		t.Errorf("err = %v, want a *SourceError wrapping boom", err)
	}
	if fmt.Sprint(got) != "[[0 1 2] [3]]" {
		t.Errorf("got %v, want [[0 1 2] [3]]", got)
	}
}

// Doc (Until): "Batch flushes its partial batch, and the sink returns nil".
func TestReview35BatchUntilFlush(t *testing.T) {
	for _, where := range []string{"until-before-batch", "until-after-batch"} {
		stop, stopIt := context.WithCancel(context.Background())
		src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			i := 0
			return func(ctx context.Context) (int, error) {
				if i == 5 {
					stopIt()
					<-ctx.Done()
					return 0, ctx.Err()
				}
				i++
				return i - 1, nil
			}, nil
		})
		var s stage.Stream[[]int]
		if where == "until-before-batch" {
			s = stage.Batch(stage.Until(src, stop), 3, 0)
		} else {
			s = stage.Until(stage.Batch(src, 3, 0), stop)
		}
		got := r35Collect(t, context.Background(), s)
		if fmt.Sprint(got) != "[[0 1 2] [3 4]]" {
			t.Errorf("%s: got %v, want [[0 1 2] [3 4]] and nil", where, got)
		}
		stopIt()
	}
}

// Doc: "A FailFast error or a cancelled run drops the partial batch";
// Ack: Done is not called when the run ended before the item's fate was known.
func TestReview35BatchFailFastDropsPartial(t *testing.T) {
	acks := newR35Acks()
	bad := errors.New("bad")
	m := stage.Map(acks.source(10), func(_ context.Context, x int) (int, error) {
		if x == 4 {
			return 0, bad
		}
		return x, nil
	}, stage.Workers(1))
	got := r35Collect(t, context.Background(), stage.Batch(m, 10, time.Hour))
	if fmt.Sprint(got) != "[E4]" {
		t.Errorf("got %v, want only the FailFast error of item 4", got)
	}
	for i := 0; i < 4; i++ {
		if c := acks.get(i); len(c) != 0 {
			t.Errorf("item %d of the dropped partial batch was told %v (doc: Done is not called)", i, c)
		}
	}
	if c := acks.get(4); len(c) != 1 || !errors.Is(c[0], bad) {
		t.Errorf("failed item 4 told %v, want Done(bad) once", c)
	}
}

func TestReview35BatchCancelDropsPartial(t *testing.T) {
	acks := newR35Acks()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inner := acks.source(3)
	// after item 2 the source... cancels the caller on its 4th call via a map
	m := stage.Map(inner, func(_ context.Context, x int) (int, error) {
		if x == 2 {
			cancel()
		}
		return x, nil
	}, stage.Workers(1), stage.Buffer(1))
	got := r35Collect(t, ctx, stage.Batch(m, 10, time.Hour))
	if len(got) != 1 || !strings.HasPrefix(got[0], "!") || !strings.Contains(got[0], "cancel") {
		t.Errorf("got %v, want only the cancellation", got)
	}
	for i := 0; i < 3; i++ {
		if c := acks.get(i); len(c) != 0 {
			t.Errorf("item %d was told %v after a cancel (doc: not called)", i, c)
		}
	}
}

// Doc (Ack): "an item in a Batch is done when its batch is".
func TestReview35BatchAcks(t *testing.T) {
	t.Run("all-committed", func(t *testing.T) {
		acks := newR35Acks()
		r35Run(t, func() {
			if err := sink.ForEach(context.Background(), stage.Batch(acks.source(7), 3, 0), func(context.Context, []int) error { return nil }); err != nil {
				t.Error(err)
			}
		})
		for i := 0; i < 7; i++ {
			if c := acks.get(i); len(c) != 1 || c[0] != nil {
				t.Errorf("item %d told %v, want Done(nil) once", i, c)
			}
		}
	})
	t.Run("commit-fails", func(t *testing.T) {
		acks := newR35Acks()
		sinkErr := errors.New("write failed")
		r35Run(t, func() {
			err := sink.ForEach(context.Background(), stage.Batch(acks.source(9), 3, 0), func(_ context.Context, b []int) error {
				if b[0] == 3 {
					return sinkErr
				}
				return nil
			})
			if !errors.Is(err, sinkErr) {
				t.Errorf("err = %v", err)
			}
		})
		for i := 0; i < 3; i++ {
			if c := acks.get(i); len(c) != 1 || c[0] != nil {
				t.Errorf("item %d told %v, want Done(nil)", i, c)
			}
		}
		for i := 3; i < 6; i++ {
			if c := acks.get(i); len(c) != 1 || !errors.Is(c[0], sinkErr) {
				t.Errorf("item %d told %v, want Done(write failed) once", i, c)
			}
		}
		for i := 6; i < 9; i++ {
			if c := acks.get(i); len(c) != 0 {
				t.Errorf("item %d told %v, want nothing (run ended before its fate)", i, c)
			}
		}
	})
	t.Run("forwarded-inside", func(t *testing.T) {
		acks := newR35Acks()
		bad := errors.New("bad")
		m := stage.Map(acks.source(6), func(_ context.Context, x int) (int, error) {
			if x == 2 {
				return 0, bad
			}
			return x, nil
		}, stage.Workers(1), stage.OnError(stage.Forward))
		r35Run(t, func() {
			err := stage.Run(context.Background(), stage.Batch(m, 10, 0), func(context.Context, []int, error) error { return nil })
			if err != nil {
				t.Error(err)
			}
		})
		for i := 0; i < 6; i++ {
			c := acks.get(i)
			if i == 2 {
				var e *stage.Error
				if len(c) != 1 || !errors.As(c[0], &e) || !errors.Is(c[0], bad) {
					t.Errorf("forwarded item 2 told %v, want its *Error once", c)
				}
			} else if len(c) != 1 || c[0] != nil {
				t.Errorf("item %d told %v, want Done(nil)", i, c)
			}
		}
	})
	t.Run("unbatch-each-own", func(t *testing.T) {
		acks := newR35Acks()
		sinkErr := errors.New("write failed")
		r35Run(t, func() {
			err := sink.ForEach(context.Background(), stage.Unbatch(stage.Batch(acks.source(6), 3, 0)), func(_ context.Context, x int) error {
				if x == 4 {
					return sinkErr
				}
				return nil
			})
			if !errors.Is(err, sinkErr) {
				t.Errorf("err = %v", err)
			}
		})
		for i := 0; i < 4; i++ {
			if c := acks.get(i); len(c) != 1 || c[0] != nil {
				t.Errorf("item %d told %v, want Done(nil)", i, c)
			}
		}
		if c := acks.get(4); len(c) != 1 || !errors.Is(c[0], sinkErr) {
			t.Errorf("item 4 told %v, want its own error", c)
		}
		if c := acks.get(5); len(c) != 0 {
			t.Errorf("item 5 told %v, want nothing (unknown fate)", c)
		}
	})
	t.Run("filter-drops-batch", func(t *testing.T) {
		acks := newR35Acks()
		f := stage.Filter(stage.Batch(acks.source(6), 3, 0), func(_ context.Context, b []int) (bool, error) { return b[0] != 0, nil })
		r35Run(t, func() {
			if err := sink.ForEach(context.Background(), f, func(context.Context, []int) error { return nil }); err != nil {
				t.Error(err)
			}
		})
		for i := 0; i < 6; i++ {
			if c := acks.get(i); len(c) != 1 || c[0] != nil {
				t.Errorf("item %d told %v, want Done(nil)", i, c)
			}
		}
	})
	t.Run("first", func(t *testing.T) {
		acks := newR35Acks()
		var b []int
		r35Run(t, func() {
			var ok bool
			var err error
			b, ok, err = sink.First(context.Background(), stage.Batch(acks.source(9), 3, 0))
			if !ok || err != nil {
				t.Errorf("First: %v %v", ok, err)
			}
		})
		if fmt.Sprint(b) != "[0 1 2]" {
			t.Errorf("First = %v", b)
		}
		for i := 0; i < 9; i++ {
			c := acks.get(i)
			if i < 3 && (len(c) != 1 || c[0] != nil) {
				t.Errorf("item %d of the batch First returned told %v, want Done(nil)", i, c)
			}
			if i >= 3 && len(c) != 0 {
				t.Errorf("item %d told %v, want nothing", i, c)
			}
		}
	})
}

// Doc: "Batch panics if in is the zero Stream, size < 1 or timeout < 0."
func TestReview35BatchBuildPanics(t *testing.T) {
	s := source.Slice(ints(3))
	for name, f := range map[string]func(){
		"zero":    func() { stage.Batch(stage.Stream[int]{}, 1, 0) },
		"size0":   func() { stage.Batch(s, 0, 0) },
		"size-1":  func() { stage.Batch(s, -1, 0) },
		"minsize": func() { stage.Batch(s, math.MinInt, 0) },
		"to-1":    func() { stage.Batch(s, 1, -1) },
	} {
		v := r35Panics(f)
		if v == nil {
			t.Errorf("%s: no panic", name)
		} else if !strings.HasPrefix(fmt.Sprint(v), "sluice:") {
			t.Logf("%s: panic message lacks the sluice: prefix: %v", name, v)
		}
	}
}

// Doc: "It holds at most size+1 items of in, plus one finished batch that
// waits for its consumer." (Run's batch counts until f saw it, plus one item
// handed over.) A sink that holds the first batch caps what the source gives.
func TestReview35BatchReadAhead(t *testing.T) {
	for _, to := range []time.Duration{0, time.Microsecond} {
		r35BatchReadAhead(t, to)
	}
}

func r35BatchReadAhead(t *testing.T, timeout time.Duration) {
	const size = 4
	var pulls atomic.Int64
	over := make(chan struct{})
	bound := int64(size + size + size + 1 + 1) // in f, waiting, held, one handed over
	src := source.Func(func(ctx context.Context) (int, error) {
		n := pulls.Add(1)
		if n > bound {
			select {
			case over <- struct{}{}:
			default:
			}
		}
		return int(n), nil
	})
	r35Run(t, func() {
		err := sink.ForEach(context.Background(), stage.Batch(src, size, timeout), func(context.Context, []int) error {
			select {
			case <-over:
				t.Errorf("source pulled %d items while the sink held the first batch (bound %d)", pulls.Load(), bound)
			case <-time.After(100 * time.Millisecond): // detection window only: cannot fail a correct run
			}
			return stage.ErrStop
		})
		if err != nil {
			t.Error(err)
		}
	})
}

// Doc: "A batch leaves ... when timeout has passed since its first item
// arrived": measured from the first item, not from the latest one, so a
// source that keeps giving items (faster than timeout) still sees partial
// batches leave. The source gives items until the sink has seen a batch;
// it gives up after r35Watchdog/2 (a hang watchdog: how long the first
// batch takes is no verdict, only that it leaves while items keep coming).
func TestReview35BatchTimeoutFromFirstItem(t *testing.T) {
	seen := make(chan struct{})
	var closed, gaveUp atomic.Bool
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		var start time.Time
		return func(ctx context.Context) (int, error) {
			select {
			case <-seen:
				return 0, io.EOF
			default:
			}
			if i == 0 {
				start = time.Now()
			} else if time.Since(start) > r35Watchdog/2 {
				gaveUp.Store(true)
				return 0, io.EOF
			}
			time.Sleep(500 * time.Microsecond) // a steady trickle, faster than the timeout
			i++
			return i - 1, nil
		}, nil
	})
	var first []int
	r35Run(t, func() {
		err := sink.ForEach(context.Background(), stage.Batch(src, 1<<30, 20*time.Millisecond), func(_ context.Context, b []int) error {
			if first == nil {
				first = b
			}
			if closed.CompareAndSwap(false, true) {
				close(seen)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	if gaveUp.Load() {
		t.Errorf("the first batch left only at the end of the input (%d items, given over %v): the timeout did not count from its first item", len(first), r35Watchdog/2)
	}
}

// Tiny timeouts: every item arrives once, in order, in non-empty batches.
func TestReview35BatchTinyTimeoutOrder(t *testing.T) {
	for _, to := range []time.Duration{1, time.Microsecond} {
		var all []int
		r35Run(t, func() {
			err := sink.ForEach(context.Background(), stage.Batch(source.Slice(ints(20000)), 1<<30, to), func(_ context.Context, b []int) error {
				if len(b) == 0 {
					t.Error("an empty batch")
				}
				all = append(all, b...)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
		if len(all) != 20000 {
			t.Fatalf("timeout %v: %d items", to, len(all))
		}
		for i, v := range all {
			if v != i {
				t.Fatalf("timeout %v: item %d is %d", to, i, v)
			}
		}
	}
}
