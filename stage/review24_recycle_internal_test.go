package stage

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
)

// engine_recycle.go: "once finish has waited for every goroutine of the
// run and its hooks, and has run the cleanups, nothing uses a recycled
// state again". TestRecycledStatesServeConcurrentRuns checks single fused
// stages; this checks the shapes around them, with reuse on (in a child
// process, the only place where states are reused): the same pipeline
// descriptions run many times and concurrently, fused chains of different
// worker counts, fused stages after FlatMap, Batch/Unbatch, KeyBy and Tee
// (Merge back), Ordered after an unordered fused stage and the reverse,
// 0-, 1- and 2-item runs, and every way a run ends: the end of the input,
// a FailFast error, ErrStop, a cancelled parent, a Goexit in a stage's
// function and a panic in the sink's callback. Each run's result is
// checked exactly where it is determined (a state leaking from one run
// into another would mix, lose or duplicate items, or hang).
func TestReview24RecycledStatesAcrossShapesAndEndings(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		recycleReuse = true // the child runs this test only
		shapes := r24Shapes()
		var runs sync.Map // (goroutine, run) -> done: every run was made
		if out := runcheck.OnGoroutines(6, func(g int) string {
			for i := range 300 {
				sh := shapes[(g*7+i)%len(shapes)]
				n := []int{0, 1, 2, 5, 40}[(g+i)%5]
				if msg := r24RunShape(sh, n, i%6); msg != "" {
					return fmt.Sprintf("run %d, %s n=%d ending %d: %s", i, sh.name, n, i%6, msg)
				}
				runs.Store([2]int{g, i}, true)
			}
			return ""
		}); out != "ok" {
			return out
		}
		count := 0
		runs.Range(func(any, any) bool { count++; return true })
		if count != 6*300 {
			return fmt.Sprintf("%d runs made, want %d", count, 6*300)
		}
		return "ok"
	})
	if parent && out != "ok" {
		t.Fatalf("runs over recycled states went wrong: %s", out)
	}
}

type r24Shape struct {
	name    string
	build   func(n int, f func(context.Context, int) (int, error)) Stream[int]
	mult    int  // outputs per input item
	ordered bool // outputs in input order (a recycled reorder window)
}

func r24Shapes() []r24Shape {
	w := func(n int) Option { return Workers(n) }
	return []r24Shape{
		{"fused chain 4>2", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			s := Map(Indexed(n, func(i int) int { return i }), f, w(4))
			return Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, w(2))
		}, 1, false},
		{"flatmap then fused map", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			s := FlatMap(Indexed(n, func(i int) int { return i }), func(_ context.Context, v int) ([]int, error) { return []int{v, v}, nil }, w(3))
			return Map(s, f, w(3))
		}, 2, false},
		{"batch unbatch fused", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			s := Unbatch(Batch(Indexed(n, func(i int) int { return i }), 3, 0))
			return Filter(Map(s, f, w(2)), func(context.Context, int) (bool, error) { return true, nil }, w(2))
		}, 1, false},
		{"keyby then fused", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			s := Map(Indexed(n, func(i int) int { return i }), f, w(3), KeyBy(func(v int) int { return v % 2 }))
			return Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, w(3))
		}, 1, false},
		{"tee fused merge", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			b := Tee(Map(Indexed(n, func(i int) int { return i }), f, w(2)), 2)
			return Merge(Map(b[0], func(_ context.Context, v int) (int, error) { return v, nil }, w(2)),
				Map(b[1], func(_ context.Context, v int) (int, error) { return v, nil }, w(4)))
		}, 2, false},
		{"ordered after fused", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			s := Map(Indexed(n, func(i int) int { return i }), f, w(4))
			return Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, w(4), Ordered())
		}, 1, false},
		{"fused after ordered", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			s := Map(Indexed(n, func(i int) int { return i }), f, w(3), Ordered())
			return Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, w(3))
		}, 1, false},
		{"serial fused flatmap", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			s := Map(Indexed(n, func(i int) int { return i }), f, w(1))
			return FlatMap(s, func(_ context.Context, v int) ([]int, error) { return []int{v}, nil }, w(2))
		}, 1, false},
		// An Ordered stage fused into the sink: its reorder window is
		// recycled too, ring and all, across runs of other sizes.
		{"ordered fused into the sink", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			return Map(Indexed(n, func(i int) int { return i }), f, w(4), Ordered())
		}, 1, true},
		{"ordered flatmap fused into the sink", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			return FlatMap(Indexed(n, func(i int) int { return i }), func(ctx context.Context, v int) ([]int, error) {
				x, err := f(ctx, v)
				return []int{x, x}, err
			}, w(3), Ordered())
		}, 2, true},
		{"ordered wide fused into the sink", func(n int, f func(context.Context, int) (int, error)) Stream[int] {
			return Map(Indexed(n, func(i int) int { return i }), f, w(40), Ordered())
		}, 1, true},
	}
}

var errR24Item = errors.New("review24: item failed")

// r24RunShape runs sh over n items, ending as told, and reports what was
// wrong with the result, or "".
func r24RunShape(sh r24Shape, n, ending int) (msg string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	last := n - 1
	f := func(_ context.Context, v int) (int, error) { return v, nil }
	switch ending {
	case 1: // FailFast at the last item
		f = func(_ context.Context, v int) (int, error) {
			if v == last {
				return 0, errR24Item
			}
			return v, nil
		}
	case 3: // the parent cancelled from inside a call
		f = func(_ context.Context, v int) (int, error) { cancel(); return v, nil }
	case 4: // Goexit in a call (t.Fatal in the function)
		f = func(_ context.Context, v int) (int, error) {
			if v == last {
				runtime.Goexit()
			}
			return v, nil
		}
	}
	var got []int
	stops := 0
	var err error
	// The sink runs in a goroutine of its own: a fused stage may call the
	// function in the sink's goroutine, which a Goexit then ends (the sink
	// never returns: "Goexit on the sink's goroutine ends the sink").
	returned := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil && p != "review24 sink panic" {
				panic(p)
			}
		}()
		err = Run(ctx, sh.build(n, f), func(_ context.Context, v int, ferr error) error {
			if ferr != nil {
				return ferr
			}
			got = append(got, v)
			switch ending {
			case 2:
				stops++
				return ErrStop
			case 5:
				panic("review24 sink panic")
			}
			return nil
		})
		returned = true
	}()
	<-done
	if !returned && ending != 5 {
		if ending == 4 {
			return "" // the Goexit ended the sink's goroutine
		}
		return "the sink did not return"
	}
	if sh.ordered && !slices.IsSorted(got) {
		return fmt.Sprintf("out of input order: %v", got)
	}
	switch ending {
	case 0:
		want := make([]int, 0, n*sh.mult)
		for i := range n {
			for range sh.mult {
				want = append(want, i)
			}
		}
		slices.Sort(got)
		if err != nil || !slices.Equal(got, want) {
			return fmt.Sprintf("got %v, %v; want %v", got, err, want)
		}
	case 1:
		if n > 0 && !errors.Is(err, errR24Item) {
			return fmt.Sprintf("FailFast run: %v", err)
		}
	case 2:
		if err != nil || stops != min(n, 1) {
			return fmt.Sprintf("ErrStop run: %d stops, %v", stops, err)
		}
	case 3:
		if n > 0 && !errors.Is(err, context.Canceled) {
			return fmt.Sprintf("cancelled run: %v", err)
		}
	case 4:
		if n > 0 && !errors.Is(err, ErrGoexit) {
			return fmt.Sprintf("Goexit run: %v", err)
		}
	}
	for _, v := range got {
		if v < 0 || v >= max(n, 1) {
			return fmt.Sprintf("a value %d that no item of this run makes", v)
		}
	}
	return ""
}
