package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// KeyBy (keyby.go:14-17): "an item waiting for its key holds one of the
// stage's read-ahead places, so the stage still takes at most
// workers+buffer items ahead of its consumer (memory stays bounded ...)";
// DESIGN: "Memory is bounded by the configuration, never by the input
// size". A key of a comparable type may be a NaN (a float64 field, an any
// holding one): a pure function of the item. Each NaN key is its own key
// (NaN != NaN), and the gate must forget it when its item is done. Here
// the heap the run holds is measured at a quarter and at the end of a
// long run of one worker: it must not grow with the number of items.
func TestReview23KeyByNaNKeyMemoryBounded(t *testing.T) {
	const n = 1 << 17
	for _, tc := range []struct {
		name string
		key  func(int) float64
	}{
		{"zero", func(int) float64 { return 0 }},
		{"nan", func(int) float64 { return math.NaN() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var at, end uint64
			heap := func() uint64 {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				return ms.HeapAlloc
			}
			s := stage.Map(stage.Indexed(n, func(i int) int { return i }),
				func(_ context.Context, v int) (int, error) { return v, nil },
				stage.Workers(1), stage.KeyBy(tc.key))
			seen := 0
			err := stage.Run(context.Background(), s, func(_ context.Context, v int, _ error) error {
				seen++
				switch seen {
				case n / 4:
					at = heap()
				case n:
					end = heap()
				}
				return nil
			})
			if err != nil || seen != n {
				t.Fatalf("Run = %v after %d items", err, seen)
			}
			grew := int64(end) - int64(at)
			t.Logf("heap grew by %d bytes over %d items", grew, 3*n/4)
			if grew > 1<<20 {
				t.Errorf("the run's heap grew by %d bytes over %d items of one worker: the KeyBy gate keeps a map entry per item whose key is NaN", grew, 3*n/4)
			}
		})
	}
}

// Error.Attempts (errors.go:27-29): "Attempts is how many times the
// function was called for the item: 1, or more under [Retry]". KeyBy
// (keyby.go:21-23): "A panic in key fails the item ...: an *Error wrapping
// a *PanicError goes to the stage's policy (the item's function is not
// called)". So the *Error of an item whose key panicked says 0 attempts,
// with or without Retry, and whichever engine path admits it.
func TestReview23KeyByKeyPanicAttemptsCountsNoCall(t *testing.T) {
	for _, workers := range []int{1, 4, -1} {
		for _, retry := range []bool{false, true} {
			t.Run(fmt.Sprintf("workers=%d/retry=%v", workers, retry), func(t *testing.T) {
				var called atomic.Int32
				var handled []*stage.Error
				opts := []stage.Option{
					stage.Workers(workers),
					stage.KeyBy(func(v int) int { panic("key") }),
					stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
						handled = append(handled, e)
						return nil
					})),
				}
				if retry {
					opts = append(opts, stage.RetryIf(3, 0, func(error) bool { return true }))
				}
				s := stage.Map(stage.Indexed(1, func(i int) int { return i }),
					func(_ context.Context, v int) (int, error) { called.Add(1); return v, nil }, opts...)
				if err := stage.Run(context.Background(), s, func(context.Context, int, error) error { return nil }); err != nil {
					t.Fatalf("Run = %v", err)
				}
				var pe *stage.PanicError
				if len(handled) != 1 || !errors.As(handled[0], &pe) || called.Load() != 0 {
					t.Fatalf("handled %v, function called %d times", handled, called.Load())
				}
				if handled[0].Attempts != int(called.Load()) {
					t.Errorf("Error.Attempts = %d, but the function was called %d times for the item (its key panicked)", handled[0].Attempts, called.Load())
				}
			})
		}
	}
}
