package stage

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
)

var errR84Item = errors.New("review84: item failed")

// TestReview84RecycledWindowAfterCutShortRuns: a fused Ordered stage's
// window goes back to its pool when the run finishes, whatever ended it.
// Each round cuts a run short while its head (item 0) is held until the
// items after it have returned from the function (so finished items wait
// behind a head that never completes, or one that completes only as the run
// ends): FailFast, a panic or a Goexit in the head's call, the parent
// cancelled from it, ErrStop in the sink. The next runs of the same types
// (a window of another capacity, inputs of other lengths, items of 0, 1 and
// many outputs) must deliver exactly their own outputs, in order, and
// every run must return. Reuse is on only in the child process.
func TestReview84RecycledWindowAfterCutShortRuns(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		recycleReuse = true
		return runcheck.OnGoroutines(2, func(g int) string {
			for round := range 40 {
				ending := (g + round) % 5
				if msg := r84CutShort(ending); msg != "" {
					return fmt.Sprintf("round %d, cut-short run (ending %d): %s", round, ending, msg)
				}
				for k, n := range []int{1, 2, 3, 17, 100} {
					workers := []int{2, 3, 4, 40}[(round+k)%4]
					if msg := r84FullRun(n, workers, round+k); msg != "" {
						return fmt.Sprintf("round %d, full run n=%d w=%d: %s", round, n, workers, msg)
					}
				}
			}
			return ""
		})
	})
	if parent && out != "ok" {
		t.Fatalf("runs over recycled windows went wrong: %s", out)
	}
}

// r84Outs is how many outputs item i of a run of seed s has: 0, 1 or
// several, mixed.
func r84Outs(s, i int) int { return []int{1, 0, 1, 3, 1, 2, 1}[(s+i)%7] }

// r84CutShort runs a fused Ordered FlatMap of 4 workers over 40 items whose
// head waits until 8 later items returned, then ends the run as told.
func r84CutShort(ending int) string {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n, behind = 40, 6 // the window holds 2×4 items: the head and 7 more
	var later atomic.Int32
	ready := make(chan struct{})
	f := func(ctx context.Context, i int) ([]int, error) {
		if i == 0 {
			select {
			case <-ready:
			case <-ctx.Done():
			}
			switch ending {
			case 0:
				return nil, errR84Item
			case 1:
				panic("review84: head panicked")
			case 2:
				runtime.Goexit()
			case 3:
				cancel()
				return nil, ctx.Err()
			}
			return []int{0}, nil // 4: the sink stops at its first output
		}
		if later.Add(1) == behind {
			close(ready)
		}
		r := make([]int, 1+i%3)
		for j := range r {
			r[j] = i*10 + j
		}
		return r, nil
	}
	s := FlatMap(Indexed(n, func(i int) int { return i }), f, Workers(4), Ordered())
	var got []int
	var err error
	returned := false
	done := make(chan struct{})
	go func() { // a Goexit in the head's call may end the sink's goroutine if the call runs there
		defer close(done)
		err = Run(ctx, s, func(_ context.Context, v int, ferr error) error {
			if ferr != nil {
				return ferr
			}
			got = append(got, v)
			if ending == 4 {
				return ErrStop
			}
			return nil
		})
		returned = true
	}()
	<-done
	if !returned {
		return "the sink did not return"
	}
	switch ending {
	case 0:
		if !errors.Is(err, errR84Item) || len(got) != 0 {
			return fmt.Sprintf("FailFast at the head: got %v, %v", got, err)
		}
	case 1:
		var pe *PanicError
		if !errors.As(err, &pe) || len(got) != 0 {
			return fmt.Sprintf("panic at the head: got %v, %v", got, err)
		}
	case 2:
		if !errors.Is(err, ErrGoexit) || len(got) != 0 {
			return fmt.Sprintf("Goexit at the head: got %v, %v", got, err)
		}
	case 3:
		if !errors.Is(err, context.Canceled) || len(got) != 0 {
			return fmt.Sprintf("cancelled at the head: got %v, %v", got, err)
		}
	case 4:
		if err != nil || !slices.Equal(got, []int{0}) {
			return fmt.Sprintf("ErrStop at the first output: got %v, %v", got, err)
		}
	}
	return ""
}

// r84FullRun runs a fused Ordered FlatMap (or Map, by seed) over n items
// and checks its outputs exactly.
func r84FullRun(n, workers, seed int) string {
	var want []int
	for i := range n {
		for j := range r84Outs(seed, i) {
			want = append(want, i*10+j)
		}
	}
	f := func(_ context.Context, i int) ([]int, error) {
		if i%5 == 0 {
			runtime.Gosched() // finish out of order now and then
		}
		r := make([]int, r84Outs(seed, i))
		for j := range r {
			r[j] = i*10 + j
		}
		return r, nil
	}
	src := Indexed(n, func(i int) int { return i })
	var s Stream[int]
	if seed%2 == 0 {
		s = FlatMap(src, f, Workers(workers), Ordered())
	} else {
		// Map: one output per item (-1 for an item of none).
		s = Map(src, func(ctx context.Context, i int) (int, error) {
			r, _ := f(ctx, i)
			if len(r) == 0 {
				return -1, nil
			}
			return r[0], nil
		}, Workers(workers), Ordered())
		want = want[:0]
		for i := range n {
			if r84Outs(seed, i) == 0 {
				want = append(want, -1)
			} else {
				want = append(want, i*10)
			}
		}
	}
	var got []int
	err := Run(context.Background(), s, func(_ context.Context, v int, ferr error) error {
		if ferr != nil {
			return ferr
		}
		got = append(got, v)
		return nil
	})
	if err != nil || !slices.Equal(got, want) {
		return fmt.Sprintf("got %v, %v; want %v", got, err, want)
	}
	return ""
}
