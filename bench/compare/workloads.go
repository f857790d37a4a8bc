package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// A workload is one pipeline shape, run by every contender that can express
// it. Each contender returns a checksum, which must equal want: the sum of
// its outputs (inputs start at 1, so a lost or repeated item changes it),
// or, for a contender named in inOrder, the order-sensitive fold of its
// outputs (see fold), which must equal wantOrder.
type workload struct {
	name  string
	items int // per run: ns/item divides by this
	want  int
	// inOrder names the contenders that promise the input's order; their
	// checksum is fold's.
	inOrder   []string
	wantOrder int
	// baseline is the contender the ratios are taken against.
	baseline string
	runs     map[string]func() int // contender -> one run
	// efficiency reports ideal/actual instead of ns/item (latency-bound).
	ideal time.Duration
}

// sizes of the workloads; the test runs them small.
type sizes struct {
	items      int // no-op workloads
	latItems   int // latency-bound items
	latWorkers int
	latSleep   time.Duration
}

var full = sizes{items: 100_000, latItems: 2_000, latWorkers: 50, latSleep: time.Millisecond}

// ints is 1..n: no item is 0, so that every item counts in a sum.
func ints(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i + 1
	}
	return xs
}

func double(x int) int { return 2 * x }

// sumDouble is the sum of double over 1..n.
func sumDouble(n int) int { return n * (n + 1) }

// fold is the order-sensitive checksum an ordered contender keeps: any two
// outputs swapped change it.
func fold(h, y int) int { return h*31 + y }

// foldDouble is fold over double of 1..n, in order.
func foldDouble(n int) int {
	h := 0
	for x := 1; x <= n; x++ {
		h = fold(h, double(x))
	}
	return h
}

// chainWant is the checksum of map(+1) -> filter(even) -> map(×3) over 1..n.
func chainWant(n int) int {
	s := 0
	for x := 1; x <= n; x++ {
		if (x+1)%2 == 0 {
			s += 3 * (x + 1)
		}
	}
	return s
}

// workloads builds every workload at the given sizes.
func workloads(z sizes) []workload {
	in := ints(z.items)
	n := z.items
	var ws []workload
	for _, w := range []int{4, 16} {
		ws = append(ws, workload{
			name: "Map unordered, no-op, slice source, " + itoa(w) + " workers", items: n, want: sumDouble(n),
			baseline: "hand-written",
			runs: map[string]func() int{
				"sluice":       func() int { return sluiceMap(in, w, false) },
				"rill":         func() int { return rillMap(in, w, false) },
				"conc pool":    func() int { return concPoolMap(in, w) },
				"errgroup":     func() int { return errgroupMap(in, w) },
				"hand-written": func() int { return handMap(in, w) },
			},
		}, workload{
			// The baseline is the unordered pool: what order costs
			// against not keeping it.
			name: "Map ordered, no-op, slice source, " + itoa(w) + " workers", items: n, want: sumDouble(n),
			inOrder: []string{"sluice", "rill", "conc stream", "hand-written ord"}, wantOrder: foldDouble(n),
			baseline: "hand-written",
			runs: map[string]func() int{
				"sluice":           func() int { return sluiceMap(in, w, true) },
				"rill":             func() int { return rillMap(in, w, true) },
				"conc stream":      func() int { return concStreamMap(in, w) },
				"hand-written":     func() int { return handMap(in, w) },
				"hand-written ord": func() int { return handOrderedMap(in, w) },
			},
		})
	}
	ws = append(ws,
		workload{
			name: "Map, 1 worker (sequential path)", items: n, want: sumDouble(n), baseline: "hand-written",
			runs: map[string]func() int{
				"sluice":       func() int { return sluiceMap(in, 1, false) },
				"rill":         func() int { return rillMap(in, 1, false) },
				"hand-written": func() int { return handMap(in, 1) },
			},
		},
		workload{
			name: "Chain map -> filter -> map, 4 workers each", items: n, want: chainWant(n), baseline: "hand-written",
			runs: map[string]func() int{
				"sluice":       func() int { return sluiceChain(in, 4) },
				"rill":         func() int { return rillChain(in, 4) },
				"hand-written": func() int { return handChain(in, 4) },
			},
		},
		workload{
			name: "Map over a generator function, 4 workers", items: n, want: sumDouble(n), baseline: "hand-written",
			runs: map[string]func() int{
				"sluice":           func() int { return sluiceFuncMap(n, 4, true) },
				"sluice, may wait": func() int { return sluiceFuncMap(n, 4, false) },
				"rill":             func() int { return rillFuncMap(n, 4) },
				"hand-written":     func() int { return handFuncMap(n, 4) },
			},
		},
		workload{
			name: "Merge of 4 slice sources", items: n, want: 2 * (n / 4) * (n/4 + 1), baseline: "hand-written",
			runs: map[string]func() int{
				"sluice":       func() int { return sluiceMerge(in[:n/4]) },
				"rill":         func() int { return rillMerge(in[:n/4]) },
				"hand-written": func() int { return handMerge(in[:n/4]) },
			},
		},
	)
	lat := ints(z.latItems)
	ws = append(ws, workload{
		name:  "Latency-bound: " + itoa(z.latItems) + " items × " + z.latSleep.String() + " sleep, " + itoa(z.latWorkers) + " workers",
		items: z.latItems, want: sumDouble(z.latItems), baseline: "hand-written",
		ideal: time.Duration(z.latItems) * z.latSleep / time.Duration(z.latWorkers),
		runs: map[string]func() int{
			"sluice":       func() int { return sluiceSleep(lat, z.latWorkers, z.latSleep) },
			"rill":         func() int { return rillSleep(lat, z.latWorkers, z.latSleep) },
			"conc pool":    func() int { return concPoolSleep(lat, z.latWorkers, z.latSleep) },
			"errgroup":     func() int { return errgroupSleep(lat, z.latWorkers, z.latSleep) },
			"hand-written": func() int { return handSleep(lat, z.latWorkers, z.latSleep) },
		},
	})
	ws = append(ws, smallRuns()...)
	ws = append(ws, manySmallRuns(z.items/100))
	return ws
}

// smallRuns: the per-request fan-out, a run of n items with 4 workers into
// a slice, repeated until 10,000 items went through; ns/item × n is the
// cost of one run.
func smallRuns() []workload {
	var ws []workload
	for _, n := range []int{1, 10, 100, 1000} {
		in := ints(n)
		reps := 10_000 / n
		repeat := func(run func([]int) []int, inOrder bool) func() int {
			return func() int {
				s := 0
				for range reps {
					s += runSum(run(in), n, inOrder)
				}
				return s
			}
		}
		ws = append(ws, workload{
			name: "Small runs: Map over " + itoa(n) + " items into a slice, 4 workers (× " + itoa(n) + " for a run's cost)", items: reps * n, want: reps * sumDouble(n), baseline: "errgroup",
			runs: fanOuts(repeat),
		})
	}
	return ws
}

// fanOuts is every contender's per-request fan-out (4 workers, into a
// slice), each made a workload's run by how; inOrder says whether its
// results come in the input's order (each in its slot, or Ordered()), which
// the run's check then holds it to.
func fanOuts(how func(run func([]int) []int, inOrder bool) func() int) map[string]func() int {
	return map[string]func() int{
		"sluice Map":         how(func(in []int) []int { return sluiceSliceMap(in, 4, false) }, false),
		"sluice Map Ordered": how(func(in []int) []int { return sluiceSliceMap(in, 4, true) }, true),
		"sluice Concurrent":  how(func(in []int) []int { return sluiceSliceConcurrent(in, 4) }, false),
		"errgroup":           how(func(in []int) []int { return errgroupSlice(in, 4) }, true),
		"errgroup ctx":       how(func(in []int) []int { return errgroupSliceCtx(in, 4) }, true),
		"conc pool":          how(func(in []int) []int { return concSlice(in, 4) }, false),
		"rill":               how(func(in []int) []int { return rillSlice(in, 4) }, false),
		"hand-written":       how(func(in []int) []int { return handSlice(in, 4) }, true),
	}
}

// runSum is the sum of one fan-out's results over 1..n, or, if there are
// not n of them or (inOrder) one is not in its input's place, a value no
// sum of results can reach, which fails the workload's check. Every
// contender pays the same pass over its results (the places are compared
// for all), so that the check weighs alike on each.
func runSum(out []int, n int, inOrder bool) int {
	const wrong = -1 << 40
	if len(out) != n {
		return wrong
	}
	s, misplaced := 0, 0
	for i, v := range out {
		misplaced |= v ^ double(i+1) // no branch: the same work in any order
		s += v
	}
	if inOrder && misplaced != 0 {
		return wrong
	}
	return s
}

// manySmallRuns is a service under load fanning out per request: callers
// goroutines at once (1,000 at full size), each running 10 runs of 10
// items.
func manySmallRuns(callers int) workload {
	const runsEach, n = 10, 10
	in := ints(n)
	many := func(run func([]int) []int, inOrder bool) func() int {
		return func() int {
			var total atomic.Int64
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					s := 0
					for range runsEach {
						s += runSum(run(in), n, inOrder)
					}
					total.Add(int64(s))
				})
			}
			wg.Wait()
			return int(total.Load())
		}
	}
	return workload{
		name:  "Many small runs at once: " + itoa(callers) + " goroutines × 10 runs of Map over 10 items, 4 workers (× 10 for a run's cost)",
		items: callers * runsEach * n, want: callers * runsEach * sumDouble(n), baseline: "errgroup",
		runs: fanOuts(many),
	}
}
