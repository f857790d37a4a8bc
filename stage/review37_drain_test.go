package stage_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview37DrainTakesNothingMore guards Until's "Once stop is done, no
// source upstream is asked for another item" and "every item they already
// produced goes on through the stages ... and the sink returns nil", across
// the composition operators: the sink's callback drains at its 20th value
// and notes how many items the source had given out; afterwards at most the
// one take already in progress may complete, and every item taken reaches
// the sink.
func TestReview37DrainTakesNothingMore(t *testing.T) {
	shapes := map[string]func(s stage.Stream[int]) stage.Stream[int]{
		"bare": func(s stage.Stream[int]) stage.Stream[int] { return s },
		"map1": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, double, stage.Workers(1)) },
		"map4": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, double, stage.Workers(4)) },
		"ordered": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, double, stage.Workers(4), stage.Ordered())
		},
		"unlimited": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, double, stage.Workers(-1)) },
		"flatmap": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.FlatMap(s, func(_ context.Context, v int) ([]int, error) { return []int{v}, nil }, stage.Workers(4))
		},
		"filter-map": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(4)), double, stage.Workers(4))
		},
		"tee-merge": func(s stage.Stream[int]) stage.Stream[int] {
			b := stage.Tee(s, 2)
			return stage.Merge(stage.Map(b[0], double, stage.Workers(3)), stage.Filter(b[1], func(context.Context, int) (bool, error) { return false, nil }))
		},
		"keyby": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, double, stage.Workers(4), stage.KeyBy(func(v int) int { return v % 2 }))
		},
		"batch-unbatch": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Unbatch(stage.Batch(stage.Map(s, double, stage.Workers(4)), 7, 0))
		},
		"concurrent": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Concurrent(stage.Map(s, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
				return func(context.Context) (int, error) { return v, nil }, nil
			}, stage.Workers(1)), stage.Workers(4))
		},
	}
	const n = 5000
	for sn, shape := range shapes {
		for _, src := range []string{"chan", "func", "neverwaits"} {
			t.Run(sn+"/"+src, func(t *testing.T) {
				for range 10 {
					stop, drain := context.WithCancel(context.Background())
					var in stage.Stream[int]
					var taken func() int64
					switch src {
					case "chan":
						ch := make(chan int, n)
						for i := range n {
							ch <- i
						}
						in, taken = source.Chan(ch), func() int64 { return int64(n - len(ch)) }
					default:
						var c atomic.Int64
						taken = c.Load
						i := 0
						in = source.Func(func(context.Context) (int, error) {
							if i == n {
								return 0, errEOF
							}
							i++
							c.Add(1)
							return i, nil
						})
						if src == "neverwaits" {
							in = stage.NeverWaits(in)
						}
					}
					atDrain, delivered := int64(-1), 0
					var err error
					r37Do(t, "drained run", func() {
						err = sink.ForEach(context.Background(), shape(stage.Until(in, stop)), func(context.Context, int) error {
							if delivered++; delivered == 20 {
								drain()
								atDrain = taken()
							}
							return nil
						})
					})
					drain()
					end := taken()
					if err != nil || end-atDrain > 1 || int64(delivered) != end {
						t.Fatalf("err=%v, taken %d when stop was done and %d at the end, %d delivered", err, atDrain, end, delivered)
					}
				}
			})
		}
	}
}

// TestReview37DrainInFlightFails guards that a drain does not end the calls
// in flight ("calls in flight finish": their ctx stays live) and does not
// hide their failure: a call taken before stop, which fails once the source
// has seen its context end, fails the run with its *Error.
func TestReview37DrainInFlightFails(t *testing.T) {
	for _, shape := range []string{"map", "ordered", "keyby", "tee", "merge"} {
		t.Run(shape, func(t *testing.T) {
			for range 10 {
				stop, drain := context.WithCancel(context.Background())
				srcEnded, entered, waiting := make(chan struct{}), make(chan struct{}), make(chan struct{})
				ch := make(chan int, 1)
				ch <- 1
				calls := 0
				src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					return func(ctx context.Context) (int, error) {
						if calls++; calls == 2 {
							close(waiting)
						}
						select {
						case v := <-ch:
							return v, nil
						case <-ctx.Done():
							close(srcEnded)
							return 0, ctx.Err()
						}
					}, nil
				})
				fn := func(ctx context.Context, _ int) (int, error) {
					close(entered)
					<-srcEnded
					if ctx.Err() != nil {
						return 0, errors.New("the drain ended the ctx of a call in flight")
					}
					return 0, errR37
				}
				u := stage.Until(src, stop)
				var s stage.Stream[int]
				switch shape {
				case "map":
					s = stage.Map(u, fn, stage.Workers(2))
				case "ordered":
					s = stage.Map(u, fn, stage.Workers(2), stage.Ordered())
				case "keyby":
					s = stage.Map(u, fn, stage.Workers(2), stage.KeyBy(func(v int) int { return v }))
				case "tee":
					b := stage.Tee(u, 2)
					s = stage.Merge(stage.Map(b[0], fn, stage.Workers(2)), b[1])
				case "merge":
					s = stage.Merge(stage.Map(u, fn, stage.Workers(2)), source.Slice(ints(3)))
				}
				go func() { <-entered; <-waiting; drain() }()
				var err error
				r37Do(t, "run", func() { _, err = sink.Count(context.Background(), s) })
				var e *stage.Error
				if !errors.As(err, &e) || !errors.Is(err, errR37) {
					t.Fatalf("err = %v, want the in-flight call's *Error", err)
				}
			}
		})
	}
}

// TestReview37MergeOtherInputRunsOn guards Until's "in a Merge of an Until
// branch and another, the other branch runs on": after the drain, the other
// input delivers all its 100 items and the sink returns nil with every item
// the drained input had taken.
func TestReview37MergeOtherInputRunsOn(t *testing.T) {
	for range 30 {
		stop, drain := context.WithCancel(context.Background())
		a, b := make(chan int, 100), make(chan int)
		for i := range 100 {
			a <- i
		}
		fed := make(chan struct{})
		go func() {
			<-fed
			for i := range 100 {
				b <- 1000 + i
			}
			close(b)
		}()
		s := stage.Merge(stage.Map(stage.Until(source.Chan(a), stop), double, stage.Workers(2)), stage.Map(source.Chan(b), double, stage.Workers(2)))
		got, fromB := 0, 0
		var err error
		r37Do(t, "run", func() {
			err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
				if got++; got == 5 {
					drain()
					close(fed)
				}
				if v >= 2000 {
					fromB++
				}
				return nil
			})
		})
		if takenA := 100 - len(a); err != nil || fromB != 100 || got != takenA+100 {
			t.Fatalf("err=%v, %d from the other input, %d delivered, %d taken from the drained one", err, fromB, got, takenA)
		}
	}
}

// TestReview37SourceFailureLetsInFlightFinish guards "A source that fails
// ends the run with a *SourceError: the source stops, the items it produced
// before still go through, then the sink returns the error": a call of
// another Merge input (or Tee branch) that is in flight when a source fails
// keeps a live ctx, its emits return true, and its outputs are delivered
// before the SourceError.
func TestReview37SourceFailureLetsInFlightFinish(t *testing.T) {
	for _, shape := range []string{"merge", "merge-ordered", "merge-keyby", "merge-workers1", "tee", "apply"} {
		t.Run(shape, func(t *testing.T) {
			entered, failed := make(chan struct{}), make(chan struct{})
			var ctxErr error
			var rejected int
			wait := func(ctx context.Context) {
				close(entered)
				<-failed
				time.Sleep(30 * time.Millisecond) // let the failure spread (a detector only)
				ctxErr = ctx.Err()
			}
			fn := func(ctx context.Context, v int) (int, error) { wait(ctx); return v + 100, nil }
			calls := 0
			bad := source.Func(func(context.Context) (int, error) {
				if calls++; calls == 1 {
					return 7, nil
				}
				<-entered
				defer close(failed)
				return 0, errR37
			})
			want := []int{7, 101}
			var s stage.Stream[int]
			switch shape {
			case "merge":
				s = stage.Merge(bad, stage.Map(source.Slice([]int{1}), fn, stage.Workers(2)))
			case "merge-ordered":
				s = stage.Merge(bad, stage.Map(source.Slice([]int{1}), fn, stage.Workers(2), stage.Ordered()))
			case "merge-keyby":
				s = stage.Merge(bad, stage.Map(source.Slice([]int{1}), fn, stage.Workers(2), stage.KeyBy(func(v int) int { return v })))
			case "merge-workers1":
				s = stage.Merge(bad, stage.Map(source.Slice([]int{1}), fn, stage.Workers(1)))
			case "tee":
				b := stage.Tee(bad, 2)
				s = stage.Merge(stage.Map(b[0], func(ctx context.Context, v int) (int, error) { wait(ctx); return v + 94, nil }, stage.Workers(2)), b[1])
			case "apply":
				s = stage.Merge(bad, stage.Apply(source.Slice([]int{1}), func(ctx context.Context, _ int, emit func(int) bool) error {
					wait(ctx)
					for j := range 3 {
						if !emit(200 + j) {
							rejected++
						}
					}
					return nil
				}, stage.Workers(2)))
				want = []int{7, 200, 201, 202}
			}
			var got []int
			var err error
			r37Do(t, "run", func() { got, err = sink.Slice(context.Background(), s) })
			var se *stage.SourceError
			if !errors.As(err, &se) || !errors.Is(err, errR37) || ctxErr != nil || rejected != 0 || !sameMultiset(got, want) {
				t.Fatalf("got %v, err %v, in-flight ctx %v, %d emits refused; want %v and the *SourceError", got, err, ctxErr, rejected, want)
			}
		})
	}
}

func sameMultiset(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[int]int{}
	for _, v := range a {
		m[v]++
	}
	for _, v := range b {
		if m[v]--; m[v] < 0 {
			return false
		}
	}
	return true
}

// TestReview37UntilDoneBeforeRun guards "Once stop is done, no source
// upstream is asked for another item" when stop is done before the run: no
// item is taken from any kind of source, through any shape, and the run
// succeeds empty.
func TestReview37UntilDoneBeforeRun(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	drain()
	shapes := map[string]func(stage.Stream[int]) stage.Stream[int]{
		"bare":      func(s stage.Stream[int]) stage.Stream[int] { return s },
		"map4":      func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, double, stage.Workers(4)) },
		"map1":      func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, double, stage.Workers(1)) },
		"unlimited": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, double, stage.Workers(-1)) },
		"keyby": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, double, stage.KeyBy(func(v int) int { return v }))
		},
		"tee": func(s stage.Stream[int]) stage.Stream[int] { return stage.Merge(stage.Tee(s, 2)...) },
	}
	for range 20 {
		var calls atomic.Int64
		ch := make(chan int, 10)
		for i := range 10 {
			ch <- i
		}
		srcs := map[string]func() stage.Stream[int]{
			"func": func() stage.Stream[int] {
				return source.Func(func(context.Context) (int, error) { calls.Add(1); return 1, nil })
			},
			"neverwaits": func() stage.Stream[int] {
				return stage.NeverWaits(source.Func(func(context.Context) (int, error) { calls.Add(1); return 1, nil }))
			},
			"indexed": func() stage.Stream[int] { return stage.Indexed(10, func(i int) int { calls.Add(1); return i }) },
			"chan":    func() stage.Stream[int] { return source.Chan(ch) },
		}
		for src, mk := range srcs {
			for sn, shape := range shapes {
				n, err := sink.Count(context.Background(), shape(stage.Until(mk(), stop)))
				if n != 0 || err != nil || calls.Load() != 0 || len(ch) != 10 {
					t.Fatalf("%s/%s: %d items, err %v, %d calls, %d left in the channel", src, sn, n, err, calls.Load(), len(ch))
				}
			}
		}
	}
}
