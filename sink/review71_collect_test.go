package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Slice: "returns its values in arrival order ... Without any value it
// returns a nil slice." Count: "returns how many values reached the end".
// Sizes 0, 1, 2 and many, over every simple source, through Map and Filter.
func TestReview71CountSliceSizes(t *testing.T) {
	for _, n := range []int{0, 1, 2, 65, 1000} {
		sources := map[string]func() stage.Stream[int]{
			"slice": func() stage.Stream[int] { return source.Slice(review71Ints(n)) },
			"func":  func() stage.Stream[int] { return source.Func((&review71Gen{n: n}).next) },
			"seq": func() stage.Stream[int] {
				return source.Seq(func(yield func(int) bool) {
					for i := range n {
						if !yield(i) {
							return
						}
					}
				})
			},
			"chan": func() stage.Stream[int] {
				ch := make(chan int, n)
				for i := range n {
					ch <- i
				}
				close(ch)
				return source.Chan(ch)
			},
		}
		for name, src := range sources {
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				build := func() stage.Stream[int] {
					m := stage.Map(src(), func(_ context.Context, v int) (int, error) { return v * 3, nil },
						stage.Workers(7), stage.Ordered())
					return stage.Filter(m, func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil },
						stage.Workers(1))
				}
				var got []int
				var err error
				review71Run(t, "slice", func() { got, err = sink.Slice(context.Background(), build()) })
				want := (n + 1) / 2
				if err != nil || len(got) != want {
					t.Fatalf("Slice = %v, %v; want %d values", got, err, want)
				}
				if want == 0 && got != nil {
					t.Fatalf("Slice without any value = %#v, want a nil slice", got)
				}
				for i, v := range got {
					if v != 6*i {
						t.Fatalf("Slice = %v, not in input order", got)
					}
				}
				var c int
				review71Run(t, "count", func() { c, err = sink.Count(context.Background(), build()) })
				if err != nil || c != want {
					t.Fatalf("Count = %d, %v; want %d", c, err, want)
				}
			})
		}
	}
}

// "the other sinks go on and return what succeeded together with a
// *ForwardedError: how many were forwarded and the first SampleSize of them"
// and "Sample []error // the first min(Count, SampleSize) of them, in arrival
// order", "errors.Is and errors.As see through it to each kept error".
func TestReview71ForwardedErrorSample(t *testing.T) {
	for _, failures := range []int{1, sink.SampleSize, sink.SampleSize + 1, 100} {
		t.Run(fmt.Sprint(failures), func(t *testing.T) {
			const n = 150
			errsByItem := make([]error, n)
			for i := range failures {
				errsByItem[i*n/failures] = fmt.Errorf("item %d", i*n/failures)
			}
			s := stage.Map(source.Slice(review71Ints(n)), func(_ context.Context, v int) (int, error) {
				if errsByItem[v] != nil {
					return 0, errsByItem[v]
				}
				return v, nil
			}, stage.Workers(1), stage.OnError(stage.Forward))
			var got []int
			var err error
			review71Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
			if len(got) != n-failures {
				t.Fatalf("Slice kept %d values, want %d", len(got), n-failures)
			}
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != failures || len(fe.Sample) != min(failures, sink.SampleSize) {
				t.Fatalf("Slice error = %#v, want a *ForwardedError of %d with %d kept", err, failures, min(failures, sink.SampleSize))
			}
			j := 0
			for i := range n {
				if errsByItem[i] == nil || j >= len(fe.Sample) {
					continue
				}
				var se *stage.Error
				if !errors.As(fe.Sample[j], &se) || se.Err != errsByItem[i] || se.Index != i {
					t.Fatalf("Sample[%d] = %v, want the *stage.Error of item %d", j, fe.Sample[j], i)
				}
				if !errors.Is(err, errsByItem[i]) {
					t.Fatalf("errors.Is does not see kept error %v through %v", errsByItem[i], err)
				}
				j++
			}
			var c int
			review71Run(t, "count", func() { c, err = sink.Count(context.Background(), s) })
			if !errors.As(err, &fe) || c != n-failures || fe.Count != failures {
				t.Fatalf("Count = %d, %v", c, err)
			}
		})
	}
}

// Slice: "When the run fails it returns the values received before it ended
// and the error (joined with the forwarded ones)."
//
// The source fails after 5 items, item 1 is forwarded: the values are 0, 2,
// 3, 4 and the error holds the *SourceError and the *ForwardedError.
func TestReview71SliceFailureJoined(t *testing.T) {
	for _, opts := range [][]stage.Option{{stage.Workers(1)}, {stage.Workers(5), stage.Ordered()}} {
		g := &review71Gen{n: 5}
		src := source.Func(func(ctx context.Context) (int, error) {
			v, err := g.next(ctx)
			if err != nil {
				return 0, errReview71Boom
			}
			return v, nil
		})
		s := stage.Map(src, func(_ context.Context, v int) (int, error) {
			if v == 1 {
				return 0, errors.New("one")
			}
			return v, nil
		}, append(opts, stage.OnError(stage.Forward))...)
		var got []int
		var err error
		review71Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
		var fe *sink.ForwardedError
		var se *stage.SourceError
		if fmt.Sprint(got) != "[0 2 3 4]" || !errors.As(err, &fe) || fe.Count != 1 || !errors.As(err, &se) || !errors.Is(err, errReview71Boom) {
			t.Fatalf("Slice = %v, %v; want [0 2 3 4] and the source's error joined with a *ForwardedError of 1", got, err)
		}
	}
}

// "Several sinks may run one Stream at the same time: each run has its own
// goroutines, queues and stage state" and source.Slice: "Each run yields them
// all again from the first."
//
// 32 concurrent Slice and Count runs of one Ordered pipeline: each gets
// every value exactly once, in order.
func TestReview71ConcurrentRunsOfOneStream(t *testing.T) {
	const n, runs = 300, 32
	s := stage.Filter(stage.Map(source.Slice(review71Ints(n)), func(_ context.Context, v int) (int, error) { return v + 1, nil },
		stage.Workers(6), stage.Ordered()), func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(1))
	var wg sync.WaitGroup
	results := make([]string, runs)
	want := fmt.Sprint(review71Ints(n + 1)[1:])
	for r := range runs {
		wg.Go(func() {
			if r%2 == 0 {
				got, err := sink.Slice(context.Background(), s)
				results[r] = fmt.Sprint(got, err)
				if err == nil && fmt.Sprint(got) == want {
					results[r] = "ok"
				}
				return
			}
			c, err := sink.Count(context.Background(), s)
			results[r] = fmt.Sprint(c, err)
			if c == n && err == nil {
				results[r] = "ok"
			}
		})
	}
	runcheck.NoHang(t, "runs", wg.Wait)
	for r, res := range results {
		if res != "ok" {
			t.Fatalf("run %d: %.200s", r, res)
		}
	}
}
