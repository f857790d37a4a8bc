package stage_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// counterSource is an endless (or n-item, n >= 0) source that never waits,
// of unknown size.
func counterSource(n int) stage.Stream[int] {
	return stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if n >= 0 && i >= n {
				return 0, io.EOF
			}
			i++
			return i - 1, nil
		}, nil
	}))
}

// TestEngineLazyStartConsumerWorkersLost: Apply(Workers(4)) over a fused
// Map(Workers(4)) over an endless source that never waits. Workers(4)
// promises exactly 4 calls at once with enough input; each call waits (up
// to a watchdog) until 4 calls are in. When the Apply workers' first pulls
// race with the Map's lazy start, a worker sees the end of its input before
// the Map has started (see TestEngineLazyStartSecondHandleSeesEnd) and
// quits: the stage then never has 4 calls at once.
func TestEngineLazyStartConsumerWorkersLost(t *testing.T) {
	const runs = 200
	failed := 0
	for range runs {
		var in atomic.Int32
		all := make(chan struct{})
		var once sync.Once
		ctx, cancel := context.WithCancel(context.Background())
		short := false
		s := stage.Map(counterSource(-1), double, stage.Workers(4))
		a := stage.Apply(s, func(ctx context.Context, v int, emit func(int) bool) error {
			if in.Add(1) == 4 {
				once.Do(func() { close(all) })
			}
			select {
			case <-all:
			case <-time.After(10 * time.Second): // a watchdog: with the bug, the fourth call never comes
			}
			emit(v)
			return nil
		}, stage.Workers(4))
		hangGuard(t, func() {
			_ = stage.Run(ctx, a, func(context.Context, int, error) error {
				select {
				case <-all:
				default:
					short = true
				}
				return stage.ErrStop
			})
		})
		cancel()
		if short {
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d runs never had 4 calls of the Workers(4) stage at once: a worker quit at the start", failed, runs)
	}
}

// TestEngineLazyStartNestedOutputsLost: Apply(Workers(2)) over a fused
// Map(Workers(2)) over a fused FlatMap(Workers(2)) (3 outputs per item)
// over an AckSource that never waits. Every output must reach the sink and
// every item be told Done(nil). A worker of Apply that quit at the start
// (see above) still counts as a handle that wants a place of the Map: a
// Map goroutine may retire to it, leaving its input handle (a FlatMap
// handle, maybe holding a place and outputs of an item in its hands) in
// spares, which nobody claims.
func TestEngineLazyStartNestedOutputsLost(t *testing.T) {
	const runs = 300
	const items = 200
	bad := 0
	var first string
	for range runs {
		var done, doneNil atomic.Int64
		src := stage.NeverWaits(stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
			i := 0
			return func(context.Context) (int, stage.Ack, error) {
				if i >= items {
					return 0, nil, io.EOF
				}
				i++
				return i - 1, erAck(func(err error) {
					done.Add(1)
					if err == nil {
						doneNil.Add(1)
					}
				}), nil
			}, nil
		}))
		f := stage.FlatMap(src, func(_ context.Context, v int) ([]int, error) { return []int{3 * v, 3*v + 1, 3*v + 2}, nil }, stage.Workers(2))
		m := stage.Map(f, double, stage.Workers(2))
		a := stage.Apply(m, func(_ context.Context, v int, emit func(int) bool) error {
			emit(v)
			return nil
		}, stage.Workers(2))
		var got []int
		var err error
		hangGuard(t, func() {
			err = stage.Run(context.Background(), a, func(_ context.Context, v int, _ error) error {
				got = append(got, v)
				return nil
			})
		})
		if err != nil || len(got) != 3*items || doneNil.Load() != items || done.Load() != items {
			bad++
			if first == "" {
				slices.Sort(got)
				first = fmt.Sprintf("err=%v, outputs=%d (want %d), Done=%d, Done(nil)=%d (want %d)", err, len(got), 3*items, done.Load(), doneNil.Load(), items)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d runs lost outputs or acknowledgements; first: %s", bad, runs, first)
	}
}

type erAck func(error)

func (f erAck) Done(err error) { f(err) }

// TestEngineOrderedEmitBeforeHeadWaitsForReturn: an Ordered Apply with two
// workers. Item 1 emits once while item 0 is still in flight, then waits
// until its output reaches the sink. Item 0 then returns. Apply's doc: "an
// item's outputs wait in memory until the items before it have left; from
// then on ... emit queues them directly". Item 0 has left, but item 1's
// output stays in its worker's buffer until item 1 emits again or returns.
func TestEngineOrderedEmitBeforeHeadWaitsForReturn(t *testing.T) {
	item1Emitted := make(chan struct{})
	item1Seen := make(chan struct{})
	var waited atomic.Bool
	a := stage.Apply(source.Slice([]int{0, 1}), func(ctx context.Context, v int, emit func(int) bool) error {
		if v == 0 {
			<-item1Emitted
			emit(0)
			return nil
		}
		emit(1)
		close(item1Emitted)
		select {
		case <-item1Seen:
		case <-time.After(20 * time.Second): // a watchdog: with the bug, the output waits for ever
			waited.Store(true) // the output never left while we waited
		}
		return nil
	}, stage.Workers(2), stage.Ordered())
	var got []int
	hangGuard(t, func() {
		err := stage.Run(context.Background(), a, func(_ context.Context, v int, _ error) error {
			got = append(got, v)
			if v == 1 {
				close(item1Seen)
			}
			return nil
		})
		if err != nil {
			t.Errorf("err = %v", err)
		}
	})
	if waited.Load() {
		t.Errorf("item 0 had left, but item 1's output reached the sink only when item 1 returned (got %v)", got)
	}
}

// TestEngineLazyStartEveryItemGetsAPlace: Workers(n) over n items promises
// n calls at once. Each call waits until all n are in (a watchdog stops it
// when they never are). The places of a fused stage start lazily at the
// first pull, as many as there are items; the goroutines started first
// take items meanwhile, and that must not make the stage start fewer.
func TestEngineLazyStartEveryItemGetsAPlace(t *testing.T) {
	for n := 2; n <= 4; n++ {
		short := 0
		for range 100 {
			var in atomic.Int32
			all := make(chan struct{})
			var missed atomic.Bool
			s := stage.Map(source.Slice(make([]int, n)), func(ctx context.Context, v int) (int, error) {
				if int(in.Add(1)) == n {
					close(all)
				}
				select {
				case <-all:
				case <-time.After(10 * time.Second): // a watchdog: with the bug, the last call never comes
					missed.Store(true)
				}
				return v, nil
			}, stage.Workers(n))
			hangGuard(t, func() {
				if _, err := sink.Slice(context.Background(), s); err != nil {
					t.Error(err)
				}
			})
			if missed.Load() {
				short++
			}
		}
		if short > 0 {
			t.Errorf("n=%d: %d of 100 runs never had %d calls at once", n, short, n)
		}
	}
}
