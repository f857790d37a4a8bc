package stage_test

// OnError with FailFast, Forward, Handle and Budget (and ErrBudget),
// attacked from their doc comments and combined with the combinators.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// FailFast: "the run's context is cancelled with the *Error as its cause
// (see context.Cause); calls in flight see ctx.Done(), no new item starts,
// and the sink returns the error after every goroutine has exited."
func TestReview67FailFastCauseInFlight(t *testing.T) {
	for _, kind := range []string{"map", "filter", "flatmap", "concurrent"} {
		started := make(chan struct{})
		var cause error
		var exited atomic.Bool
		var calls atomic.Int64
		inflight := func(ctx context.Context, v int) error {
			calls.Add(1)
			if v == 0 {
				close(started)
				<-ctx.Done()
				cause = context.Cause(ctx)
				runtime.Gosched()
				exited.Store(true)
				return ctx.Err()
			}
			if v == 1 {
				<-started
				return r67Err
			}
			return nil
		}
		in := source.Slice(r67Ints(50))
		opts := []stage.Option{stage.Workers(2), stage.Buffer(1), stage.Name("s")}
		var s stage.Stream[int]
		switch kind {
		case "map":
			s = stage.Map(in, func(ctx context.Context, v int) (int, error) { return v, inflight(ctx, v) }, opts...)
		case "filter":
			s = stage.Filter(in, func(ctx context.Context, v int) (bool, error) { return true, inflight(ctx, v) }, opts...)
		case "flatmap":
			s = stage.FlatMap(in, func(ctx context.Context, v int) ([]int, error) { return []int{v}, inflight(ctx, v) }, opts...)
		case "concurrent":
			s = stage.Concurrent(stage.Map(in, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
				return func(ctx context.Context) (int, error) { return v, inflight(ctx, v) }, nil
			}, stage.Workers(1)), opts...)
		}
		var err error
		r67Guard(t, kind, func() { _, err = sink.Slice(context.Background(), s) })
		var se, ce *stage.Error
		if !errors.As(err, &se) || se.Stage != "s" || se.Index != 1 || (kind != "concurrent" && se.Input != 1) || se.Attempts != 1 || !errors.Is(err, r67Err) {
			t.Errorf("%s: %v (%+v); want s's *Error of item 1", kind, err, se)
		}
		if !exited.Load() {
			t.Errorf("%s: the sink returned before the call in flight had exited", kind)
		}
		if !errors.As(cause, &ce) || ce != se {
			t.Errorf("%s: the call in flight saw the cause %v; want the *Error the sink returned", kind, cause)
		}
		// Items 0 and 1 were in flight, each holding one of the two
		// workers until the failure; no new item starts after it.
		if calls.Load() != 2 {
			t.Errorf("%s: %d calls; want 2 (no new item starts after the failure)", kind, calls.Load())
		}
	}
}

// Forward: "the *Error takes the item's place downstream; later stages
// pass it through without calling their function, and the sink reports
// it. The run goes on."
func TestReview67ForwardThroughStages(t *testing.T) {
	var later r67Counter
	m1 := stage.Map(source.Slice(r67Ints(10)), func(_ context.Context, v int) (int, error) {
		if v == 2 || v == 7 {
			return 0, r67Err
		}
		return v, nil
	}, stage.OnError(stage.Forward), stage.Name("first"))
	count := func(_ context.Context, v int) (int, error) { later.inc(); return v, nil }
	f := stage.Filter(m1, func(_ context.Context, v int) (bool, error) { later.inc(); return true, nil }, stage.KeyBy(func(v int) int { return v }))
	fm := stage.FlatMap(f, func(_ context.Context, v int) ([]int, error) { later.inc(); return []int{v}, nil }, stage.Ordered(), stage.Workers(3))
	b := stage.Unbatch(stage.Batch(fm, 3, 0))
	m2 := stage.Map(b, count, stage.Retry(3, 0), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return r67Err })))
	got, err := sink.Slice(context.Background(), m2)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 2 || !r67SameInts(got, []int{0, 1, 3, 4, 5, 6, 8, 9}) {
		t.Fatalf("%v, %v", got, err)
	}
	for _, e := range fe.Sample {
		var se *stage.Error
		if !errors.As(e, &se) || se.Stage != "first" || !errors.Is(e, r67Err) {
			t.Errorf("forwarded %v", e)
		}
	}
	if later.get() != 3*8 {
		t.Errorf("later stages made %d calls; want %d (none for the forwarded errors)", later.get(), 3*8)
	}
}

// Handle: "h sees the *Error (stage, index, input, attempts, cause) once
// the item's retries are spent. If h returns nil, the item is dropped ...
// and the run goes on"; "Calls of h never overlap within one stage of one
// run"; "ctx is the run's context".
func TestReview67HandleSeesAndDrops(t *testing.T) {
	for _, w := range []int{1, 8, -1} {
		var inH atomic.Int32
		var seen []int
		var tries r67Tries
		ctx := ctxtest.WrapCtx{Context: context.Background()}
		h := stage.Handle(func(hctx context.Context, e *stage.Error) error {
			if inH.Add(1) != 1 {
				t.Errorf("w=%d: calls of h overlap", w)
			}
			defer inH.Add(-1)
			runtime.Gosched()
			if hctx.Value(ctxtest.Key{}) != "ctxtest" || hctx.Err() != nil {
				t.Errorf("w=%d: h's ctx is not the run's", w)
			}
			if e.Stage != "map#1" || e.Attempts != 2 || e.Input != e.Index || !errors.Is(e, r67Err) {
				t.Errorf("w=%d: h saw %+v", w, e)
			}
			seen = append(seen, e.Index) // no lock: calls never overlap
			return nil
		})
		m := stage.Map(source.Slice(r67Ints(60)), func(_ context.Context, v int) (int, error) {
			tries.add(v)
			if v%3 == 0 {
				return 0, r67Err
			}
			return v, nil
		}, stage.Workers(w), stage.Retry(2, 0), stage.OnError(h))
		var got []int
		var err error
		r67Guard(t, "handle", func() { got, err = sink.Slice(ctx, m) })
		var want, wantSeen []int
		for v := range 60 {
			if v%3 == 0 {
				wantSeen = append(wantSeen, v)
			} else {
				want = append(want, v)
			}
		}
		if err != nil || !r67SameInts(got, want) || !r67SameInts(seen, wantSeen) {
			t.Errorf("w=%d: got %v, %v; h saw %v", w, got, err, seen)
		}
	}
}

// Handle: "if h returns an error, the run fails with it as with FailFast,
// and the sink returns h's error (one that IsStop would take for a stop,
// such as ErrStop, comes wrapped in an *Error of the item's stage and
// index ...)"; "A panic in h fails the run with an *Error wrapping a
// *PanicError."
func TestReview67HandleErrors(t *testing.T) {
	mk := func(h func(context.Context, *stage.Error) error) stage.Stream[int] {
		return stage.Map(source.Slice(r67Ints(10)), func(_ context.Context, v int) (int, error) {
			if v == 4 {
				return 0, r67Err
			}
			return v, nil
		}, stage.Workers(1), stage.Name("h"), stage.OnError(stage.Handle(h)))
	}
	hErr := ctxtest.Error("r67 handler failed")
	_, err := sink.Slice(context.Background(), mk(func(context.Context, *stage.Error) error { return hErr }))
	if !errors.Is(err, hErr) {
		t.Errorf("h's error: %v", err)
	}

	for _, stop := range []error{stage.ErrStop, fmt.Errorf("r67 wrapped: %w", stage.ErrStop)} {
		_, err = sink.Slice(context.Background(), mk(func(context.Context, *stage.Error) error { return stop }))
		var se *stage.Error
		if err == nil || !errors.As(err, &se) || se.Stage != "h" || se.Index != 4 || !errors.Is(err, stage.ErrStop) || stage.IsStop(err) {
			t.Errorf("h's %v: the sink returned %v; want a failure, an *Error of h's item 4 wrapping ErrStop", stop, err)
		}
		// A callback that returns it from a run of its own fails that run too.
		outer := sink.ForEach(context.Background(), source.Slice([]int{1}), func(ctx context.Context, _ int) error {
			_, err := sink.Slice(ctx, mk(func(context.Context, *stage.Error) error { return stop }))
			return err
		})
		if outer == nil || !errors.Is(outer, stage.ErrStop) {
			t.Errorf("h's %v: the outer run returned %v; want a failure", stop, outer)
		}
	}

	_, err = sink.Slice(context.Background(), mk(func(context.Context, *stage.Error) error { panic("r67 handler") }))
	var se *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "r67 handler" {
		t.Errorf("h panics: %v", err)
	}
}

// Budget: "the first n failed items of a run are dropped after being
// passed to h (which may be nil), and the (n+1)th, which h does not see,
// fails the run with an error that wraps both ErrBudget and that item's
// *Error"; "The count is per stage and per run"; "Calls of h never
// overlap within a stage."
func TestReview67Budget(t *testing.T) {
	for _, n := range []int{0, 1, 3} {
		for _, w := range []int{1, 4} {
			for _, nilH := range []bool{false, true} {
				name := fmt.Sprintf("n=%d/w=%d/nilh=%v", n, w, nilH)
				var mu sync.Mutex
				var inH atomic.Int32
				seen := map[int]bool{}
				var h func(context.Context, *stage.Error) error
				if !nilH {
					h = func(_ context.Context, e *stage.Error) error {
						if inH.Add(1) != 1 {
							t.Errorf("%s: calls of h overlap", name)
						}
						defer inH.Add(-1)
						runtime.Gosched()
						mu.Lock()
						seen[e.Index] = true
						mu.Unlock()
						return nil
					}
				}
				s := stage.Map(source.Slice(r67Ints(20)), func(_ context.Context, v int) (int, error) {
					return 0, r67Err // every item fails
				}, stage.Workers(w), stage.OnError(stage.Budget(n, h)))
				for run := range 2 {
					mu.Lock()
					clear(seen)
					mu.Unlock()
					var err error
					r67Guard(t, name, func() { _, err = sink.Slice(context.Background(), s) })
					var se *stage.Error
					if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || !errors.Is(err, r67Err) {
						t.Errorf("%s run %d: %v; want ErrBudget and an *Error", name, run, err)
						continue
					}
					mu.Lock()
					if !nilH && len(seen) != n {
						t.Errorf("%s run %d: h saw %d items; want %d", name, run, len(seen), n)
					}
					if seen[se.Index] {
						t.Errorf("%s run %d: h saw the item (%d) that exceeded the budget", name, run, se.Index)
					}
					mu.Unlock()
				}
			}
		}
	}
	// Within the budget, per stage: two stages of Budget(1), one failure each.
	fail := func(bad int) func(context.Context, int) (int, error) {
		return func(_ context.Context, v int) (int, error) {
			if v == bad {
				return 0, r67Err
			}
			return v, nil
		}
	}
	s := stage.Map(stage.Map(source.Slice(r67Ints(10)), fail(3), stage.OnError(stage.Budget(1, nil))), fail(5), stage.OnError(stage.Budget(1, nil)))
	for run := range 2 {
		got, err := sink.Slice(context.Background(), s)
		if err != nil || !r67SameInts(got, []int{0, 1, 2, 4, 6, 7, 8, 9}) {
			t.Errorf("per stage, run %d: %v, %v", run, got, err)
		}
	}
	// h's error fails the run at once, as with Handle.
	hErr := ctxtest.Error("r67 budget handler")
	_, err := sink.Slice(context.Background(), stage.Map(source.Slice(r67Ints(10)), fail(2), stage.OnError(stage.Budget(5, func(context.Context, *stage.Error) error { return hErr }))))
	if !errors.Is(err, hErr) || errors.Is(err, stage.ErrBudget) {
		t.Errorf("h's error: %v", err)
	}
}

// ErrorPolicy.String: "FailFast", "Forward", "Handle" or "Budget(n)".
func TestReview67PolicyString(t *testing.T) {
	h := func(context.Context, *stage.Error) error { return nil }
	var zero stage.ErrorPolicy
	for _, c := range []struct {
		p    stage.ErrorPolicy
		want string
	}{
		{zero, "FailFast"}, {stage.FailFast, "FailFast"}, {stage.Forward, "Forward"},
		{stage.Handle(h), "Handle"}, {stage.Budget(0, nil), "Budget(0)"}, {stage.Budget(7, h), "Budget(7)"},
	} {
		if got := c.p.String(); got != c.want {
			t.Errorf("String() = %q; want %q", got, c.want)
		}
	}
}
