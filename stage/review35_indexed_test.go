package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Doc: "Indexed returns a stream of n items, at(0), at(1), ..., at(n-1) ...
// at is called ... once per position ... Positions are claimed in order".
func TestReview35IndexedOncePerPosition(t *testing.T) {
	const n = 2000
	for _, m := range modes {
		var mu sync.Mutex
		calls := map[int]int{}
		src := stage.Indexed(n, func(i int) int {
			mu.Lock()
			calls[i]++
			mu.Unlock()
			return i
		})
		if src.Len() != n {
			t.Errorf("Len %d", src.Len())
		}
		var got []int
		r35Run(t, func() {
			var err error
			got, err = sink.Slice(context.Background(), stage.Map(src, double, m.opts()...))
			if err != nil {
				t.Error(err)
			}
		})
		if len(calls) != n {
			t.Errorf("%v: at called for %d positions, want %d", m, len(calls), n)
		}
		for i, c := range calls {
			if c != 1 || i < 0 || i >= n {
				t.Errorf("%v: at(%d) called %d times", m, i, c)
			}
		}
		if m.ordered || m.workers == 1 {
			for i, v := range got {
				if v != 2*i {
					t.Errorf("%v: item %d = %d", m, i, v)
					break
				}
			}
		}
		sort.Ints(got)
		if len(got) != n || got[n-1] != 2*(n-1) {
			t.Errorf("%v: got %d items", m, len(got))
		}
	}
	// straight into a sink
	var got []int
	r35Run(t, func() { got, _ = sink.Slice(context.Background(), stage.Indexed(5, func(i int) int { return i * i })) })
	if fmt.Sprint(got) != "[0 1 4 9 16]" {
		t.Errorf("bare Indexed: %v", got)
	}
}

// n = 0: empty, at never called; n < 0 or nil at: panic.
func TestReview35IndexedSizes(t *testing.T) {
	called := false
	s := stage.Indexed(0, func(int) int { called = true; return 0 })
	if s.Len() != 0 {
		t.Errorf("Indexed(0).Len() = %d", s.Len())
	}
	r35Run(t, func() {
		got, err := sink.Slice(context.Background(), stage.Map(s, double))
		if len(got) != 0 || err != nil || called {
			t.Errorf("Indexed(0): %v %v called=%v", got, err, called)
		}
	})
	for _, n := range []int{-1, math.MinInt} {
		if r35Panics(func() { stage.Indexed(n, func(int) int { return 0 }) }) == nil {
			t.Errorf("Indexed(%d) did not panic", n)
		}
	}
	if r35Panics(func() { stage.Indexed[int](3, nil) }) == nil {
		t.Error("Indexed with nil at did not panic")
	}
}

// Huge n: Len is n, a sink that stops early takes only what it needs, and
// stages with huge worker counts or windows over it do not allocate for n.
func TestReview35IndexedHuge(t *testing.T) {
	var calls atomic.Int64
	at := func(i int) int { calls.Add(1); return i }
	s := stage.Indexed(math.MaxInt, at)
	if s.Len() != math.MaxInt {
		t.Errorf("Len = %d", s.Len())
	}
	r35Run(t, func() {
		v, ok, err := sink.First(context.Background(), s)
		if v != 0 || !ok || err != nil {
			t.Errorf("First = %v %v %v", v, ok, err)
		}
	})
	if c := calls.Load(); c != 1 {
		t.Errorf("bare First took %d items, want exactly 1", c)
	}
	cases := []struct {
		name string
		opts []stage.Option
	}{
		{"w=max", []stage.Option{stage.Workers(math.MaxInt)}},
		{"w=8/buf=max/ordered", []stage.Option{stage.Workers(8), stage.Buffer(math.MaxInt), stage.Ordered()}},
		{"w=8/buf=max", []stage.Option{stage.Workers(8), stage.Buffer(math.MaxInt)}},
		{"w=-1", []stage.Option{stage.Workers(-1)}},
		{"w=-1/ordered", []stage.Option{stage.Workers(-1), stage.Ordered()}},
	}
	for _, c := range cases {
		for _, huge := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/huge=%v", c.name, huge), func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) {
					n := 1000
					if huge {
						n = math.MaxInt
					}
					m := stage.Map(stage.Indexed(n, func(i int) int { return i }), double, c.opts...)
					var got []int
					runcheck.NoHang(t, c.name, func() {
						for v, err := range sink.All(context.Background(), m) {
							if err != nil {
								t.Errorf("%v", err)
								break
							}
							got = append(got, v)
							if len(got) == 100 {
								break
							}
						}
					})
					if len(got) != 100 {
						t.Errorf("got %d items", len(got))
					}
				})
			})
		}
	}
}

// Doc: "A panic in at ends the run with a *SourceError"; Source: "items
// produced before it still go through, then the sink returns it".
func TestReview35IndexedPanic(t *testing.T) {
	for _, m := range append(modes, mode{1, false}) {
		for _, bare := range []bool{false, true} {
			src := stage.Indexed(10, func(i int) int {
				if i == 3 {
					panic(fmt.Sprintf("at %d", i))
				}
				return i
			})
			s := src
			if !bare {
				s = stage.Map(src, func(_ context.Context, x int) (int, error) { return x, nil }, m.opts()...)
			}
			var got []int
			var err error
			r35Run(t, func() {
				err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
					got = append(got, v)
					return nil
				})
			})
			var se *stage.SourceError
			var pe *stage.PanicError
			if !errors.As(err, &se) || !errors.As(err, &pe) || !strings.Contains(fmt.Sprint(pe.Value), "at 3") {
				t.Errorf("%v bare=%v: err %v, want *SourceError with *PanicError", m, bare, err)
			}
			sort.Ints(got)
			if len(got) < 3 || fmt.Sprint(got[:3]) != "[0 1 2]" {
				t.Errorf("%v bare=%v: delivered %v, want 0 1 2 among them", m, bare, got)
			}
			if bare || m.workers == 1 {
				if fmt.Sprint(got) != "[0 1 2]" {
					t.Errorf("%v bare=%v: delivered %v, want exactly [0 1 2]", m, bare, got)
				}
			}
		}
	}
}

// Doc: "once the run is cancelled ..., no call of at starts but one already
// on its way". With one worker and the cancellation inside at itself, none
// is on its way: no later position is asked for.
func TestReview35IndexedNoCallAfterCancel(t *testing.T) {
	for _, buf := range []int{0, 1} {
		ctx, cancel := context.WithCancel(context.Background())
		var after atomic.Int64
		var cancelled atomic.Bool
		src := stage.Indexed(1000, func(i int) int {
			if cancelled.Load() {
				after.Add(1)
			}
			if i == 5 {
				cancel()
				cancelled.Store(true)
			}
			return i
		})
		var err error
		r35Run(t, func() {
			_, err = sink.Slice(ctx, stage.Map(src, double, stage.Workers(1), stage.Buffer(buf)))
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
		if a := after.Load(); a != 0 {
			t.Errorf("buffer %d: at called %d times after the run was cancelled", buf, a)
		}
	}
}
