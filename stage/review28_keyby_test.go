package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview28KeyPanicAttemptsZero: an item whose key panicked was never
// tried: Attempts 0, whatever the retry options (RetryIf may retry a
// panic, but the function was never called), the key called once, the
// function not at all, and Received and Finished are told.
func TestReview28KeyPanicAttemptsZero(t *testing.T) {
	for _, o := range []struct {
		name string
		opts []stage.Option
	}{
		{"plain", nil},
		{"Retry", []stage.Option{stage.Retry(4, 0)}},
		{"RetryIfAll", []stage.Option{stage.RetryIf(4, 0, func(error) bool { return true })}},
		{"RetryIfAllOrdered", []stage.Option{stage.RetryIf(4, 0, func(error) bool { return true }), stage.Ordered()}},
		{"TimeoutRateLimit", []stage.Option{stage.RateLimit(1e9, 1)}},
	} {
		for _, w := range []int{1, 3, -1} {
			t.Run(fmt.Sprintf("%s/w=%d", o.name, w), func(t *testing.T) {
				var keyCalls, fnCalls, received, finished atomic.Int64
				var finishedErr atomic.Value
				var errs []*stage.Error
				ctx := stage.Observe(context.Background(), &r28Obs{
					received: func(stage.Info) { received.Add(1) },
					finished: func(_ stage.Info, err error) {
						finished.Add(1)
						if err != nil {
							finishedErr.Store(err)
						}
					},
				})
				opts := append([]stage.Option{stage.Workers(w),
					stage.KeyBy(func(v int) int {
						keyCalls.Add(1)
						if v == 1 {
							panic("review28 key")
						}
						return v % 2
					}),
					stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
						errs = append(errs, e)
						return nil
					}))}, o.opts...)
				got, err := sink.Slice(ctx, stage.Map(source.Slice(ints(4)), func(_ context.Context, v int) (int, error) {
					fnCalls.Add(1)
					if v == 1 {
						t.Errorf("the function was called for the item whose key panicked")
					}
					return v, nil
				}, opts...))
				if err != nil || len(got) != 3 {
					t.Fatalf("got %v, err %v", got, err)
				}
				if len(errs) != 1 {
					t.Fatalf("errs %v", errs)
				}
				e := errs[0]
				var pe *stage.PanicError
				if e.Attempts != 0 || !errors.As(e, &pe) || e.Input != any(1) {
					t.Errorf("error %#v: want Attempts 0 wrapping a *PanicError, input 1", e)
				}
				if keyCalls.Load() != 4 {
					t.Errorf("key called %d times, want 4 (once per item)", keyCalls.Load())
				}
				if received.Load() != 4 || finished.Load() != 4 {
					t.Errorf("Received %d, Finished %d, want 4 each", received.Load(), finished.Load())
				}
				if fe, _ := finishedErr.Load().(error); fe == nil {
					t.Errorf("Finished got no error for the key panic")
				} else if se, ok := fe.(*stage.Error); !ok || se.Attempts != 0 {
					t.Errorf("Finished got %v, want an *Error of Attempts 0", fe)
				}
			})
		}
	}
}

type r28NaNKey struct {
	id string
	f  float64
}

// TestReview28NaNKeysMemoryBounded: a long run with NaN keys (a float, a
// struct holding one, an interface holding one) keeps memory bounded: a NaN
// key is its own key, so nothing of it may stay behind once its item is done.
func TestReview28NaNKeysMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	const n = 50_000
	heapAt := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	run := func(t *testing.T, s stage.Stream[int]) {
		var early, late uint64
		count := 0
		err := sink.ForEach(context.Background(), s, func(context.Context, int) error {
			count++
			switch count {
			case n / 10:
				early = heapAt()
			case n - 10:
				late = heapAt()
			}
			return nil
		})
		if err != nil || count != n {
			t.Fatalf("count %d, err %v", count, err)
		}
		if late > early+1<<20 {
			t.Errorf("heap grew from %d to %d bytes over %d items with NaN keys: NaN keys are kept", early, late, n*9/10)
		}
	}
	fn := func(_ context.Context, v int) (int, error) { return v, nil }
	for _, w := range []int{1, 4} {
		t.Run(fmt.Sprintf("float/w=%d", w), func(t *testing.T) {
			run(t, stage.Map(source.Slice(ints(n)), fn, stage.Workers(w), stage.KeyBy(func(int) float64 { return math.NaN() })))
		})
		t.Run(fmt.Sprintf("struct/w=%d", w), func(t *testing.T) {
			run(t, stage.Map(source.Slice(ints(n)), fn, stage.Workers(w), stage.KeyBy(func(v int) r28NaNKey { return r28NaNKey{"k", math.NaN()} })))
		})
		t.Run(fmt.Sprintf("any/w=%d", w), func(t *testing.T) {
			run(t, stage.Map(source.Slice(ints(n)), fn, stage.Workers(w), stage.KeyBy(func(v int) any { return math.NaN() })))
		})
		t.Run(fmt.Sprintf("mixedOrdered/w=%d", w), func(t *testing.T) {
			run(t, stage.Map(source.Slice(ints(n)), fn, stage.Workers(w), stage.Ordered(), stage.KeyBy(func(v int) float64 {
				if v%3 == 0 {
					return float64(v % 7)
				}
				return math.NaN()
			})))
		})
	}
}

// TestReview28UnhashableAnyKey: a KeyBy key of type any that holds a slice
// cannot be compared (== panics at run time). Whatever the stage makes of it,
// the process must not crash (the panic is one of the user's key, or of ==
// on it, and must come back as an error) and the run must end.
func TestReview28UnhashableAnyKey(t *testing.T) {
	outcome, ok := runcheck.InChild(t, func() string {
		var errs []string
		_, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(6)), func(_ context.Context, v int) (int, error) {
			return v, nil
		}, stage.Workers(3), stage.KeyBy(func(v int) any {
			if v%2 == 0 {
				return []int{v}
			}
			return v
		}), stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
			errs = append(errs, e.Error())
			return nil
		}))))
		return fmt.Sprintf("err=%v handled=%d", err, len(errs))
	})
	if !ok {
		return
	}
	t.Logf("outcome: %s", outcome)
	if !strings.HasPrefix(outcome, "err=") {
		t.Errorf("outcome %q", outcome)
	}
}
