package stage_test

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r61xRecChan is an Interruptible source over ch that records, for every
// call of next, the calling goroutine and whether its context was done (a
// try) or live (a wait).
type r61xRecChan struct {
	ch    chan int
	mu    sync.Mutex
	tries map[int64]int
	waits map[int64]int
}

func (s *r61xRecChan) stream() stage.Stream[int] {
	s.tries, s.waits = map[int64]int{}, map[int64]int{}
	return stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(ctx context.Context) (int, error) {
			id := auditGoid()
			s.mu.Lock()
			if ctx.Err() != nil {
				s.tries[id]++
			} else {
				s.waits[id]++
			}
			s.mu.Unlock()
			select {
			case v, ok := <-s.ch:
				if !ok {
					return 0, io.EOF
				}
				return v, nil
			default:
			}
			select {
			case v, ok := <-s.ch:
				if !ok {
					return 0, io.EOF
				}
				return v, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}, nil
	}))
}

// The Interruptible doc: "a consumer goroutine asks next for an item that
// is ready, and leaves the waiting to the stage's own workers, at least
// one of which stays a goroutine of the stage". So no goroutine of the
// consumer ever calls next with the run's (live) context; the waits are
// all on goroutines of the stage.
//
// A cheap Map of Workers(4) over the source, fused into its consumer: the
// sink itself, or a Map of Workers(3) (three consumer goroutines, each
// with a handle). Items come in bursts; after each, the test waits until
// the sink got every output while the channel is empty, so that goroutines
// of the stage wait in next between bursts. Every goroutine that called
// next with a live context must be outside the consumer's goroutines. A
// trial decides only if a consumer goroutine called next at all (it held
// a place: it tried).
func TestReview61TryXNoConsumerGoroutineWaitsInNext(t *testing.T) {
	for _, shape := range []string{"sink", "map3"} {
		t.Run(shape, func(t *testing.T) {
			decided := 0
			for trial := 0; trial < 20 && decided < 3; trial++ {
				s := &r61xRecChan{ch: make(chan int)}
				var consumers sync.Map // goroutine ids of the fused stage's consumer
				fused := stage.Map(s.stream(), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4))
				out := fused
				if shape == "map3" {
					out = stage.Map(fused, func(_ context.Context, x int) (int, error) {
						consumers.Store(auditGoid(), true)
						return x, nil
					}, stage.Workers(3))
				}
				var got atomic.Int64
				progress := make(chan struct{}, 1)
				done := make(chan error, 1)
				go func() {
					if shape == "sink" {
						consumers.Store(auditGoid(), true)
					}
					done <- sink.ForEach(context.Background(), out, func(context.Context, int) error {
						got.Add(1)
						select {
						case progress <- struct{}{}:
						default:
						}
						return nil
					})
				}()
				const bursts, size = 20, 200
				runcheck.NoHang(t, "bursts through a fused stage over an Interruptible source", func() {
					sent := 0
					for range bursts {
						for range size {
							s.ch <- sent
							sent++
						}
						for got.Load() < int64(sent) {
							<-progress
						}
					}
					close(s.ch)
					if err := <-done; err != nil {
						t.Errorf("run: %v", err)
					}
				})
				if got.Load() != bursts*size {
					t.Fatalf("the sink got %d outputs, want %d", got.Load(), bursts*size)
				}
				s.mu.Lock()
				held := false
				for id := range s.tries {
					if _, ok := consumers.Load(id); ok {
						held = true
					}
				}
				for id, n := range s.waits {
					if _, ok := consumers.Load(id); ok {
						t.Errorf("trial %d: consumer goroutine %d called next with the live context %d times; the waiting is the stage's own workers'", trial, id, n)
					}
				}
				waited := len(s.waits) > 0
				s.mu.Unlock()
				if !waited {
					t.Errorf("trial %d: no call of next with the live context: the stage's goroutines never waited between bursts", trial)
				}
				if held {
					decided++
				}
				if t.Failed() {
					return
				}
			}
			if decided == 0 {
				t.Errorf("no trial decided: no consumer goroutine ever held a place of the stage")
			}
		})
	}
}
