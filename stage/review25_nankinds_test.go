package stage_test

import (
	"context"
	"math"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// KeyBy (keyby.go, as changed): "Keys compare as == does: a key that is not
// equal to itself (a float NaN, or a key holding one) matches no other, so
// its item runs as if its key were its own." For every kind of key that
// can hold a NaN (a float, a complex, an interface, a struct, an array),
// two items of NaN keys run at the same time (each waits until the other
// has started: serialised, they would hang), and items of an equal key
// that holds no NaN still run one at a time, in input order. (Passes.)
func TestReview25KeyByNaNKinds(t *testing.T) {
	type sk struct {
		F float64
		S string
	}
	nan := math.NaN()
	review25NaNCase(t, "float64", func(v int) float64 { return map[bool]float64{true: nan, false: 1}[v < 2] })
	review25NaNCase(t, "complex", func(v int) complex128 { return map[bool]complex128{true: complex(0, nan), false: 1}[v < 2] })
	review25NaNCase(t, "any", func(v int) any { return map[bool]any{true: nan, false: "k"}[v < 2] })
	review25NaNCase(t, "any-struct", func(v int) any { return map[bool]any{true: sk{nan, "a"}, false: sk{1, "a"}}[v < 2] })
	review25NaNCase(t, "struct", func(v int) sk { return map[bool]sk{true: {nan, "a"}, false: {1, "a"}}[v < 2] })
	review25NaNCase(t, "array", func(v int) [2]float64 { return map[bool][2]float64{true: {0, nan}, false: {0, 1}}[v < 2] })
}

// review25NaNCase: items 0 and 1 have NaN keys, items 2..9 one equal key.
func review25NaNCase[K comparable](t *testing.T, name string, key func(int) K) {
	t.Run(name, func(t *testing.T) {
		var started [2]chan struct{}
		for i := range started {
			started[i] = make(chan struct{})
		}
		var mu sync.Mutex
		var order []int
		s := stage.Map(source.Slice(ints(10)), func(_ context.Context, v int) (int, error) {
			if v < 2 {
				close(started[v])
				<-started[1-v] // the other NaN item must start meanwhile
				return v, nil
			}
			mu.Lock()
			order = append(order, v)
			mu.Unlock()
			return v, nil
		}, stage.Workers(3), stage.KeyBy(key))
		var n int
		var err error
		hangGuard(t, func() { n, err = sink.Count(context.Background(), s) })
		if err != nil || n != 10 {
			t.Fatalf("Count = %d, %v", n, err)
		}
		for i, v := range order {
			if v != i+2 {
				t.Fatalf("items of one equal key ran in the order %v, want input order", order)
			}
		}
	})
}
