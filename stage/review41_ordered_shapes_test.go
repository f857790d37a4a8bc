package stage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview41OrderedKeyByLaterItemsWait: KeyBy + Ordered, with the head
// silent behind a gate while later items of other keys fill the window and
// wait in emit, and items of the head's key (and of the waiting items' keys)
// wait for their key. KeyBy: "A worker that finishes an item takes the next
// waiting item of the same key itself"; Apply: the head never waits for
// room, so the window moves. Once the gate opens, every output must arrive
// in order, with no hang.
func TestReview41OrderedKeyByLaterItemsWait(t *testing.T) {
	for seed := range 12 {
		r := rand.New(rand.NewPCG(4141, uint64(seed)))
		workers, buffer := 2+r.IntN(3), r.IntN(3)
		window := 2*workers + buffer
		n := 3*window + 5
		keys, sizes := make([]int, n), make([]int, n)
		for i := range keys {
			keys[i] = r.IntN(3)
			sizes[i] = r.IntN(3 * window)
		}
		t.Run(fmt.Sprintf("seed%d/workers%d/buffer%d/keys%v", seed, workers, buffer, keys[:8]), func(t *testing.T) {
			gate0 := make(chan struct{})
			var emitted atomic.Int64
			s := stage.Apply(source.Slice(ints(n)), func(ctx context.Context, v int, emit func(r41Out) bool) error {
				if v == 0 {
					select {
					case <-gate0:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				for j := range sizes[v] {
					if !emit(r41Out{v, j, 0}) {
						return ctx.Err()
					}
					emitted.Add(1)
				}
				return nil
			}, stage.Workers(workers), stage.Buffer(buffer), stage.Ordered(), stage.KeyBy(func(v int) int { return keys[v] }))
			var got []r41Out
			var err error
			done := r40Go(func() { got, err = sink.Slice(context.Background(), s) })
			r40Settle(&emitted, int64(n*3*window))
			close(gate0)
			r40Wait(t, done, "the run after the head's gate opened")
			if err != nil {
				t.Fatal(err)
			}
			var want []r41Out
			for i, k := range sizes {
				for j := range k {
					want = append(want, r41Out{i, j, 0})
				}
			}
			r41SameOutputs(t, got, want)
		})
	}
}

// TestReview41OrderedIntoTeeMerge: an Ordered Apply whose items emit random
// numbers of outputs (many past the window) feeds a Tee of two branches,
// one slow, merged back. Tee: "n streams that each see every item of in,
// in the order of in". Each branch must see every output once, in order.
func TestReview41OrderedIntoTeeMerge(t *testing.T) {
	for round := range 6 {
		r := rand.New(rand.NewPCG(41, uint64(100+round)))
		workers := []int{1, 2, 4, -1}[round%4]
		n := 80
		sizes := make([]int, n)
		for i := range sizes {
			sizes[i] = r.IntN(25)
		}
		s := stage.Apply(source.Slice(ints(n)), func(ctx context.Context, v int, emit func(r41Out) bool) error {
			r37Jitter()
			for j := range sizes[v] {
				if !emit(r41Out{v, j, 0}) {
					return ctx.Err()
				}
			}
			return nil
		}, stage.Workers(workers), stage.Ordered())
		b := stage.Tee(s, 2)
		tag := func(branch int, slow bool) stage.Stream[r41Out] {
			return stage.Map(b[branch], func(_ context.Context, o r41Out) (r41Out, error) {
				if slow {
					r37Jitter()
				}
				o.a = branch
				return o, nil
			}, stage.Workers(1))
		}
		var got []r41Out
		var err error
		hangGuard(t, func() { got, err = sink.Slice(context.Background(), stage.Merge(tag(0, false), tag(1, true))) })
		if err != nil {
			t.Fatal(err)
		}
		for branch := range 2 {
			var mine, want []r41Out
			for _, o := range got {
				if o.a == branch {
					mine = append(mine, o)
				}
			}
			for i, k := range sizes {
				for j := range k {
					want = append(want, r41Out{i, j, branch})
				}
			}
			r41SameOutputs(t, mine, want)
		}
	}
}

// TestReview41OrderedBarrierOfPeersWithBuffer: Workers: "Add Buffer(1) to
// keep every worker a goroutine of the stage's own: the stage's function
// may then wait for its consumer or for its peers (an Ordered Apply's for a
// later peer only while the outputs waiting for their turn stay within its
// window: see Apply)". Two items of an Ordered Apply with Workers(2),
// Buffer(1) each emit the window's 2×workers + buffer outputs, then meet at
// a barrier of the two calls. (review41 first had them emit twice the
// window, which hangs, as Apply says; Workers' doc did not say so then.)
// In a child process: a hang fails this test only.
func TestReview41OrderedBarrierOfPeersWithBuffer(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const workers, buffer = 2, 1
		const outputs = 2*workers + buffer
		b := newR37Barrier(workers)
		s := stage.Apply(source.Slice(ints(workers)), func(ctx context.Context, v int, emit func(int) bool) error {
			for range outputs {
				if !emit(v) {
					return ctx.Err()
				}
			}
			b.wait()
			return nil
		}, stage.Workers(workers), stage.Buffer(buffer), stage.Ordered())
		n, err := sink.Count(context.Background(), s)
		if err != nil || n != workers*outputs {
			t.Fatalf("got %d outputs, %v; want %d", n, err, workers*outputs)
		}
	})
}
