package stage_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r37Strict is a source that records any breach of Source's contract: "The
// run calls next only when ..., never concurrently, and never once the run
// is cancelled or its input has ended", "stop is called once every goroutine
// of the run has exited" (so no next after stop, and stop once).
type r37Strict struct {
	ended                               atomic.Bool
	afterEnd, concurrent, inside, stops atomic.Int32
	afterStop                           atomic.Int32
}

func (s *r37Strict) stream(n int, end error, feed <-chan int) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
				if s.inside.Add(1) > 1 {
					s.concurrent.Add(1)
				}
				defer s.inside.Add(-1)
				if s.stops.Load() > 0 {
					s.afterStop.Add(1)
				}
				if s.ended.Load() {
					s.afterEnd.Add(1)
				}
				if feed != nil {
					select {
					case <-feed:
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				}
				if i == n {
					s.ended.Store(true)
					return 0, end
				}
				i++
				return i, nil
			}, func() {
				s.stops.Add(1)
			}
	})
}

// TestReview37StrictSource guards that contract under the composition
// operators and every marking of the source (plain, NeverWaits,
// Interruptible over ready and over slowly fed items), when the input ends
// with io.EOF and when it fails.
func TestReview37StrictSource(t *testing.T) {
	shapes := map[string]func(stage.Stream[int]) stage.Stream[int]{
		"map4": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, double, stage.Workers(4)) },
		"map4-map8": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.Map(s, double, stage.Workers(4)), double, stage.Workers(8))
		},
		"flatmap-map": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.FlatMap(s, func(_ context.Context, v int) ([]int, error) { return []int{v, v}, nil }, stage.Workers(4)), double, stage.Workers(8))
		},
		"unlimited": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, double, stage.Workers(-1)) },
		"keyby": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, double, stage.Workers(4), stage.KeyBy(func(v int) int { return v % 3 }))
		},
		"tee": func(s stage.Stream[int]) stage.Stream[int] {
			b := stage.Tee(s, 3)
			return stage.Merge(stage.Map(b[0], double, stage.Workers(4)), b[1], b[2])
		},
		"until": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.Until(s, context.Background()), double, stage.Workers(4))
		},
		"ordered": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, double, stage.Workers(4), stage.Ordered())
		},
	}
	for _, end := range []error{errEOF, errR37} {
		for _, mark := range []string{"plain", "neverwaits", "interruptible", "interruptible-fed"} {
			for sn, shape := range shapes {
				t.Run(end.Error()+"/"+mark+"/"+sn, func(t *testing.T) {
					for range 10 {
						var st r37Strict
						var feed chan int
						quit := make(chan struct{})
						if mark == "interruptible-fed" {
							feed = make(chan int, 1)
							go func() {
								for i := range 600 {
									select {
									case feed <- i:
									case <-quit:
										return
									}
								}
							}()
						}
						s := st.stream(500, end, feed)
						switch mark {
						case "neverwaits":
							s = stage.NeverWaits(s)
						case "interruptible", "interruptible-fed":
							s = stage.Interruptible(s)
						}
						var err error
						r37Do(t, "run", func() { _, err = sink.Count(context.Background(), shape(s)) })
						close(quit)
						if end != errEOF && !errors.Is(err, end) || end == errEOF && err != nil {
							t.Fatalf("err = %v", err)
						}
						if st.afterEnd.Load() != 0 || st.concurrent.Load() != 0 || st.afterStop.Load() != 0 || st.stops.Load() != 1 {
							t.Fatalf("next after the end %d times, concurrently %d times, after stop %d times; stop called %d times",
								st.afterEnd.Load(), st.concurrent.Load(), st.afterStop.Load(), st.stops.Load())
						}
					}
				})
			}
		}
	}
}

// TestReview37InterruptibleTryKeepsFailure guards "A sink never reports
// success for a run that failed" over an Interruptible source whose next
// fails (not with its context's error) for a ready item, also when the
// consumer's goroutine asked with a done context: the run ends with the
// *SourceError after the 1500 items before it.
func TestReview37InterruptibleTryKeepsFailure(t *testing.T) {
	for range 20 {
		const n = 2000
		ch := make(chan int, n)
		for i := range n {
			ch <- i
		}
		close(ch)
		src := stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(ctx context.Context) (int, error) {
				select {
				case v, ok := <-ch:
					if !ok {
						return 0, errEOF
					}
					if v == 1500 {
						return 0, errR37
					}
					return v, nil
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}, nil
		}))
		var got int
		var err error
		r37Do(t, "run", func() { got, err = sink.Count(context.Background(), stage.Map(src, double, stage.Workers(4))) })
		var se *stage.SourceError
		if !errors.As(err, &se) || !errors.Is(err, errR37) || got != 1500 {
			t.Fatalf("%d items, err %v", got, err)
		}
	}
}
