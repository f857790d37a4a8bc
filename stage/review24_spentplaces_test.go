package stage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r24Group is a barrier of k calls: every k-th arrival releases the k-1
// calls waiting before it. A call that waits in vain returns an error after
// a watchdog of seconds (a hang detector, not a time bound).
type r24Group struct {
	k       int
	mu      sync.Mutex
	n       int
	waiting chan struct{}
}

var errR24NoGroup = errors.New("review24: a call of the barrier waited in vain for the rest of its group")

func (g *r24Group) meet() error {
	g.mu.Lock()
	if g.waiting == nil {
		g.waiting = make(chan struct{})
	}
	w := g.waiting
	g.n++
	if g.n == g.k {
		g.n, g.waiting = 0, nil
		g.mu.Unlock()
		close(w)
		return nil
	}
	g.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-time.After(10 * time.Second): // hang watchdog only
		return errR24NoGroup
	}
}

// Workers (options.go): "Workers sets how many calls of the stage's
// function may run at once. n >= 1: at most n, and with enough input and a
// consumer that keeps up exactly n"; and, of a function that waits for
// other calls of the same stage (a barrier of n calls): "Add Buffer(1) to
// keep every worker a goroutine of the stage's own: the stage's function
// may then wait for its consumer or for its peers."
//
// The Map below has Workers(4) and Buffer(1), and 400 items to come; its
// function is a barrier of 4. Its input is a FlatMap of 4 workers over a
// slice of one item, which fuses with the Map: the Map's 4 workers pull
// through 4 handles of it. The FlatMap's input holds one item, so its only
// place goes to the handle that pulls first (startIdle, engine_fuse.go) and
// its queue ends at once (no place is a goroutine, no baton is left); the 3
// other handles see that end (fuseHandle.done: no place, no baton) and
// their workers exit. All 400 outputs go to the one worker whose handle
// holds the place (a place's outputs go to its own hands, never to the
// queue), so the Map runs one call at a time and its barrier never fills.
// The same happens, by timing, whenever a fused stage has fewer places than
// its consumer has goroutines (a FlatMap or Filter over a short input, whose
// Stream.Len is unknown to the consumer): once its goroutines have all
// given their places to handles, the handles left without one end.
//
// Forced: the single-item path needs no timing (fails every run).
func TestReview24ConsumerWorkersEndWhenFusedPlacesAreFewer(t *testing.T) {
	const n, w = 400, 4
	g := r24Group{k: w}
	fm := stage.FlatMap(source.Slice([]int{0}), func(context.Context, int) ([]int, error) {
		return ints(n), nil
	}, stage.Workers(w))
	m := stage.Map(fm, func(_ context.Context, v int) (int, error) {
		return v, g.meet()
	}, stage.Workers(w), stage.Buffer(1))
	var got int
	var err error
	hangGuard(t, func() { got, err = sink.Count(context.Background(), m) })
	if err != nil || got != n {
		t.Fatalf("%d of %d items, %v: the Map of Workers(4) and Buffer(1) did not run 4 calls at once with 400 items to come (its workers whose handles of the fused FlatMap had no place ended)", got, n, err)
	}
}
