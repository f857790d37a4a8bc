package stage_test

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// gauge tracks how many calls are in flight and the most seen at once.
type gauge struct {
	mu       sync.Mutex
	now, max int
}

func (g *gauge) enter() {
	g.mu.Lock()
	g.now++
	g.max = max(g.max, g.now)
	g.mu.Unlock()
}

func (g *gauge) leave() {
	g.mu.Lock()
	g.now--
	g.mu.Unlock()
}

// checkConcurrency runs a Map over n items with opts and checks that exactly
// want calls ran at once at most: the calls for items from `from` on hold
// until want of them have started, so fewer would hang (caught by hangGuard)
// and the gauge catches more. work, if not nil, runs in every call first.
func checkConcurrency(t *testing.T, n, want, from int, work func(), opts ...stage.Option) {
	t.Helper()
	var g gauge
	var started atomic.Int64
	gate := make(chan struct{})
	f := func(_ context.Context, x int) (int, error) {
		g.enter()
		defer g.leave()
		if work != nil {
			work()
		}
		if x >= from {
			if started.Add(1) == int64(want) {
				close(gate)
			}
			<-gate
		}
		return x, nil
	}
	hangGuard(t, func() {
		got, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(n)), f, opts...))
		if err != nil || got != n {
			t.Errorf("got %d items, err %v; want %d, nil", got, err, n)
		}
	})
	if g.max != want {
		t.Fatalf("at most %d calls ran at once, want exactly %d", g.max, want)
	}
}

func TestWorkersBoundAndReached(t *testing.T) {
	const items = 40
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			want := m.workers
			if want < 0 {
				want = items // one call per item, no limit
			}
			checkConcurrency(t, items, want, 0, nil, m.opts()...)
		})
	}
}

func TestDefaultWorkers(t *testing.T) {
	want := min(runtime.NumCPU()+4, 32)
	if got := stage.DefaultWorkers(); got != want {
		t.Fatalf("DefaultWorkers() = %d, want %d", got, want)
	}
	// Workers(0) and no option both mean the default.
	for name, opts := range map[string][]stage.Option{"none": nil, "Workers(0)": {stage.Workers(0)}} {
		t.Run(name, func(t *testing.T) { checkConcurrency(t, 3*want, want, 0, nil, opts...) })
	}
}

func TestOrderOfOutputs(t *testing.T) {
	in := ints(200)
	// Later items finish first: without Ordered, more than one worker
	// reorders them; with one worker or Ordered, input order holds.
	slowFirst := func(_ context.Context, x int) (int, error) {
		for range (200 - x) % 7 * 50 {
			runtime.Gosched()
		}
		return x, nil
	}
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			for _, build := range []func(stage.Stream[int]) stage.Stream[int]{
				func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, slowFirst, m.opts()...) },
				// A second stage keeps the order of an ordered first one.
				func(s stage.Stream[int]) stage.Stream[int] {
					return stage.Map(stage.Map(s, slowFirst, m.opts()...), slowFirst, m.opts()...)
				},
			} {
				got, err := sink.Slice(context.Background(), build(source.Slice(in)))
				if err != nil {
					t.Fatal(err)
				}
				if m.workers == 1 || m.ordered {
					if !slices.Equal(got, in) {
						t.Fatalf("got %v, want input order", got)
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, in) {
					t.Fatalf("got %v, want a permutation of the input", got)
				}
			}
		})
	}
}
