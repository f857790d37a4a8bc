package stage_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// ledger counts items a source produced and the sink consumed, and checks at
// every production that the pipeline is not further ahead than bound.
type ledger struct {
	mu                 sync.Mutex
	produced, consumed int
	maxAhead           int
}

func (l *ledger) produce(n int) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.produced == n {
		return 0, errEOF
	}
	l.produced++
	l.maxAhead = max(l.maxAhead, l.produced-l.consumed)
	return l.produced - 1, nil
}

func (l *ledger) consume() {
	l.mu.Lock()
	l.consumed++
	l.mu.Unlock()
}

func TestBackpressureBound(t *testing.T) {
	const items = 300
	for _, m := range modes {
		if m.workers < 0 {
			continue // no bound by design
		}
		for _, buf := range []int{0, 3} {
			for _, slow := range []bool{false, true} {
				t.Run(m.String(), func(t *testing.T) {
					var l ledger
					src := source.Func(func(context.Context) (int, error) { return l.produce(items) })
					f := double
					if slow { // slow calls take another path through the pipe
						f = func(ctx context.Context, x int) (int, error) {
							time.Sleep(30 * time.Microsecond)
							return double(ctx, x)
						}
					}
					s := stage.Map(src, f, m.opts(stage.Buffer(buf))...)
					err := sink.ForEach(context.Background(), s, func(context.Context, int) error {
						l.consume()
						for range 20 { // a slow consumer
							runtime.Gosched()
						}
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					// Taken and not yet consumed: one per worker (two when
					// ordered: the reorder window), the buffer, and the one
					// the sink holds.
					bound := m.workers + buf + 1
					if m.ordered {
						bound = 2*m.workers + buf + 1
					}
					if l.maxAhead > bound {
						t.Fatalf("slow=%v: source ran %d items ahead of the sink, want at most %d", slow, l.maxAhead, bound)
					}
				})
			}
		}
	}
}

func TestOrderedWindowStopsPulling(t *testing.T) {
	// Item 0 is slow; the others finish. The stage takes exactly the window
	// (2*workers+buffer items) and no more until item 0 is done: the source
	// releases item 0 when asked for the window's last item, so a smaller
	// window hangs and a larger one is caught by the check.
	for _, workers := range []int{2, 4} {
		for _, buf := range []int{0, 2} {
			window := 2*workers + buf
			gate := make(chan struct{})
			var mu sync.Mutex
			produced, item0Done := 0, false
			src := source.Func(func(context.Context) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				if produced == 100 {
					return 0, errEOF
				}
				if !item0Done && produced >= window {
					t.Errorf("workers=%d buffer=%d: took item %d while item 0 is in flight; window is %d", workers, buf, produced, window)
				}
				produced++
				if produced == window {
					close(gate)
				}
				return produced - 1, nil
			})
			f := func(_ context.Context, x int) (int, error) {
				if x == 0 {
					<-gate
					mu.Lock()
					item0Done = true
					mu.Unlock()
				}
				return x, nil
			}
			hangGuard(t, func() {
				n, err := sink.Count(context.Background(), stage.Map(src, f, stage.Workers(workers), stage.Ordered(), stage.Buffer(buf)))
				if n != 100 || err != nil {
					t.Errorf("Count = %d, %v; want 100, nil", n, err)
				}
			})
		}
	}
}

func TestFirstOverChanTakesOneItem(t *testing.T) {
	ch := make(chan int, 10)
	for i := range 10 {
		ch <- i
	}
	v, ok, err := sink.First(context.Background(), source.Chan(ch))
	if v != 0 || !ok || err != nil {
		t.Fatalf("First = %d, %v, %v; want 0, true, nil", v, ok, err)
	}
	if len(ch) != 9 {
		t.Fatalf("%d items left in the channel, want 9", len(ch))
	}
	// The channel is still open and still ours: the rest come out in order.
	close(ch)
	var rest []int
	for v := range ch {
		rest = append(rest, v)
	}
	if len(rest) != 9 || rest[0] != 1 {
		t.Fatalf("rest = %v, want 1..9", rest)
	}
}

func TestFirstThroughStageTakesAtMostWorkersAhead(t *testing.T) {
	for _, workers := range []int{1, 4} {
		ch := make(chan int, 100)
		for i := range 100 {
			ch <- i
		}
		_, ok, err := sink.First(context.Background(), stage.Map(source.Chan(ch), double, stage.Workers(workers)))
		if !ok || err != nil {
			t.Fatalf("First = _, %v, %v", ok, err)
		}
		// The sink took one; each worker may have taken one more.
		if taken := 100 - len(ch); taken > 1+workers {
			t.Fatalf("workers=%d: %d items taken from the channel, want at most %d", workers, taken, 1+workers)
		}
	}
}
