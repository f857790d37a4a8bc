package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR29 = errors.New("review29: item failed")

const r29Watchdog = 20 * time.Second

func r29Wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(r29Watchdog):
		t.Fatalf("hung waiting for %s", what)
	}
}

func r29Go(f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	return done
}

type r29Calls struct {
	mu sync.Mutex
	v  []int
}

func (c *r29Calls) add(v int) {
	c.mu.Lock()
	c.v = append(c.v, v)
	c.mu.Unlock()
}

func (c *r29Calls) list() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.v...)
}

// TestReview29SourceItemAfterCancelNotStarted: a source's next that is in
// flight when the run is cancelled may still return an item (an
// Interruptible source must: "called with a context that is already done,
// returns at once: an item if one is ready"; source.Chan's next does when
// a value is in the channel). pull then returns that item with ok == true
// although the run is cancelled, and the stage's function is called on it:
// a new item starts after FailFast / a cancel, against engine.go's puller
// contract ("returns ok == false once the run is cancelled. That is how
// 'no new item starts' holds") and FailFast's "no new item starts".
//
// The order is forced: next for item 0 signals entered and waits for its
// context to end (only the trigger ends it), then returns item 0 as ready.
// Every call of g is therefore a call that started after the cancel.
func TestReview29SourceItemAfterCancelNotStarted(t *testing.T) {
	for _, workers := range []int{1, 4, -1} {
		for _, trig := range []string{"mergeFailFast", "ctx", "nextCancels"} {
			t.Run(fmt.Sprintf("w=%d/%s", workers, trig), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				entered := make(chan struct{})
				fire := make(chan struct{})
				src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(ctx context.Context) (int, error) {
						if i > 0 {
							return 0, io.EOF
						}
						i++
						close(entered)
						if trig == "nextCancels" {
							cancel() // user code in next ends the run, then hands its item
						} else {
							<-ctx.Done()
						}
						return 0, nil // the item was ready after all
					}, nil
				})
				var calls r29Calls
				g := stage.Map(src, func(_ context.Context, v int) (int, error) {
					calls.add(v)
					return v, nil
				}, stage.Workers(workers))
				s := g
				if trig == "mergeFailFast" {
					s = stage.Merge(g, stage.Map(source.Slice([]int{-1}), func(context.Context, int) (int, error) {
						<-fire
						return 0, errR29
					}))
				}
				var err error
				done := r29Go(func() {
					err = sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
				})
				r29Wait(t, entered, "next to be called")
				switch trig {
				case "mergeFailFast":
					close(fire)
				case "ctx":
					cancel()
				}
				r29Wait(t, done, "the sink")
				if got := calls.list(); len(got) != 0 {
					t.Errorf("g called on %v: an item the source returned after the run was cancelled started", got)
				}
				want := error(context.Canceled)
				if trig == "mergeFailFast" {
					want = errR29
				}
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			})
		}
	}
}

// TestReview29IndexedAtCancelsNotStarted: the same through Indexed, whose
// at is user code called after pull looked at the run: at cancels the run
// (the caller's cancel) and its item still reaches the stage's function.
func TestReview29IndexedAtCancelsNotStarted(t *testing.T) {
	for _, workers := range []int{1, 4, -1} {
		t.Run(fmt.Sprintf("w=%d", workers), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var once sync.Once
			src := stage.Indexed(1, func(i int) int {
				once.Do(cancel)
				return i
			})
			var calls r29Calls
			s := stage.Map(src, func(_ context.Context, v int) (int, error) {
				calls.add(v)
				return v, nil
			}, stage.Workers(workers))
			var err error
			done := r29Go(func() {
				err = sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
			})
			r29Wait(t, done, "the sink")
			if got := calls.list(); len(got) != 0 {
				t.Errorf("g called on %v: an item at produced after the run was cancelled started", got)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want Canceled", err)
			}
		})
	}
}
