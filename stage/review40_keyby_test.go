package stage_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview40KeyByNaNRunsInParallel attacks KeyBy's "a key that is not
// equal to itself (a float NaN, or a key holding one) matches no other, so
// its item runs as if its key were its own": two NaN-keyed items must be able
// to run at the same time. Each call waits for the other (a barrier of 2);
// if NaN keys were serialized, the barrier never opens and a watchdog (a hang
// detector, 30 s) lets the calls go and the test fails. KeyBy keeps every
// worker a goroutine of the stage's own, so a barrier needs no Buffer.
func TestReview40KeyByNaNRunsInParallel(t *testing.T) {
	for _, name := range []string{"float", "struct"} {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			wg.Add(2)
			barrier := make(chan struct{})
			go func() { wg.Wait(); close(barrier) }()
			var timedOut atomic.Bool
			call := func(ctx context.Context, v int) (int, error) {
				wg.Done()
				select {
				case <-barrier:
				case <-time.After(r40Watchdog):
					timedOut.Store(true)
				}
				return v, nil
			}
			var s stage.Stream[int]
			if name == "float" {
				s = stage.Map(source.Slice(ints(2)), call, stage.Workers(2), stage.KeyBy(func(int) float64 { return math.NaN() }))
			} else {
				type k struct {
					id int
					f  float64
				}
				s = stage.Map(source.Slice(ints(2)), call, stage.Workers(2), stage.KeyBy(func(int) k { return k{1, math.NaN()} }))
			}
			got, err := sink.Slice(context.Background(), s)
			if err != nil || len(got) != 2 {
				t.Fatalf("got %v, %v", got, err)
			}
			if timedOut.Load() {
				t.Fatalf("two items keyed NaN did not run at the same time: NaN keys were serialized as one key")
			}
		})
	}
}

// TestReview40KeyByUnhashableKey attacks "So does a panic in the methods of
// your values that sluice calls (an error's Is/Unwrap, a key's hash)": a
// KeyBy key of interface type holding a slice cannot be hashed (a runtime
// panic in a map operation). It must become an item error: an *Error
// wrapping a *PanicError (a runtime.Error), of Attempts 0, to the stage's
// policy; with Forward the run goes on. In a child process: a panic that
// escapes would crash it.
func TestReview40KeyByUnhashableKey(t *testing.T) {
	for _, policy := range []string{"failfast", "forward"} {
		t.Run(policy, func(t *testing.T) {
			out, ok := runcheck.InChild(t, func() string {
				opts := []stage.Option{stage.Workers(3), stage.KeyBy(func(v int) any {
					if v == 4 {
						return []int{v} // unhashable
					}
					return v % 2
				})}
				if policy == "forward" {
					opts = append(opts, stage.OnError(stage.Forward))
				}
				var values, fwd int
				var last error
				for v, err := range sink.All(context.Background(), stage.Map(source.Slice(ints(10)), double, opts...)) {
					if err != nil {
						fwd++
						last = err
						continue
					}
					_ = v
					values++
				}
				var se *stage.Error
				var pe *stage.PanicError
				var re runtime.Error
				switch {
				case !errors.As(last, &se) || !errors.As(last, &pe):
					return "not an *Error wrapping a *PanicError: " + r40ErrString(last)
				case !errors.As(last, &re):
					return "the *PanicError does not unwrap to the runtime.Error"
				case se.Attempts != 0 || se.Input != 4:
					return "wrong Attempts/Input"
				case policy == "forward" && (values != 9 || fwd != 1):
					return "forward: the run did not go on"
				}
				return "ok"
			})
			if !ok {
				return
			}
			if out != "ok" {
				t.Fatal(out)
			}
		})
	}
}

func r40ErrString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestReview40KeyBySameKeyReadAhead attacks KeyBy's "an item waiting for its
// key holds one of the stage's read-ahead places, so the stage still takes at
// most workers+buffer items ahead of its consumer (memory stays bounded even
// if every item has the same key)": every item has one key, the first call
// waits on a gate; the source may not have produced more than
// workers+buffer(+1 for the gated call's own place) items.
func TestReview40KeyBySameKeyReadAhead(t *testing.T) {
	for _, c := range []struct{ workers, buffer int }{{4, 0}, {8, 3}, {2, 0}} {
		for _, ordered := range []bool{false, true} {
			var produced atomic.Int64
			src := source.Func(func(ctx context.Context) (int, error) {
				return int(produced.Add(1)), nil
			})
			gate := make(chan struct{})
			opts := []stage.Option{stage.Workers(c.workers), stage.Buffer(c.buffer), stage.KeyBy(func(int) int { return 0 })}
			bound := int64(c.workers + c.buffer + 1)
			if ordered {
				opts = append(opts, stage.Ordered())
				bound = int64(2*c.workers + c.buffer + 1)
			}
			s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
				select {
				case <-gate:
				case <-ctx.Done():
				}
				return v, ctx.Err()
			}, opts...)
			ctx, cancel := context.WithCancel(context.Background())
			done := r40Go(func() { _, _ = sink.Count(ctx, s) })
			got := r40Settle(&produced, bound)
			cancel()
			close(gate)
			r40Wait(t, done, "the run")
			if got > bound {
				t.Errorf("workers %d buffer %d ordered %v: one key, first call gated: the source produced %d items, bound %d", c.workers, c.buffer, ordered, got, bound)
			}
		}
	}
}

// TestReview40KeyByOneAtATimeInOrder: per key one call at a time, in input
// order, across Ordered and not, with jitter; with Ordered the outputs are in
// input order across keys.
func TestReview40KeyByOneAtATimeInOrder(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		for round := range 5 {
			_ = round
			const n, keys = 300, 5
			var mu sync.Mutex
			running := map[int]int{}
			seen := map[int][]int{}
			var bad atomic.Value
			opts := []stage.Option{stage.Workers(6), stage.KeyBy(func(v int) int { return v % keys })}
			if ordered {
				opts = append(opts, stage.Ordered())
			}
			s := stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (int, error) {
				k := v % keys
				mu.Lock()
				running[k]++
				if running[k] > 1 {
					bad.Store("two calls of one key at once")
				}
				seen[k] = append(seen[k], v)
				mu.Unlock()
				r37Jitter()
				mu.Lock()
				running[k]--
				mu.Unlock()
				return v, nil
			}, opts...)
			got, err := sink.Slice(context.Background(), s)
			if err != nil || len(got) != n {
				t.Fatalf("got %d, %v", len(got), err)
			}
			if b := bad.Load(); b != nil {
				t.Fatal(b)
			}
			for k, vs := range seen {
				for i := 1; i < len(vs); i++ {
					if vs[i] < vs[i-1] {
						t.Fatalf("key %d: calls out of input order: %v", k, vs)
					}
				}
			}
			if ordered {
				for i, v := range got {
					if v != i {
						t.Fatalf("KeyBy+Ordered: output %d is %d, want input order", i, v)
					}
				}
			}
		}
	}
}
