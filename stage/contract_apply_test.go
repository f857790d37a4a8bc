package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestContractApplyFirstOutputNeverWaits: item A fills the stage's output
// queue to its bound (workers+buffer = 2) while the consumer is held in its
// callback; item B's first output must still be queued at once: the consumer
// waits for it, so a waiting first emit deadlocks.
func TestContractApplyFirstOutputNeverWaits(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			aDone := make(chan struct{})
			bDone := make(chan struct{})
			opts := []stage.Option{stage.Workers(2)}
			if ordered {
				opts = append(opts, stage.Ordered())
			}
			s := stage.Apply(source.Slice([]int{0, 1}), func(ctx context.Context, x int, emit func(int) bool) error {
				if x == 0 {
					emit(0)
					emit(1)
					emit(2)
					close(aDone)
					return nil
				}
				if !rvWait(aDone) {
					return errors.New("A never finished")
				}
				emit(10)
				close(bDone)
				return nil
			}, opts...)
			var got []int
			var err error
			first := true
			rvRun(t, func() {
				err = stage.Run(context.Background(), s, func(_ context.Context, v int, e error) error {
					if first {
						first = false
						if !rvWait(bDone) {
							return errors.New("HUNG: item B's first emit waited")
						}
					}
					got = append(got, v)
					return e
				})
			})
			if err != nil || len(got) != 4 {
				t.Fatalf("Run = %v, got %v", err, got)
			}
		})
	}
}

// TestContractApplyFurtherOutputsWaitAtBound: one item emits many outputs
// while the consumer is slow; at no time may emit have returned for more
// outputs than the consumer has taken plus the bound (plus the first output's
// place). The consumer yields the processor between items so an emitter that
// never waits would run far ahead.
func TestContractApplyFurtherOutputsWaitAtBound(t *testing.T) {
	for _, c := range []struct{ workers, buffer int }{{1, 0}, {2, 1}, {3, 4}} {
		t.Run(fmt.Sprintf("workers=%d/buffer=%d", c.workers, c.buffer), func(t *testing.T) {
			bound := c.workers + c.buffer
			var returned atomic.Int64
			s := stage.Apply(source.Slice([]int{0}), func(ctx context.Context, x int, emit func(int) bool) error {
				for i := range 300 {
					if !emit(i) {
						return ctx.Err()
					}
					returned.Add(1)
				}
				return nil
			}, stage.Workers(c.workers), stage.Buffer(c.buffer))
			var taken int64
			var worst int64
			var err error
			rvRun(t, func() {
				err = stage.Run(context.Background(), s, func(context.Context, int, error) error {
					taken++
					for range 20 {
						runtime.Gosched()
					}
					if ahead := returned.Load() - taken; ahead > worst {
						worst = ahead
					}
					return nil
				})
			})
			if err != nil || taken != 300 {
				t.Fatalf("Run = %v after %d outputs", err, taken)
			}
			t.Logf("emit ran at most %d outputs ahead of the consumer (bound %d)", worst, bound)
			// The consumer may take a batch of up to bound outputs at once
			// (taken, not yet called back), so allow 2*bound.
			if worst > 2*int64(bound) {
				t.Errorf("emit returned for %d outputs the consumer had not called back; bound %d", worst, bound)
			}
		})
	}
}

// TestContractApplyEmitFalseOnceCancelled: once the run is cancelled (the
// caller's ctx, a FailFast error elsewhere, sink.First stopping), every emit
// returns false: first outputs, further outputs, and (Ordered) outputs of an
// item that is not the oldest.
func TestContractApplyEmitFalseOnceCancelled(t *testing.T) {
	errX := errors.New("x")
	type result struct {
		mu   sync.Mutex
		true []string
	}
	check := func(r *result, what string, ok bool) {
		if ok {
			r.mu.Lock()
			r.true = append(r.true, what)
			r.mu.Unlock()
		}
	}
	for _, ordered := range []bool{false, true} {
		for _, how := range []string{"caller", "failfast", "first"} {
			t.Run(fmt.Sprintf("%s/ordered=%v", how, ordered), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				r := &result{}
				gotFirst := make(chan struct{})
				var once sync.Once
				opts := []stage.Option{stage.Workers(4)}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				s := stage.Apply(source.Slice([]int{0, 1, 2, 3}), func(ctx context.Context, x int, emit func(int) bool) error {
					switch x {
					case 0:
						emit(0) // reaches the sink first, once f returns
						return nil
					case 3:
						if !rvWait(gotFirst) {
							return errors.New("HUNG")
						}
						if how == "failfast" {
							return errX
						}
						if how == "caller" {
							cancel()
						}
						<-ctx.Done()
						check(r, "item 3 first output", emit(30))
						check(r, "item 3 further output", emit(31))
						return ctx.Err()
					default:
						<-ctx.Done()
						check(r, fmt.Sprintf("item %d first output", x), emit(x*10))
						check(r, fmt.Sprintf("item %d second output", x), emit(x*10+1))
						return ctx.Err()
					}
				}, opts...)
				var err error
				rvRun(t, func() {
					if how == "first" {
						// First's stop happens once the item arrived; gotFirst
						// releases item 0 only then: close it from a goroutine
						// once First returns? First returns only after the run
						// ended, so release at once and rely on ctx.Done.
						once.Do(func() { close(gotFirst) })
						_, _, err = sink.First(ctx, s)
						return
					}
					err = stage.Run(ctx, s, func(context.Context, int, error) error {
						once.Do(func() { close(gotFirst) })
						return nil
					})
				})
				t.Logf("err = %v", err)
				if len(r.true) > 0 {
					t.Errorf("emit returned true after the run was cancelled: %v", r.true)
				}
			})
		}
	}
}

// TestContractApplyOrderedEmitWithoutEnd: with Ordered, an item that is the
// oldest in flight may emit without end; a later item that emits meanwhile
// waits with its outputs in memory, and its further outputs wait for room
// (the window's 2×workers + buffer) until the items before it have left.
// Item 0 starts once item 1 has emitted one output. No hang, every output
// in input order.
func TestContractApplyOrderedEmitWithoutEnd(t *testing.T) {
	const many = 20000
	oneDone := make(chan struct{}) // item 1 emitted its first output
	s := stage.Apply(source.Slice([]int{0, 1, 2}), func(ctx context.Context, x int, emit func(int) bool) error {
		switch x {
		case 0:
			if !rvWait(oneDone) {
				return errors.New("HUNG")
			}
			for i := range many {
				if !emit(i) {
					return ctx.Err()
				}
			}
		case 1:
			for i := range 50 {
				if !emit(many + i) {
					return ctx.Err()
				}
				if i == 0 {
					close(oneDone)
				}
			}
		case 2:
			for i := range many {
				if !emit(many + 50 + i) {
					return ctx.Err()
				}
			}
		}
		return nil
	}, stage.Workers(2), stage.Ordered())
	var got []int
	var err error
	rvRun(t, func() { got, err = sink.Slice(context.Background(), s) })
	if err != nil || len(got) != 2*many+50 {
		t.Fatalf("err %v, %d outputs", err, len(got))
	}
	if !slices.IsSorted(got) {
		t.Fatalf("outputs out of order")
	}
}

// TestContractApplyAckAfterOutputsCommitted: f returning nil after emitting
// outputs: the item is acknowledged once those outputs are committed; f
// returning ctx.Err() leaves it unacknowledged.
func TestContractApplyAckAfterOutputsCommitted(t *testing.T) {
	a := newRvAcks()
	s := stage.Apply(a.source(ints(10)), func(ctx context.Context, x int, emit func(int) bool) error {
		emit(x)
		emit(x)
		return nil
	}, stage.Workers(3))
	seen := map[int]int{}
	var bad []string
	rvRun(t, func() {
		_ = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
			seen[v]++
			if a.fate(v) != "none" {
				bad = append(bad, fmt.Sprintf("item %d settled before output %d committed", v, seen[v]))
			}
			return nil
		})
	})
	if len(bad) > 0 {
		t.Errorf("%v", bad)
	}
	for id := range 10 {
		if a.fate(id) != "nil" {
			t.Errorf("item %d: %s", id, a.fate(id))
		}
	}
}
