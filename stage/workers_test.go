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

func TestWorkersBoundAndReached(t *testing.T) {
	const items = 40
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			want := m.workers
			if want < 0 {
				want = items // one call per item, no limit
			}
			var g gauge
			var started atomic.Int64
			gate := make(chan struct{})
			// The first `want` calls hold until all of them have started:
			// if fewer than `want` could run at once, this would hang.
			f := func(_ context.Context, x int) (int, error) {
				g.enter()
				defer g.leave()
				if started.Add(1) == int64(want) {
					close(gate)
				}
				<-gate
				return x, nil
			}
			hangGuard(t, func() {
				got, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(items)), f, m.opts()...))
				if err != nil || len(got) != items {
					t.Errorf("got %d items, err %v; want %d, nil", len(got), err, items)
				}
			})
			if g.max != want {
				t.Fatalf("at most %d calls ran at once, want exactly %d", g.max, want)
			}
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
		t.Run(name, func(t *testing.T) {
			var g gauge
			var started atomic.Int64
			gate := make(chan struct{})
			f := func(_ context.Context, x int) (int, error) {
				g.enter()
				defer g.leave()
				if started.Add(1) == int64(want) {
					close(gate)
				}
				<-gate
				return x, nil
			}
			hangGuard(t, func() {
				if _, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(3*want)), f, opts...)); err != nil {
					t.Error(err)
				}
			})
			if g.max != want {
				t.Fatalf("at most %d calls at once, want %d", g.max, want)
			}
		})
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
