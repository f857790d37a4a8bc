package stage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
)

// TestReview84RecycledWindowRandomShapes: with reuse on (in a child
// process), four goroutines run, each 600 times, an Ordered stage of a
// shape the seed picks, so that fused windows pass between runs of other
// capacities (Workers 2, 3, 4, 40) and lengths (0 to 100), next to
// unfused ones (Workers 1, -1, Buffer, Apply): FlatMap (0, 1 or many
// outputs an item), Map, Filter, Apply; Retry whose first attempt fails
// (an Apply's after it emitted nothing), Forward errors in the outputs;
// an Indexed source whose at panics at one position (a lost index the
// window closes); consumers that keep the order (the sink, Workers(1),
// KeyBy and Workers(-1) Ordered stages, Batch/Unbatch, Merge). Each run
// delivers exactly its outputs in input order; with a lost index, every
// output of the items before it and then a prefix of the rest's, and the
// run fails with a *SourceError.
func TestReview84RecycledWindowRandomShapes(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		recycleReuse = true
		return runcheck.OnGoroutines(4, func(g int) string {
			rng := rand.New(rand.NewPCG(uint64(g), 1234))
			for i := range 600 {
				if msg := r84RandomShape(rng); msg != "" {
					return fmt.Sprintf("run %d: %s", i, msg)
				}
			}
			return ""
		})
	})
	if parent && out != "ok" {
		t.Fatalf("%s", out)
	}
}

// r84RandomShape runs one shape that rng picks and reports what was wrong.
func r84RandomShape(rng *rand.Rand) string {
	n := []int{0, 1, 2, 3, 5, 17, 64, 100}[rng.IntN(8)]
	workers := []int{2, 3, 4, 40, 1, -1}[rng.IntN(6)]
	buffer := []int{0, 0, 0, 1}[rng.IntN(4)]
	gap := -1
	if rng.IntN(5) == 0 && n > 0 {
		gap = rng.IntN(n)
	}
	kind := rng.IntN(4)
	consumer := rng.IntN(6)
	retry := rng.IntN(4) == 0
	fwd := rng.IntN(3) == 0
	outs := make([]int, n)
	spin := make([]int, n)
	fail := make([]bool, n)
	for i := range n {
		outs[i] = []int{0, 1, 1, 1, 2, 3}[rng.IntN(6)]
		spin[i] = rng.IntN(30)
		fail[i] = fwd && rng.IntN(5) == 0
	}
	if kind == 1 { // Map: one output
		for i := range outs {
			outs[i] = 1
		}
	}
	if kind == 2 { // Filter
		for i := range outs {
			outs[i] = min(outs[i], 1)
		}
	}
	var want []int // -(i+1): item i's forwarded error
	before := 0    // outputs of the items before the lost one
	for i := range n {
		if i == gap {
			before = len(want)
			continue
		}
		if fail[i] {
			want = append(want, -(i + 1))
			continue
		}
		for j := range outs[i] {
			want = append(want, i*10+j)
		}
	}
	var mu sync.Mutex
	tried := map[int]bool{}
	first := func(i int) bool { // the first attempt of item i fails under retry
		mu.Lock()
		defer mu.Unlock()
		if tried[i] {
			return false
		}
		tried[i] = true
		return true
	}
	src := Indexed(n, func(i int) int {
		if i == gap {
			panic("r84 gap")
		}
		return i
	})
	opts := []Option{Workers(workers), Ordered()}
	if buffer > 0 {
		opts = append(opts, Buffer(buffer))
	}
	if retry {
		opts = append(opts, Retry(2, time.Microsecond))
	}
	if fwd {
		opts = append(opts, OnError(Forward))
	}
	work := func(i int) error {
		for range spin[i] {
			runtime.Gosched()
		}
		if retry && i%3 == 0 && first(i) {
			return errR84Item
		}
		if fail[i] {
			return errR84Item
		}
		return nil
	}
	var s Stream[int]
	switch kind {
	case 0:
		s = FlatMap(src, func(_ context.Context, i int) ([]int, error) {
			if err := work(i); err != nil {
				return nil, err
			}
			r := make([]int, outs[i])
			for j := range r {
				r[j] = i*10 + j
			}
			return r, nil
		}, opts...)
	case 1:
		s = Map(src, func(_ context.Context, i int) (int, error) {
			if err := work(i); err != nil {
				return 0, err
			}
			return i * 10, nil
		}, opts...)
	case 2:
		s = Map(Filter(src, func(_ context.Context, i int) (bool, error) {
			if err := work(i); err != nil {
				return false, err
			}
			return outs[i] == 1, nil
		}, opts...), func(_ context.Context, i int) (int, error) { return i * 10, nil }, Workers(1))
	case 3:
		s = Apply(src, func(_ context.Context, i int, emit func(int) bool) error {
			firstFail := retry && i%3 == 0 && first(i)
			for j := range outs[i] {
				if firstFail || fail[i] {
					break
				}
				for range spin[i] / 4 {
					runtime.Gosched()
				}
				emit(i*10 + j)
			}
			if firstFail || fail[i] {
				return errR84Item
			}
			return nil
		}, opts...)
	}
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	switch consumer {
	case 1:
		s = Map(s, id, Workers(1))
	case 2:
		s = Map(s, id, Workers(3), KeyBy(func(v int) int { return v % 2 }), Ordered())
	case 3:
		s = Map(s, id, Workers(-1), Ordered())
	case 4:
		s = Unbatch(Batch(s, 3, 0))
	case 5:
		s = Merge(s)
	}
	var got []int
	err := Run(context.Background(), s, func(_ context.Context, v int, ferr error) error {
		if ferr != nil {
			var e *Error
			if !errors.As(ferr, &e) {
				return ferr
			}
			got = append(got, -(e.Index + 1))
			return nil
		}
		got = append(got, v)
		return nil
	})
	desc := fmt.Sprintf("n=%d w=%d b=%d gap=%d kind=%d consumer=%d retry=%v fwd=%v", n, workers, buffer, gap, kind, consumer, retry, fwd)
	if gap < 0 {
		if err != nil || !slices.Equal(got, want) {
			return fmt.Sprintf("%s: got %v, %v; want %v", desc, got, err, want)
		}
		return ""
	}
	var se *SourceError
	if !errors.As(err, &se) || len(got) < before || len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
		return fmt.Sprintf("%s: got %v, %v; want a prefix of %v", desc, got, err, want)
	}
	return ""
}
