package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r59Endless is an AckSource of 0, 1, 2, ... (each with its own Ack) that
// never ends by itself: it blocks in next until its context ends (a drain,
// a failure), after limit items. It records how many items it produced.
type r59Endless struct {
	limit int
	fail  error // returned by next once limit items were made, if not nil
	acks  *r59Acks
	mu    sync.Mutex
	made  int
}

func (s *r59Endless) stream() stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		return func(ctx context.Context) (int, stage.Ack, error) {
			s.mu.Lock()
			if s.made == s.limit {
				s.mu.Unlock()
				if s.fail != nil {
					return 0, nil, s.fail
				}
				<-ctx.Done()
				return 0, nil, ctx.Err()
			}
			v := s.made
			s.made++
			s.mu.Unlock()
			return v, r59Ack{s.acks, v}, nil
		}, nil
	})
}

func (s *r59Endless) produced() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.made
}

// TestReview59DrainThroughComposition drains (Until) a pipeline that puts
// every operator of the review between its source and its sink: Until ->
// Tee(2) -> branch 0: an Ordered KeyBy Apply that emits each item twice,
// then Batch/Unbatch; branch 1: an unordered KeyBy Map -> Merge -> sink.
// The drain comes while the sink is consuming (after it saw `at` values);
// or, in every other round, the source fails after a few items instead.
//
// Until: "every item they already produced goes on through the stages ...
// and the sink returns nil once the last of them has arrived".
// SourceError: "the items it produced before the failure still complete
// and are delivered, and then the sink returns the SourceError". Ack: an
// item that fans out (Tee, FlatMap) "is done when all its outputs are";
// Done "at most once". Tee: "n streams that each see every item of in".
func TestReview59DrainThroughComposition(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		boom := errors.New("source failed")
		for i := range 40 {
			for _, w := range []int{1, 3, -1} {
				at := 1 + i%13
				fail := i%2 == 1 // the source fails after a few items instead of a drain
				name := fmt.Sprintf("%d/w=%d/at=%d/sourcefail=%v", i, w, at, fail)
				acks := newR59Acks()
				src := &r59Endless{limit: 200, acks: acks}
				if fail {
					src.limit, src.fail = at+i%5, boom
				}
				stop, drain := context.WithCancel(context.Background())
				merged := r59Composed(stage.Until(src.stream(), stop), w)
				var got []int
				var err error
				runcheck.Run(t, name, func() {
					err = stage.Run(context.Background(), merged, func(_ context.Context, v int, ferr error) error {
						if ferr != nil {
							return ferr
						}
						if got = append(got, v); len(got) == at && !fail {
							drain()
						}
						return nil
					})
				})
				drain()
				n := src.produced()
				var want []int
				for v := range n {
					want = append(want, 2*v, 2*v+1, -1-v)
				}
				slices.Sort(want)
				var se *stage.SourceError
				switch {
				case fail && (!errors.As(err, &se) || !errors.Is(err, boom)):
					t.Errorf("%s: err = %v, want the *SourceError once everything before it was delivered", name, err)
				case !fail && err != nil:
					t.Errorf("%s: err = %v, want nil after a drain", name, err)
				}
				if g := r59Sorted(got); !slices.Equal(g, want) {
					t.Errorf("%s: the source produced %d items; delivered %d values, want %d", name, n, len(got), len(want))
				}
				for v := range n {
					if f := acks.fate(v); f != "nil" {
						t.Errorf("%s: item %d acknowledged %s, want nil once", name, v, f)
						break
					}
				}
			}
		}
	})
}

// TestReview59EarlyEndThroughComposition ends the same composed pipeline
// early at its sink, in three ways: the callback returns ErrStop, returns
// an error, or cancels the caller's ctx (and returns nil). Each source item
// leads to three outputs (two through branch 0, one through branch 1), and
// its Ack must follow what became of them.
//
// Ack: "Whatever ends the run, an item whose outputs were all committed is
// told nil ..., and one whose commit failed otherwise is told its error";
// Done(nil) only "when the item's way through the pipeline has ended well:
// the sink committed it ... or every output it led to was committed";
// "Done is called at most once per item". Run: "An item for which f
// returned nil or ErrStop is committed".
func TestReview59EarlyEndThroughComposition(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		boom := fmt.Errorf("callback failed")
		for i := range 30 {
			for _, how := range []string{"stop", "error", "cancel"} {
				w := []int{1, 3, -1}[i%3]
				at := 1 + i%17
				name := fmt.Sprintf("%d/%s/w=%d/at=%d", i, how, w, at)
				acks := newR59Acks()
				src := &r59Endless{limit: 60, acks: acks}
				ctx, cancel := context.WithCancel(context.Background())
				merged := r59Composed(src.stream(), w)
				committed := map[int]int{} // source item -> outputs committed
				failedItem := -1
				seen := 0
				var err error
				runcheck.Run(t, name, func() {
					err = stage.Run(ctx, merged, func(_ context.Context, v int, ferr error) error {
						if ferr != nil {
							return ferr
						}
						item := v / 2
						if v < 0 {
							item = -1 - v
						}
						if seen++; seen == at {
							switch how {
							case "stop":
								committed[item]++
								return stage.ErrStop
							case "error":
								failedItem = item
								return boom
							case "cancel":
								cancel()
							}
						}
						committed[item]++
						return nil
					})
				})
				cancel()
				switch how {
				case "stop":
					if err != nil {
						t.Errorf("%s: err = %v, want nil", name, err)
					}
				case "error":
					if err == nil {
						t.Errorf("%s: err = nil, want the callback's error", name)
					}
				}
				for v := range src.produced() {
					f := acks.fate(v)
					switch {
					case f == "multi":
						t.Errorf("%s: item %d told more than once", name, v)
					case v == failedItem:
						if f != "err" {
							t.Errorf("%s: item %d, whose commit failed, told %s; want its error", name, v, f)
						}
					case committed[v] == 3 && f != "nil":
						t.Errorf("%s: item %d had its 3 outputs committed, told %s; want nil", name, v, f)
					case committed[v] < 3 && f == "nil":
						t.Errorf("%s: item %d had %d of its 3 outputs committed, told nil", name, v, committed[v])
					}
				}
			}
		}
	})
}

// r59Composed is the pipeline both tests run: a Tee of in; branch 0 an
// Ordered KeyBy Apply emitting 2v and 2v+1, then Batch/Unbatch; branch 1 an
// unordered KeyBy Map to -1-v; the two merged.
func r59Composed(in stage.Stream[int], w int) stage.Stream[int] {
	b := stage.Tee(in, 2)
	key := stage.KeyBy(func(v int) int { return v % 3 })
	b0 := stage.Apply(b[0], func(_ context.Context, v int, emit func(int) bool) error {
		emit(2 * v)
		emit(2*v + 1)
		return nil
	}, r59Opts(w, true, key)...)
	b0 = stage.Unbatch(stage.Batch(b0, 3, 0))
	b1 := stage.Map(b[1], func(_ context.Context, v int) (int, error) { return -1 - v, nil }, r59Opts(w, false, key)...)
	return stage.Merge(b0, b1)
}
