package stage_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview86InterruptibleConsumersNeverWait: over an Interruptible
// source, a cheap stage of more than one worker lets its consumer's
// goroutines ask next only for an item that is ready ("leaves the waiting
// to the stage's own workers"): no goroutine that runs the consumer's code
// (the sink's callback, the next stage's function) ever calls next with a
// live context. Every item arrives once.
func TestReview86InterruptibleConsumersNeverWait(t *testing.T) {
	for _, w := range []int{2, 3, 4, 64, 100} {
		for consumer := range 4 {
			for _, slow := range []bool{false, true} {
				label := fmt.Sprintf("w=%d/consumer=%d/slow=%v", w, consumer, slow)
				runcheck.Run(t, label, func() {
					if problem := r86tries(w, consumer, slow, 400); problem != "" {
						t.Errorf("%s: %s", label, problem)
					}
				})
			}
		}
	}
}

func r86tries(w, consumer int, slow bool, n int) string {
	ch := make(chan int)
	stopFeed := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		defer close(ch)
		for i := range n {
			select {
			case ch <- i:
			case <-stopFeed:
				return
			}
		}
	}()
	defer func() { close(stopFeed); <-fed }()

	var mu sync.Mutex
	liveNext := map[int64]bool{}
	consumerG := map[int64]bool{}
	mark := func(m map[int64]bool) {
		g := r86gid()
		mu.Lock()
		m[g] = true
		mu.Unlock()
	}
	src := stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(ctx context.Context) (int, error) {
			if ctx.Err() == nil {
				mark(liveNext)
			}
			select {
			case v, ok := <-ch:
				if !ok {
					return 0, errEOF
				}
				return v, nil
			default:
			}
			select {
			case v, ok := <-ch:
				if !ok {
					return 0, errEOF
				}
				return v, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}, nil
	}))
	s := stage.Map(src, func(_ context.Context, v int) (int, error) {
		if slow && (v/40)%2 == 1 {
			r81spin(30 * time.Microsecond)
		}
		return v, nil
	}, stage.Workers(w))
	next := func(_ context.Context, v int) (int, error) {
		mark(consumerG)
		return v, nil
	}
	switch consumer {
	case 1:
		s = stage.Map(s, next, stage.Workers(min(w, 2)))
	case 2:
		s = stage.Map(s, next, stage.Workers(min(w, 3)), stage.Buffer(1))
	case 3:
		s = stage.Map(s, next, stage.Workers(min(w, 3)), stage.KeyBy(func(v int) int { return v % 3 }))
	}
	seen := make([]int, n)
	err := sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
		mark(consumerG)
		seen[v]++
		return nil
	})
	if err != nil {
		return fmt.Sprintf("err %v", err)
	}
	for i, c := range seen {
		if c != 1 {
			return fmt.Sprintf("item %d delivered %d times", i, c)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for g := range liveNext {
		if consumerG[g] {
			return fmt.Sprintf("goroutine %d, a consumer's, waited in next with a live context", g)
		}
	}
	return ""
}
