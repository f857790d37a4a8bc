package stage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// r84Model drives one reorder window from one goroutine with several
// workers' outlets.
func r84Model(t *testing.T, seed uint64, eager bool, hint, nWorkers, n int) {
	rng := rand.New(rand.NewPCG(seed, 5))
	r := newRun(context.Background())
	defer r.finish()
	q := newQueue[int](r, 1<<20, 1)
	ord := newReorder(1<<19, q, eager, hint)
	ws := make([]*orderOut[int], nWorkers)
	for i := range ws {
		ws[i] = &orderOut[int]{queueOut: queueOut[int]{q: q}, ord: ord, eager: eager}
	}
	outs := make([]int, n)
	gap := make([]bool, n)
	for i := range n {
		outs[i] = []int{0, 1, 1, 1, 2, 3, 5}[rng.IntN(7)]
		gap[i] = rng.IntN(10) == 0
	}
	cur := make([]int, nWorkers)  // item of worker, -1 idle
	done := make([]int, nWorkers) // outputs put so far
	for i := range cur {
		cur[i] = -1
	}
	next := 0
	check := func() {
		ord.mu.Lock()
		defer ord.mu.Unlock()
		seen := map[uintptr]int{}
		for i, s := range ord.slots {
			if cap(s.items) == 0 {
				continue
			}
			p := uintptr(unsafe.Pointer(unsafe.SliceData(s.items[:1])))
			if j, ok := seen[p]; ok {
				t.Fatalf("seed %d: slots %d and %d share a buffer", seed, i, j)
			}
			seen[p] = i
			for k, w := range ws {
				if p == uintptr(unsafe.Pointer(&w.one[0])) {
					t.Fatalf("seed %d: slot %d holds worker %d's own room", seed, i, k)
				}
				if cap(w.buf) > 0 && p == uintptr(unsafe.Pointer(unsafe.SliceData(w.buf[:1]))) {
					t.Fatalf("seed %d: slot %d shares worker %d's buffer", seed, i, k)
				}
			}
		}
	}
	for steps := 0; ; steps++ {
		var busy []int
		var idle []int
		for w, c := range cur {
			if c >= 0 {
				busy = append(busy, w)
			} else {
				idle = append(idle, w)
			}
		}
		if len(busy) == 0 && next >= n {
			break
		}
		if next < n && len(idle) > 0 && (len(busy) == 0 || rng.IntN(3) == 0) {
			if !q.tryAcquire() {
				t.Fatal("no token")
			}
			if gap[next] {
				if _, em := ord.complete(next, nil, true); em {
					ord.emit()
				}
				next++
				continue
			}
			w := idle[rng.IntN(len(idle))]
			ws[w].begin(next)
			cur[w], done[w] = next, 0
			next++
			continue
		}
		w := busy[rng.IntN(len(busy))]
		idx := cur[w]
		if done[w] < outs[idx] && rng.IntN(4) != 0 {
			if !ws[w].put(item[int]{v: idx*10 + done[w]}) {
				t.Fatal("put refused")
			}
			done[w]++
		} else if done[w] == outs[idx] {
			if !ws[w].end() {
				t.Fatal("end refused")
			}
			cur[w] = -1
		}
		check()
	}
	q.closeWriter()
	var got, want []int
	for {
		it, _, ok := q.pull()
		if !ok {
			break
		}
		got = append(got, it.v)
	}
	for i := range n {
		if gap[i] {
			continue
		}
		for j := range outs[i] {
			want = append(want, i*10+j)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("seed %d eager %v hint %d workers %d: got %v\nwant %v", seed, eager, hint, nWorkers, got, want)
	}
	for i, s := range ord.slots {
		if s.done || s.single || len(s.items) != 0 || s.tok || s.parked != 0 {
			t.Fatalf("seed %d: slot %d left %+v", seed, i, s)
		}
	}
	if ord.parked != 0 || ord.emitting {
		t.Fatalf("seed %d: parked %d emitting %v", seed, ord.parked, ord.emitting)
	}
	q.releaseHeld()
	if f := q.free.Load(); f != 1<<20 {
		t.Fatalf("seed %d eager %v: %s", seed, eager, fmt.Sprintf("%d tokens free after every output was taken, want %d", f, 1<<20))
	}
}

// TestReview84ModelWindow drives one reorder window from one goroutine
// (so every interleaving is the seed's, and the verdict deterministic)
// through one to five workers' outlets (orderOut, as the stage's workers
// use them): items start in index order and finish in a random order,
// putting 0, 1 or many outputs one at a time (a head of 2, 4, ...
// buffered outputs streams; an Apply's parks), some indexes lost (closed as
// done with their token, as applier.lost does), over rings that start at
// 1, 1, 2, 4 or 128 slots or unbounded by the hint and grow while outputs
// wait in them. After every step no slot's buffer is another slot's, a
// worker's own room or a worker's buffer; at the end the queue holds every
// output exactly once, in input order, every token came back, and the
// window is empty.
func TestReview84ModelWindow(t *testing.T) {
	for seed := range uint64(300) {
		for _, eager := range []bool{false, true} {
			hint := []int{-1, 0, 1, 2, 3, 100}[seed%6]
			r84Model(t, seed, eager, hint, 1+int(seed%5), 40)
		}
	}
}
