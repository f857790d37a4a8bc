package stage_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review81: an Ordered stage of several workers, without a Buffer, over a
// source that never waits, consumed by one goroutine, may run calls of its
// function in its consumer's goroutine (stage.Workers). These helpers
// build such pipelines with calls of varying cost and check what the docs
// promise of them.

// r81watchdog is a hang detector only: no verdict depends on it.
const r81watchdog = 60 * time.Second

// r81spin busies the goroutine for d: a call's cost, never a
// synchronisation.
func r81spin(d time.Duration) {
	if d <= 0 {
		return
	}
	for start := time.Now(); time.Since(start) < d; {
	}
}

// r81run is one run's state: how often each item's function was called,
// and a gate the slow head item waits on (closed by the call of item
// headPeer, or given up after a short while: the result must not depend on
// which).
type r81run struct {
	n        int
	calls    []atomic.Int32
	headPeer int
	headGate chan struct{}
	gateOnce atomic.Bool
}

func newR81run(n, workers int) *r81run {
	r := &r81run{n: n, calls: make([]atomic.Int32, n), headGate: make(chan struct{})}
	r.headPeer = min(workers, n-1)
	return r
}

// called records a call of item i and opens the head gate if i is the
// head's peer.
func (r *r81run) called(i int) {
	r.calls[i].Add(1)
	if i == r.headPeer && r.gateOnce.CompareAndSwap(false, true) {
		close(r.headGate)
	}
}

// exactlyOnce fails t unless every item's function was called once.
func (r *r81run) exactlyOnce(t *testing.T, label string) {
	t.Helper()
	for i := range r.calls {
		if c := r.calls[i].Load(); c != 1 {
			t.Fatalf("%s: item %d: function called %d times, want exactly once", label, i, c)
		}
	}
}

// r81profile is the cost of a call of item i of n.
type r81profile struct {
	name string
	cost func(r *r81run, i int)
}

const (
	r81cheap = 0
	r81slow  = 60 * time.Microsecond // over the ~20 µs the docs call slow
)

var r81profiles = []r81profile{
	{"cheap", func(r *r81run, i int) {}},
	{"cheapThenSlow", func(r *r81run, i int) {
		if i >= r.n/2 {
			r81spin(r81slow)
		}
	}},
	{"slowThenCheap", func(r *r81run, i int) {
		if i < r.n/2 {
			r81spin(r81slow)
		}
	}},
	{"random", func(r *r81run, i int) {
		rng := rand.New(rand.NewPCG(uint64(i), uint64(r.n)))
		switch rng.IntN(10) {
		case 0:
			r81spin(300 * time.Microsecond)
		case 1, 2:
			r81spin(r81slow)
		case 3, 4:
			r81spin(5 * time.Microsecond)
		}
	}},
	{"slowHead", func(r *r81run, i int) {
		if i == 0 && r.n > 1 {
			select {
			case <-r.headGate:
			case <-time.After(20 * time.Millisecond):
			}
			r81spin(r81slow)
		}
	}},
	{"alternate", func(r *r81run, i int) {
		if i%2 == 1 {
			r81spin(r81slow)
		}
	}},
	{"cheapSlowTail", func(r *r81run, i int) {
		if i == r.n-1 {
			r81spin(2 * time.Millisecond)
		}
	}},
}

// r81sink runs s and returns the values in the order the sink delivered
// them. first reports that the sink stops after the first item.
type r81sink struct {
	name  string
	first bool
	run   func(t *testing.T, ctx context.Context, s stage.Stream[int]) ([]int, error)
}

var r81sinks = []r81sink{
	{"Slice", false, func(t *testing.T, ctx context.Context, s stage.Stream[int]) ([]int, error) {
		return sink.Slice(ctx, s)
	}},
	{"All", false, func(t *testing.T, ctx context.Context, s stage.Stream[int]) ([]int, error) {
		var got []int
		for v, err := range sink.All(ctx, s) {
			if err != nil {
				return got, err
			}
			got = append(got, v)
		}
		return got, nil
	}},
	{"ForEach", false, func(t *testing.T, ctx context.Context, s stage.Stream[int]) ([]int, error) {
		var got []int
		err := sink.ForEach(ctx, s, func(_ context.Context, v int) error {
			got = append(got, v)
			return nil
		})
		return got, err
	}},
	{"First", true, func(t *testing.T, ctx context.Context, s stage.Stream[int]) ([]int, error) {
		v, ok, err := sink.First(ctx, s)
		if ok {
			return []int{v}, err
		}
		return nil, err
	}},
	{"Run", false, func(t *testing.T, ctx context.Context, s stage.Stream[int]) ([]int, error) {
		var got []int
		me := r81gid()
		var bad atomic.Int32
		var inF atomic.Int32
		err := stage.Run(ctx, s, func(_ context.Context, v int, err error) error {
			if inF.Add(1) != 1 {
				bad.Add(1)
			}
			defer inF.Add(-1)
			if r81gid() != me {
				bad.Add(1)
			}
			if err != nil {
				return err
			}
			got = append(got, v)
			return nil
		})
		if bad.Load() != 0 {
			t.Errorf("stage.Run: f called off the caller's goroutine or concurrently (%d times)", bad.Load())
		}
		return got, err
	}},
}

// r81pipe builds a pipeline of n items whose last stage is under test and
// returns the expected output, in order.
type r81pipe struct {
	name  string
	build func(r *r81run, p r81profile, n, workers int, src stage.Stream[int]) (stage.Stream[int], []int)
}

func r81ints(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

// r81flat is how many outputs item i of FlatMap emits: 0..3, and big for
// the middle item when big > 0.
func r81flat(i, n, big int) int {
	if big > 0 && i == n/2 {
		return big
	}
	return i % 4
}

func r81flatPipe(big int) func(r *r81run, p r81profile, n, workers int, src stage.Stream[int]) (stage.Stream[int], []int) {
	return func(r *r81run, p r81profile, n, workers int, src stage.Stream[int]) (stage.Stream[int], []int) {
		var want []int
		for i := range n {
			for j := range r81flat(i, n, big) {
				want = append(want, i*10000+j)
			}
		}
		return stage.FlatMap(src, func(_ context.Context, v int) ([]int, error) {
			r.called(v)
			p.cost(r, v)
			out := make([]int, r81flat(v, n, big))
			for j := range out {
				out[j] = v*10000 + j
			}
			return out, nil
		}, stage.Workers(workers), stage.Ordered()), want
	}
}

var r81pipes = []r81pipe{
	{"Map", func(r *r81run, p r81profile, n, workers int, src stage.Stream[int]) (stage.Stream[int], []int) {
		want := make([]int, n)
		for i := range want {
			want[i] = 3*i + 1
		}
		return stage.Map(src, func(_ context.Context, v int) (int, error) {
			r.called(v)
			p.cost(r, v)
			return 3*v + 1, nil
		}, stage.Workers(workers), stage.Ordered()), want
	}},
	{"Filter", func(r *r81run, p r81profile, n, workers int, src stage.Stream[int]) (stage.Stream[int], []int) {
		var want []int
		for i := range n {
			if i%3 != 1 {
				want = append(want, i)
			}
		}
		return stage.Filter(src, func(_ context.Context, v int) (bool, error) {
			r.called(v)
			p.cost(r, v)
			return v%3 != 1, nil
		}, stage.Workers(workers), stage.Ordered()), want
	}},
	{"FlatMap", r81flatPipe(0)},
	{"Concurrent", func(r *r81run, p r81profile, n, workers int, src stage.Stream[int]) (stage.Stream[int], []int) {
		want := make([]int, n)
		for i := range want {
			want[i] = -i
		}
		tasks := stage.Map(src, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
			return func(context.Context) (int, error) {
				r.called(v)
				p.cost(r, v)
				return -v, nil
			}, nil
		}, stage.Workers(1))
		return stage.Concurrent(tasks, stage.Workers(workers), stage.Ordered()), want
	}},
}

// r81sources are sources that never wait, yielding 0..n-1.
var r81sources = []struct {
	name string
	make func(n int) stage.Stream[int]
}{
	{"Slice", func(n int) stage.Stream[int] { return source.Slice(r81ints(n)) }},
	{"Indexed", func(n int) stage.Stream[int] { return stage.Indexed(n, func(i int) int { return i }) }},
	{"NeverWaits", func(n int) stage.Stream[int] { return r81counter(n, nil) }},
}

// r81counter is a NeverWaits source of 0..n-1 (a fresh counter per run);
// pulled, if not nil, counts the items it produced.
func r81counter(n int, pulled *atomic.Int64) stage.Stream[int] {
	return stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i >= n {
				return 0, io.EOF
			}
			i++
			if pulled != nil {
				pulled.Add(1)
			}
			return i - 1, nil
		}, nil
	}))
}

// r81equal reports the first difference between got and want.
func r81equal(got, want []int) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d values, want %d (got %v)", len(got), len(want), r81short(got))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Errorf("value %d is %d, want %d (got %v)", i, got[i], want[i], r81short(got))
		}
	}
	return nil
}

// r81prefix reports whether got is a prefix of want.
func r81prefix(got, want []int) error {
	if len(got) > len(want) {
		return fmt.Errorf("got %d values, more than the %d expected", len(got), len(want))
	}
	return r81equal(got, want[:len(got)])
}

func r81short(xs []int) string {
	if len(xs) <= 40 {
		return fmt.Sprint(xs)
	}
	return fmt.Sprint(xs[:40]) + "..."
}

// r81guard runs f under runcheck.Run (no goroutine of the run left when it
// returns; a hang fails the test).
func r81guard(t *testing.T, label string, f func()) {
	t.Helper()
	runcheck.Run(t, label, f)
}

// r81gid returns the calling goroutine's id (cheaply: its own stack's
// first line).
func r81gid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = b[len("goroutine "):]
	var id int64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + int64(c-'0')
	}
	return id
}
