package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "First runs s until its first item arrives, then stops the run ... Only the
// items the stages were already working on are computed" and Ordered's
// "Outputs ... leave in the order of its input", with the window bound "the
// stage takes at most 2×workers+buffer items ... its consumer has not yet
// taken".
//
// First over an Ordered Map with many workers returns the first input's
// result, and computes no more than the window (plus the one handed over).
func TestReview71FirstManyWorkersOrdered(t *testing.T) {
	for _, w := range []int{2, 16, 32, 64} {
		t.Run(fmt.Sprintf("workers-%d", w), func(t *testing.T) {
			var calls atomic.Int64
			s := stage.Map(source.Slice(review71Ints(5000)), func(_ context.Context, v int) (int, error) {
				calls.Add(1)
				return v + 100, nil
			}, stage.Workers(w), stage.Ordered())
			for range 20 {
				calls.Store(0)
				var v int
				var ok bool
				var err error
				review71Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
				if v != 100 || !ok || err != nil {
					t.Fatalf("First = (%d, %v, %v), want (100, true, nil)", v, ok, err)
				}
				if c := calls.Load(); c > int64(2*w+1) {
					t.Fatalf("First computed %d items, more than the window of %d (+1)", c, 2*w)
				}
			}
		})
	}
}

// "First returns ... (v, true, nil) for a value ... Only the items the stages
// were already working on are computed" (unordered, many workers, huge
// Workers): the value is one of the stage's results, and nothing is lost.
func TestReview71FirstManyWorkersUnordered(t *testing.T) {
	for _, w := range []int{8, 1000, -1} {
		t.Run(fmt.Sprintf("workers-%d", w), func(t *testing.T) {
			s := stage.Map(source.Slice(review71Ints(300)), func(_ context.Context, v int) (int, error) { return v + 100, nil },
				stage.Workers(w))
			for range 20 {
				var v int
				var ok bool
				var err error
				review71Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
				if v < 100 || v >= 400 || !ok || err != nil {
					t.Fatalf("First = (%d, %v, %v), want a value in [100, 400)", v, ok, err)
				}
			}
		})
	}
}

// "over a bare source, exactly one item is taken" (First), with source.Chan's
// "a run that stops early ... leaves the rest in ch: Chan never closes ch and
// never drains it" and source.Seq's "the iterator is stopped (its deferred
// calls run) before the sink returns".
func TestReview71FirstBareSourceTakesOne(t *testing.T) {
	t.Run("func", func(t *testing.T) {
		g := &review71Gen{n: -1}
		s := source.Func(g.next)
		for round := range 5 {
			g.calls.Store(0)
			var v int
			var ok bool
			var err error
			review71Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
			if v != 0 || !ok || err != nil || g.calls.Load() != 1 {
				t.Fatalf("round %d: First = (%d, %v, %v) after %d calls of next, want (0, true, nil) after 1", round, v, ok, err, g.calls.Load())
			}
		}
	})
	t.Run("chan", func(t *testing.T) {
		const n = 10
		ch := make(chan int, n)
		for i := range n {
			ch <- i
		}
		s := source.Chan(ch)
		for round := range n {
			var v int
			var ok bool
			var err error
			review71Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
			if v != round || !ok || err != nil || len(ch) != n-round-1 {
				t.Fatalf("round %d: First = (%d, %v, %v), %d left in ch; want (%d, true, nil), %d left", round, v, ok, err, len(ch), round, n-round-1)
			}
		}
		close(ch) // the source never closed it: this must not panic
		var v int
		var ok bool
		var err error
		review71Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
		if v != 0 || ok || err != nil {
			t.Fatalf("First over a closed, empty channel = (%d, %v, %v), want (0, false, nil)", v, ok, err)
		}
	})
	t.Run("seq", func(t *testing.T) {
		var steps atomic.Int64
		var stopped atomic.Bool
		seq := func(yield func(int) bool) {
			defer stopped.Store(true)
			for i := 0; ; i++ {
				steps.Add(1)
				if !yield(i) {
					return
				}
			}
		}
		s := source.Seq(seq)
		var v int
		var ok bool
		var err error
		var stoppedAtReturn bool
		review71Run(t, "first", func() {
			v, ok, err = sink.First(context.Background(), s)
			stoppedAtReturn = stopped.Load()
		})
		if v != 0 || !ok || err != nil || steps.Load() != 1 || !stoppedAtReturn {
			t.Fatalf("First = (%d, %v, %v) after %d steps, stopped %v; want (0, true, nil) after 1 step, stopped", v, ok, err, steps.Load(), stoppedAtReturn)
		}
	})
}

// "so what happens in the run after the first item (a worker that read ahead
// into a failing source, say) never changes it" (First).
//
// Forced interleaving: the first item's call waits until the source has
// failed at the second item (read ahead by another worker); First still
// returns the first value without an error.
func TestReview71FirstReadAheadIntoFailingSource(t *testing.T) {
	for round := range 20 {
		failed := make(chan struct{})
		var i atomic.Int64
		src := source.Func(func(context.Context) (int, error) {
			if i.Add(1) == 1 {
				return 7, nil
			}
			close(failed)
			return 0, errReview71Boom
		})
		s := stage.Map(src, func(_ context.Context, v int) (int, error) {
			select {
			case <-failed:
			case <-time.After(runcheck.Watchdog):
				return 0, errors.New("hang: the source was never read ahead")
			}
			return v, nil
		}, stage.Workers(4), stage.Buffer(1))
		var v int
		var ok bool
		var err error
		review71Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
		if v != 7 || !ok || err != nil {
			t.Fatalf("round %d: First = (%d, %v, %v), want (7, true, nil)", round, v, ok, err)
		}
	}
}

// "It returns ... (zero, false, err) when the first item is a forwarded error
// or the run failed before any item, and (zero, false, nil) for an empty
// stream".
func TestReview71FirstEdgeResults(t *testing.T) {
	type S struct{ A, B string }
	t.Run("empty", func(t *testing.T) {
		for _, s := range []stage.Stream[S]{
			source.Slice[S](nil),
			source.Func(func(context.Context) (S, error) { return S{"x", "y"}, io.EOF }),
			source.Seq(func(func(S) bool) {}),
			stage.Filter(source.Slice([]S{{"a", "b"}}), func(context.Context, S) (bool, error) { return false, nil }),
		} {
			var v S
			var ok bool
			var err error
			review71Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
			if v != (S{}) || ok || err != nil {
				t.Fatalf("First of an empty stream = (%v, %v, %v), want (zero, false, nil)", v, ok, err)
			}
		}
	})
	t.Run("forwarded-first", func(t *testing.T) {
		s := stage.Map(source.Slice([]int{1, 2, 3}), func(_ context.Context, v int) (S, error) {
			if v == 1 {
				return S{"bad", "x"}, errReview71Boom
			}
			return S{"ok", "x"}, nil
		}, stage.Workers(1), stage.OnError(stage.Forward))
		var v S
		var ok bool
		var err error
		review71Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
		var se *stage.Error
		if v != (S{}) || ok || !errors.As(err, &se) || se.Index != 0 || !errors.Is(err, errReview71Boom) {
			t.Fatalf("First = (%v, %v, %v), want (zero, false, *stage.Error of item 0)", v, ok, err)
		}
	})
	t.Run("source-fails-first", func(t *testing.T) {
		s := stage.Map(source.Func(func(context.Context) (int, error) { return 5, errReview71Boom }),
			func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3))
		var v int
		var ok bool
		var err error
		review71Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
		var se *stage.SourceError
		if v != 0 || ok || !errors.As(err, &se) || !errors.Is(err, errReview71Boom) {
			t.Fatalf("First = (%v, %v, %v), want (0, false, *stage.SourceError)", v, ok, err)
		}
	})
	t.Run("precancelled", func(t *testing.T) {
		for _, kind := range review71Kinds {
			ctx, cancel := ctxtest.New(kind)
			cancel()
			g := &review71Gen{n: -1}
			var v int
			var ok bool
			var err error
			review71Run(t, "first", func() {
				v, ok, err = sink.First(ctx, stage.Map(source.Func(g.next), func(_ context.Context, v int) (int, error) { return v, nil }))
			})
			if v != 0 || ok || !errors.Is(err, context.Canceled) || g.calls.Load() != 0 {
				t.Fatalf("%s: First = (%v, %v, %v) after %d calls of next, want (0, false, Canceled) after none", kind, v, ok, err, g.calls.Load())
			}
		}
	})
}

// "Several sinks may run one Stream at the same time ... source.Chan receives
// from the same channel (each value goes to one run)" and "over a bare source,
// exactly one item is taken".
//
// 64 concurrent First over one channel source of 64 values: each run gets one
// value, no value twice, none left.
func TestReview71FirstConcurrentOverChan(t *testing.T) {
	const n = 64
	for round := range 10 {
		ch := make(chan int, n)
		for i := range n {
			ch <- i
		}
		s := source.Chan(ch)
		got := make([]int, n)
		var wg sync.WaitGroup
		var bad atomic.Int64
		for r := range n {
			wg.Go(func() {
				v, ok, err := sink.First(context.Background(), s)
				if !ok || err != nil {
					bad.Add(1)
				}
				got[r] = v
			})
		}
		runcheck.NoHang(t, "firsts", wg.Wait)
		if bad.Load() != 0 || !review71Distinct(got) || len(ch) != 0 {
			t.Fatalf("round %d: %d runs failed, values %v, %d left in ch", round, bad.Load(), got, len(ch))
		}
	}
}
