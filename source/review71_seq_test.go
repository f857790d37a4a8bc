package source_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review71Iter is an iterator over 0..n-1 (n < 0: endless) that counts its
// steps and the runs whose deferred calls ran.
type review71Iter struct {
	n              int
	steps, stopped atomic.Int64
}

func (it *review71Iter) seq(yield func(int) bool) {
	defer it.stopped.Add(1)
	for i := 0; it.n < 0 || i < it.n; i++ {
		it.steps.Add(1)
		if !yield(i) {
			return
		}
	}
}

// "The iterator advances one step each time a stage is ready for an item;
// when the run ends, early or not, the iterator is stopped (its deferred
// calls run) before the sink returns. Each run ranges over seq again."
//
// Every way a run ends, with every sink: the iterator's deferred call has run
// when the sink returns.
func TestReview71SeqStoppedBeforeSinkReturns(t *testing.T) {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	type ending struct {
		name string
		n    int
		run  func(ctx context.Context, s stage.Stream[int]) error
	}
	endings := []ending{
		{"slice-complete", 50, func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err }},
		{"first", -1, func(ctx context.Context, s stage.Stream[int]) error { _, _, err := sink.First(ctx, s); return err }},
		{"all-break", -1, func(ctx context.Context, s stage.Stream[int]) error {
			for v := range sink.All(ctx, s) {
				if v == 5 {
					break
				}
			}
			return nil
		}},
		{"foreach-stop", -1, func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return stage.ErrStop })
		}},
		{"foreach-error", -1, func(ctx context.Context, s stage.Stream[int]) error {
			err := sink.ForEach(ctx, s, func(context.Context, int) error { return errReview71Boom })
			if !errors.Is(err, errReview71Boom) {
				return fmt.Errorf("ForEach = %v", err)
			}
			return nil
		}},
		{"reduce-panic", -1, func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Reduce(ctx, s, 0, func(int, int) int { panic("x") })
			var pe *stage.PanicError
			if !errors.As(err, &pe) {
				return fmt.Errorf("Reduce = %v", err)
			}
			return nil
		}},
		{"cancel", -1, func(ctx context.Context, s stage.Stream[int]) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			err := sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				if v == 3 {
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				return fmt.Errorf("ForEach = %v", err)
			}
			return nil
		}},
		{"chan-sink-count", 30, func(ctx context.Context, s stage.Stream[int]) error {
			out := make(chan int, 30)
			return sink.Chan(ctx, s, out)
		}},
	}
	for _, e := range endings {
		for _, stages := range []string{"bare", "map-1", "map-4-ordered", "map-8-failfast"} {
			t.Run(e.name+"/"+stages, func(t *testing.T) {
				it := &review71Iter{n: e.n}
				var s stage.Stream[int] = source.Seq(it.seq)
				wantErr := false
				switch stages {
				case "map-1":
					s = stage.Map(s, id, stage.Workers(1))
				case "map-4-ordered":
					s = stage.Map(s, id, stage.Workers(4), stage.Ordered())
				case "map-8-failfast":
					if e.n < 0 {
						return // the ending is the test's; no room for a failure
					}
					s = stage.Map(s, func(_ context.Context, v int) (int, error) {
						if v == e.n-1 {
							return 0, errReview71Boom
						}
						return v, nil
					}, stage.Workers(8))
					wantErr = true
				}
				for round := range 3 {
					var err error
					var stoppedAtReturn int64
					runcheck.Run(t, e.name, func() {
						err = e.run(context.Background(), s)
						stoppedAtReturn = it.stopped.Load()
					})
					if wantErr != (err != nil) {
						t.Fatalf("round %d: err = %v", round, err)
					}
					if wantErr && !errors.Is(err, errReview71Boom) {
						t.Fatalf("round %d: err = %v, want boom", round, err)
					}
					if stoppedAtReturn != int64(round+1) {
						t.Fatalf("round %d: the iterator was stopped %d times when the sink returned, want %d", round, stoppedAtReturn, round+1)
					}
				}
			})
		}
	}
}

// "A panic in seq becomes a *stage.PanicError in a *stage.SourceError."
// (with the package's "the items produced before it still go through")
func TestReview71SeqPanics(t *testing.T) {
	for _, workers := range []int{0, 1, 6} {
		seq := func(yield func(int) bool) {
			for i := range 4 {
				if !yield(i) {
					return
				}
			}
			panic("seq panic")
		}
		var s stage.Stream[int] = source.Seq(iter.Seq[int](seq))
		if workers > 0 {
			s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers), stage.Ordered())
		}
		var got []int
		var err error
		runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
		var se *stage.SourceError
		var pe *stage.PanicError
		if fmt.Sprint(got) != "[0 1 2 3]" || !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "seq panic" {
			t.Fatalf("workers %d: got %v, %v; want [0 1 2 3] and a *SourceError wrapping the *PanicError", workers, got, err)
		}
	}
}

// Seq2: "The first error ends the run with a *stage.SourceError after the
// items before it went through; the iterator is not advanced after it."
func TestReview71Seq2ErrorNotAdvanced(t *testing.T) {
	for _, workers := range []int{0, 1, 6} {
		for _, at := range []int{0, 1, 5} {
			t.Run(fmt.Sprintf("w%d/at-%d", workers, at), func(t *testing.T) {
				var afterErr atomic.Int64
				var yieldTrue atomic.Bool
				var stopped atomic.Bool
				seq := func(yield func(int, error) bool) {
					defer stopped.Store(true)
					for i := 0; ; i++ {
						if i == at {
							if yield(-1, errReview71Boom) {
								yieldTrue.Store(true)
							}
							afterErr.Add(1)
							return
						}
						if !yield(i, nil) {
							return
						}
					}
				}
				var s stage.Stream[int] = source.Seq2(seq)
				if workers > 0 {
					s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers), stage.Ordered())
				}
				var got []int
				var err error
				var stoppedAtReturn bool
				runcheck.Run(t, "slice", func() {
					got, err = sink.Slice(context.Background(), s)
					stoppedAtReturn = stopped.Load()
				})
				var se *stage.SourceError
				if len(got) != at || !errors.As(err, &se) || !errors.Is(err, errReview71Boom) {
					t.Fatalf("got %v, %v; want %d items and the *SourceError", got, err, at)
				}
				for i, v := range got {
					if v != i {
						t.Fatalf("got %v", got)
					}
				}
				if yieldTrue.Load() {
					t.Fatalf("yield of the error returned true: the iterator was asked to advance after it")
				}
				if !stoppedAtReturn {
					t.Fatalf("the iterator was not stopped when the sink returned")
				}
			})
		}
	}
}

// stage.ErrGoexit: a goroutine of the run ended by runtime.Goexit in user code
// fails the run with ErrGoexit. A step of seq runs for the stage's workers
// (several workers: goroutines of the stage's own, see stage.Source).
func TestReview71SeqGoexit(t *testing.T) {
	for _, two := range []bool{false, true} {
		t.Run(fmt.Sprint("seq2-", two), func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				var s stage.Stream[int]
				if two {
					s = source.Seq2(func(yield func(int, error) bool) {
						yield(1, nil)
						yield(2, nil)
						runtime.Goexit()
					})
				} else {
					s = source.Seq(func(yield func(int) bool) {
						yield(1)
						yield(2)
						runtime.Goexit()
					})
				}
				s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3), stage.Buffer(1))
				var err error
				runcheck.Run(t, "count", func() { _, err = sink.Count(context.Background(), s) })
				if !errors.Is(err, stage.ErrGoexit) {
					t.Fatalf("Count err = %v, want stage.ErrGoexit", err)
				}
			})
		})
	}
}

// source.Chan: "a run that stops early (an error, sink.First, a break) leaves
// the rest in ch: Chan never closes ch and never drains it. A receive is
// abandoned when the run ends." and the package's "never after the run was
// cancelled".
//
// A bare channel source under every kind of caller's context: the sink's
// callback cancels at item k; the values after k stay in ch, in order; an
// empty open channel's blocked receive is abandoned by the cancellation.
func TestReview71ChanLeavesTheRest(t *testing.T) {
	const n = 10
	for _, kind := range []string{ctxtest.Std, ctxtest.Own, ctxtest.Wrap, ctxtest.Cause} {
		for _, k := range []int{0, 4, n - 1} {
			t.Run(fmt.Sprintf("%s/%d", kind, k), func(t *testing.T) {
				ch := make(chan int, n)
				for i := range n {
					ch <- i
				}
				ctx, cancel := ctxtest.New(kind)
				defer cancel()
				var got []int
				var err error
				runcheck.Run(t, "foreach", func() {
					err = sink.ForEach(ctx, source.Chan(ch), func(_ context.Context, v int) error {
						got = append(got, v)
						if v == k {
							cancel()
						}
						return nil
					})
				})
				if !errors.Is(err, context.Canceled) || len(got) != k+1 {
					t.Fatalf("ForEach = %v after %v", err, got)
				}
				if len(ch) != n-k-1 {
					t.Fatalf("%d values left in ch, want %d", len(ch), n-k-1)
				}
				for i := k + 1; i < n; i++ {
					if v := <-ch; v != i {
						t.Fatalf("ch holds %d, want %d", v, i)
					}
				}
				ch <- 1 // ch is still open
			})
		}
		t.Run(kind+"/empty-open", func(t *testing.T) {
			ch := make(chan int)
			ctx, cancel := ctxtest.New(kind)
			s := stage.Map(source.Chan(ch), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3))
			started := make(chan struct{})
			go func() {
				<-started
				cancel()
			}()
			var err error
			runcheck.Run(t, "count", func() {
				close(started)
				_, err = sink.Count(ctx, s)
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Count = %v, want Canceled", err)
			}
			select {
			case ch <- 1:
				t.Fatalf("a receive of the finished run is still waiting on ch")
			default:
			}
		})
	}
}
