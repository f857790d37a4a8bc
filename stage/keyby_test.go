package stage_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type event struct{ key, seq int }

// events returns n events over k keys, each key's seq counting up.
func events(n, k int) []event {
	evs := make([]event, n)
	for i := range evs {
		evs[i] = event{key: i % k, seq: i / k}
	}
	return evs
}

func TestKeyByOneAtATimeInOrder(t *testing.T) {
	for _, m := range modes {
		for _, keys := range []int{1, 3, 50} {
			t.Run(m.String(), func(t *testing.T) {
				var mu sync.Mutex
				busy := map[int]bool{}
				last := map[int]int{}
				var bad atomic.Value
				f := func(_ context.Context, e event) (event, error) {
					mu.Lock()
					if busy[e.key] {
						bad.Store("two calls of one key at once")
					}
					if l, ok := last[e.key]; ok && e.seq != l+1 || !ok && e.seq != 0 {
						bad.Store("out of order")
					}
					busy[e.key], last[e.key] = true, e.seq
					mu.Unlock()
					for range 100 { // a little work, so that calls overlap
						_ = strings.Repeat("x", 10)
					}
					mu.Lock()
					busy[e.key] = false
					mu.Unlock()
					return e, nil
				}
				s := stage.Map(source.Slice(events(600, keys)), f, m.opts(stage.KeyBy(func(e event) int { return e.key }))...)
				got, err := sink.Slice(context.Background(), s)
				if err != nil || len(got) != 600 {
					t.Fatalf("%d keys: %d items, %v; want 600, nil", keys, len(got), err)
				}
				if b := bad.Load(); b != nil {
					t.Fatalf("%d keys: %v", keys, b)
				}
				if m.ordered && !slices.Equal(got, events(600, keys)) {
					t.Fatalf("%d keys: Ordered output not in input order", keys)
				}
			})
		}
	}
}

func TestKeyByDifferentKeysRunInParallel(t *testing.T) {
	// Key 0's first call waits until key 1's has started: it hangs unless
	// the two keys run at once.
	started := make(chan struct{})
	f := func(_ context.Context, e event) (event, error) {
		if e.seq == 0 {
			if e.key == 1 {
				close(started)
			} else {
				<-started
			}
		}
		return e, nil
	}
	hangGuard(t, func() {
		n, err := sink.Count(context.Background(), stage.Map(source.Slice(events(20, 2)), f, stage.Workers(2), stage.KeyBy(func(e event) int { return e.key })))
		if n != 20 || err != nil {
			t.Errorf("%d, %v; want 20, nil", n, err)
		}
	})
}

func TestKeyByBoundedMemoryWithOneKey(t *testing.T) {
	// Every item has the same key: they queue, each holding a read-ahead
	// place, so the source runs at most workers+buffer items ahead.
	const workers, n = 4, 500
	var produced, done atomic.Int64
	var over atomic.Int64
	i := 0
	src := source.Func(func(context.Context) (event, error) {
		if i == n {
			return event{}, errEOF
		}
		if ahead := produced.Add(1) - done.Load(); ahead > workers+1 {
			over.Store(ahead)
		}
		i++
		return event{key: 7, seq: i - 1}, nil
	})
	s := stage.Map(src, func(_ context.Context, e event) (event, error) { return e, nil }, stage.Workers(workers), stage.KeyBy(func(e event) int { return e.key }))
	err := stage.Run(context.Background(), s, func(context.Context, event, error) error { done.Add(1); return nil })
	if err != nil || done.Load() != n || over.Load() != 0 {
		t.Fatalf("%d items, %v, %d ahead at most; want %d, nil, at most %d", done.Load(), err, over.Load(), n, workers+1)
	}
}

func TestKeyByWrongTypePanicsAtBuild(t *testing.T) {
	msg := panicMessage(func() { stage.Map(source.Slice(ints(3)), double, stage.KeyBy(func(s string) string { return s })) })
	if !strings.Contains(msg, "stage.Map") || !strings.Contains(msg, "KeyBy") {
		t.Fatalf("panic %q, want one naming stage.Map and KeyBy", msg)
	}
	if msg := panicMessage(func() { stage.KeyBy[int, int](nil) }); !strings.Contains(msg, "stage.KeyBy") {
		t.Fatalf("panic %q, want one naming stage.KeyBy", msg)
	}
}
