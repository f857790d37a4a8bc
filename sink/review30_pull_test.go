package sink_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview30AllThroughIterPull attacks All's "Breaking out of the loop
// stops the run; the loop statement ends only once every goroutine of the
// run has exited" and the Ack promise for "the one before a break out of
// sink.All" when the iterator is consumed with iter.Pull2, whose stop is the
// break: after stop returns, no goroutine of the run is left, the items
// pulled were told nil, and the others nothing; pulling to the end gives
// every item and then ok false.
func TestReview30AllThroughIterPull(t *testing.T) {
	const n = 10
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	for shname, shape := range r30AckShapes() {
		for _, k := range []int{0, 1, 4, n} {
			label := fmt.Sprintf("%s/pull %d", shname, k)
			a := r30NewAcks()
			var got []int
			runcheck.Run(t, label, func() {
				next, stop := iter.Pull2(sink.All(context.Background(),
					stage.Map(shape(a.source(n)), id, stage.Workers(1))))
				for range k {
					v, err, ok := next()
					if !ok || err != nil {
						t.Errorf("%s: next gave (%v, %v, %v)", label, v, err, ok)
						break
					}
					got = append(got, v)
				}
				if k == n {
					if v, err, ok := next(); ok {
						t.Errorf("%s: after the last item, next gave (%v, %v, true)", label, v, err)
					}
				}
				stop()
			})
			for i, v := range got {
				if v != i {
					t.Fatalf("%s: got %v, want in order", label, got)
				}
			}
			if bad := a.check(n, r30Upto(k), -1, nil); bad != "" {
				t.Errorf("%s: %s", label, bad)
			}
		}
	}
}

// TestReview30SeqOverAllNestedRuns attacks Seq's "when the run ends, early
// or not, the iterator is stopped (its deferred calls run) before the sink
// returns" and All's break promise together, when the iterator of a
// source.Seq is itself a range over sink.All of another pipeline (itself
// over a source.Seq): sink.First of the outer pipeline breaks the outer
// iterator, which breaks the inner loop, which stops the inner run; all of
// it must be over, both iterators' deferred calls run, before First
// returns. A failing inner source (a *stage.SourceError after the items before it went
// through) ends the outer one with a *stage.SourceError
// wrapping the inner error.
func TestReview30SeqOverAllNestedRuns(t *testing.T) {
	boom := errors.New("inner failure")
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	for _, failAt := range []int{-1, 0, 3} {
		for range 10 {
			var innerStopped, outerStopped bool
			inner := source.Seq2(func(yield func(int, error) bool) {
				defer func() { innerStopped = true }()
				for i := 0; i < 100; i++ {
					if i == failAt {
						yield(0, boom)
						return
					}
					if !yield(i, nil) {
						return
					}
				}
			})
			innerPipe := stage.Map(inner, func(_ context.Context, v int) (int, error) {
				return v * 10, nil
			}, stage.Workers(3), stage.Ordered())
			outer := source.Seq2(func(yield func(int, error) bool) {
				defer func() { outerStopped = true }()
				for v, err := range sink.All(context.Background(), innerPipe) {
					if !yield(v, err) {
						return
					}
				}
			})
			var v int
			var found bool
			var err error
			runcheck.Run(t, "nested", func() {
				v, found, err = sink.First(context.Background(), stage.Map(outer, id, stage.Workers(2), stage.Ordered()))
			})
			if !innerStopped || !outerStopped {
				t.Fatalf("failAt %d: First returned before the iterators were stopped (inner %v, outer %v)", failAt, innerStopped, outerStopped)
			}
			switch failAt {
			case 0:
				var se *stage.SourceError
				if found || !errors.As(err, &se) || !errors.Is(err, boom) {
					t.Fatalf("failAt 0: (%v, %v, %v), want a *SourceError wrapping the inner failure", v, found, err)
				}
			default:
				if v != 0 || !found || err != nil {
					t.Fatalf("failAt %d: (%v, %v, %v), want (0, true, nil)", failAt, v, found, err)
				}
			}
		}
	}
}
