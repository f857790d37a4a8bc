package stage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestContractAckFanOutModel: a deterministic fan-out pipeline (FlatMap with
// 0..3 outputs, Tee into a failing Map and a failing Filter, Merge, Batch,
// Unbatch) whose sink commits everything. Every item must be settled exactly
// once: nil when every output it led to was committed or dropped on purpose,
// an error when any forwarded *Error it led to reached the sink.
func TestContractAckFanOutModel(t *testing.T) {
	const n = 120
	errA := errors.New("A fails")
	errB := errors.New("B fails")
	for _, w := range []int{1, 3, -1} {
		for _, ordered := range []bool{false, true} {
			t.Run(fmt.Sprintf("w=%d/ordered=%v", w, ordered), func(t *testing.T) {
				a := newRvAcks()
				opts := []stage.Option{stage.Workers(w)}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				fm := stage.FlatMap(a.source(ints(n)), func(_ context.Context, x int) ([]int, error) {
					var out []int
					for j := range x % 4 {
						out = append(out, x*10+j)
					}
					return out, nil
				}, opts...)
				b := stage.Tee(fm, 2)
				ma := stage.Map(b[0], func(_ context.Context, v int) (int, error) {
					if v%7 == 3 {
						return 0, errA
					}
					return v, nil
				}, append(opts, stage.OnError(stage.Forward))...)
				fb := stage.Filter(b[1], func(_ context.Context, v int) (bool, error) {
					if v%11 == 5 {
						return false, errB
					}
					return v%2 == 0, nil
				}, append(opts, stage.OnError(stage.Forward))...)
				out := stage.Unbatch(stage.Batch(stage.Merge(ma, fb), 5, 0))
				var values, errs int
				var err error
				rvRun(t, func() {
					err = stage.Run(context.Background(), out, func(_ context.Context, _ int, e error) error {
						if e != nil {
							errs++
						} else {
							values++
						}
						return nil
					})
				})
				if err != nil {
					t.Fatalf("Run = %v, want nil", err)
				}
				wantValues, wantErrs := 0, 0
				for x := range n {
					fail := false
					for j := range x % 4 {
						v := x*10 + j
						fa, fbb := v%7 == 3, v%11 == 5
						if fa {
							wantErrs++
						} else {
							wantValues++
						}
						if fbb {
							wantErrs++
						} else if v%2 == 0 {
							wantValues++
						}
						fail = fail || fa || fbb
					}
					got := a.fate(x)
					switch {
					case fail && !strings.HasPrefix(got, "err"):
						t.Errorf("item %d: fate %s, want an error (a forwarded error it led to reached the sink)", x, got)
					case !fail && got != "nil":
						t.Errorf("item %d: fate %s, want nil", x, got)
					}
				}
				if values != wantValues || errs != wantErrs {
					t.Errorf("sink saw %d values, %d errors; want %d, %d", values, errs, wantValues, wantErrs)
				}
			})
		}
	}
}

// TestContractAckErrAsSoonAsWayFailed: Done(err) is called as soon as the first
// forwarded error an item led to reaches the sink, while the item's other
// outputs are still on their way (held in a stage until Done is seen); later
// outputs, failed or not, do not change its fate.
func TestContractAckErrAsSoonAsWayFailed(t *testing.T) {
	errA := errors.New("first failure")
	errB := errors.New("second failure")
	for _, tee := range []bool{false, true} {
		t.Run(fmt.Sprintf("tee=%v", tee), func(t *testing.T) {
			a := newRvAcks()
			fm := stage.FlatMap(a.source([]int{0}), func(_ context.Context, x int) ([]int, error) {
				if tee {
					return []int{0}, nil
				}
				return []int{0, 1, 2}, nil
			}, stage.Workers(1))
			fn := func(ctx context.Context, v int) (int, error) {
				switch v {
				case 0:
					return 0, errA
				case 1:
					select {
					case <-a.done(0):
					case <-time.After(rvWatchdog):
						return 0, errors.New("HUNG: Done(err) was not called while the item's other outputs were on their way")
					}
					return 0, errB
				}
				return v, nil
			}
			var s stage.Stream[int]
			if tee {
				b := stage.Tee(fm, 2)
				m0 := stage.Map(b[0], fn, stage.Workers(1), stage.OnError(stage.Forward))
				m1 := stage.Map(b[1], func(ctx context.Context, v int) (int, error) { return fn(ctx, 1) }, stage.Workers(1), stage.OnError(stage.Forward))
				s = stage.Merge(m0, m1)
			} else {
				s = stage.Map(fm, fn, stage.Workers(1), stage.OnError(stage.Forward))
			}
			var seen []error
			var err error
			rvRun(t, func() {
				err = stage.Run(context.Background(), s, func(_ context.Context, _ int, e error) error {
					seen = append(seen, e)
					return nil
				})
			})
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
			for _, e := range seen {
				if e != nil && strings.Contains(e.Error(), "HUNG") {
					t.Fatalf("%v", e)
				}
			}
			if a.count(0) != 1 || !errors.Is(a.err(0), errA) {
				t.Fatalf("item 0: %s, want settled once with the first error (%v)", a.fate(0), errA)
			}
		})
	}
}

// TestContractAckNotBeforeCommit: no item is settled before the sink callback
// that commits its (last) output has returned.
func TestContractAckNotBeforeCommit(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			a := newRvAcks()
			fm := stage.FlatMap(a.source(ints(40)), func(_ context.Context, x int) ([]int, error) {
				return []int{x, x, x}, nil
			}, m.opts()...)
			b := stage.Tee(stage.Map(fm, double, m.opts()...), 2)
			s := stage.Merge(b[0], b[1])
			seen := map[int]int{}
			var bad []string
			var err error
			rvRun(t, func() {
				err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
					id := v / 2
					seen[id]++
					if f := a.fate(id); f != "none" {
						bad = append(bad, fmt.Sprintf("item %d settled (%s) before its output %d of 6 was committed", id, f, seen[id]))
					}
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(bad) > 0 {
				t.Fatalf("%d violations, first: %s", len(bad), bad[0])
			}
			for id := range 40 {
				if a.fate(id) != "nil" {
					t.Errorf("item %d: %s, want nil", id, a.fate(id))
				}
			}
		})
	}
}

// TestContractAckCommittedThenRunEnds: whatever ends the run, an item that was
// committed is told nil, and one whose commit failed is told its error.
func TestContractAckCommittedThenRunEnds(t *testing.T) {
	errFail := errors.New("item 1 fails")
	errCommit := errors.New("commit failed")

	// The sink's callback for item 0 is running when item 1 fails FailFast;
	// it waits for the cancellation and then commits (or fails to).
	for _, commitFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("failfast-elsewhere/commitFails=%v", commitFails), func(t *testing.T) {
			a := newRvAcks()
			inCb := make(chan struct{})
			s := stage.Map(a.source(ints(4)), func(ctx context.Context, x int) (int, error) {
				switch x {
				case 0:
					return 0, nil
				case 1:
					rvWait(inCb)
					return 0, errFail
				}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Workers(2))
			var err error
			rvRun(t, func() {
				err = stage.Run(context.Background(), s, func(ctx context.Context, v int, _ error) error {
					close(inCb)
					select {
					case <-ctx.Done():
					case <-time.After(rvWatchdog):
						return errors.New("HUNG")
					}
					if commitFails {
						return errCommit
					}
					return nil
				})
			})
			t.Logf("Run returned %v; fates %s", err, a.fates(4))
			if !errors.Is(err, errFail) && !errors.Is(err, errCommit) {
				t.Errorf("Run = %v", err)
			}
			if commitFails {
				if !errors.Is(a.err(0), errCommit) || a.count(0) != 1 {
					t.Errorf("item 0 (commit failed): %s, want told errCommit", a.fate(0))
				}
			} else if a.fate(0) != "nil" {
				t.Errorf("item 0 (committed): %s, want nil", a.fate(0))
			}
			if a.count(1) != 1 || !errors.Is(a.err(1), errFail) {
				t.Errorf("item 1 (FailFast at it): %s, want its error", a.fate(1))
			}
			for _, id := range []int{2, 3} {
				if a.fate(id) != "none" {
					t.Errorf("item %d (cut short): %s, want none", id, a.fate(id))
				}
			}
		})
	}

	// The caller cancels ctx inside the callback, which then commits.
	t.Run("caller-cancel-in-callback", func(t *testing.T) {
		a := newRvAcks()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var err error
		rvRun(t, func() {
			err = stage.Run(ctx, stage.Map(a.source(ints(5)), double, stage.Workers(1)), func(context.Context, int, error) error {
				cancel()
				return nil
			})
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want Canceled", err)
		}
		if a.fate(0) != "nil" {
			t.Errorf("item 0: %s, want nil (committed)", a.fate(0))
		}
		for id := 1; id < 5; id++ {
			if a.fate(id) == "nil" {
				t.Errorf("item %d: nil, never committed", id)
			}
		}
	})

	// A batch committed after the caller cancelled: each member is told nil.
	t.Run("batch-committed-after-cancel", func(t *testing.T) {
		a := newRvAcks()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var err error
		rvRun(t, func() {
			err = stage.Run(ctx, stage.Batch(a.source(ints(6)), 3, 0), func(context.Context, []int, error) error {
				cancel()
				return nil
			})
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want Canceled", err)
		}
		for id := range 3 {
			if a.fate(id) != "nil" {
				t.Errorf("item %d: %s, want nil (its batch was committed)", id, a.fate(id))
			}
		}
		for id := 3; id < 6; id++ {
			if a.fate(id) == "nil" {
				t.Errorf("item %d: nil, never committed", id)
			}
		}
	})

	// Unbatch straight after Batch: the element committed after the cancel is
	// settled nil, its batch-mates never delivered are not.
	t.Run("unbatch-element-committed-after-cancel", func(t *testing.T) {
		a := newRvAcks()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var err error
		var got []int
		rvRun(t, func() {
			err = stage.Run(ctx, stage.Unbatch(stage.Batch(a.source(ints(6)), 3, 0)), func(_ context.Context, v int, _ error) error {
				got = append(got, v)
				if v == 1 {
					cancel()
				}
				return nil
			})
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want Canceled", err)
		}
		for _, v := range got {
			if a.fate(v) != "nil" {
				t.Errorf("item %d (committed): %s, want nil", v, a.fate(v))
			}
		}
		for id := len(got); id < 6; id++ {
			if a.fate(id) == "nil" {
				t.Errorf("item %d: nil, never committed (got %v)", id, got)
			}
		}
	})

	// Tee: the second copy of an item is committed after the cancel.
	t.Run("tee-both-copies-committed", func(t *testing.T) {
		a := newRvAcks()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b := stage.Tee(a.source(ints(10)), 2)
		copies := map[int]int{}
		var err error
		rvRun(t, func() {
			err = stage.Run(ctx, stage.Merge(b[0], b[1]), func(_ context.Context, v int, _ error) error {
				copies[v]++
				if copies[v] == 2 && v >= 3 {
					cancel()
				}
				return nil
			})
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want Canceled", err)
		}
		for id := range 10 {
			want := "none"
			if copies[id] == 2 {
				want = "nil"
			}
			if f := a.fate(id); f != want && !(want == "none" && f != "nil" && !strings.HasPrefix(f, "DUP")) {
				t.Errorf("item %d (%d copies committed): %s, want %s", id, copies[id], f, want)
			}
		}
	})

	// ErrStop commits its item.
	t.Run("errstop", func(t *testing.T) {
		a := newRvAcks()
		var err error
		rvRun(t, func() {
			err = stage.Run(context.Background(), stage.Map(a.source(ints(5)), double, stage.Workers(1)), func(_ context.Context, v int, _ error) error {
				if v == 2 {
					return stage.ErrStop
				}
				return nil
			})
		})
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if a.fate(0) != "nil" || a.fate(1) != "nil" {
			t.Errorf("fates %s, want 0 and 1 nil (ErrStop commits)", a.fates(5))
		}
		for id := 2; id < 5; id++ {
			if a.fate(id) == "nil" {
				t.Errorf("item %d: nil, never committed", id)
			}
		}
	})
}

// TestContractAckFirstAndAllBreak documents what sink.First and a break out of
// sink.All do to the acknowledgement of the item they returned.
func TestContractAckFirstAndAllBreak(t *testing.T) {
	a := newRvAcks()
	var v int
	var ok bool
	var err error
	rvRun(t, func() { v, ok, err = sink.First(context.Background(), a.source(ints(3))) })
	t.Logf("First = %d %v %v; item 0 fate: %s", v, ok, err, a.fate(0))
	if strings.HasPrefix(a.fate(0), "DUP") || strings.HasPrefix(a.fate(0), "err") {
		t.Errorf("First: item 0 %s", a.fate(0))
	}
	b := newRvAcks()
	rvRun(t, func() {
		for range sink.All(context.Background(), b.source(ints(3))) {
			break
		}
	})
	t.Logf("All+break: item 0 fate: %s", b.fate(0))
	if strings.HasPrefix(b.fate(0), "DUP") || strings.HasPrefix(b.fate(0), "err") {
		t.Errorf("All+break: item 0 %s", b.fate(0))
	}
}

// TestContractAckPolicyFates: Done(err) when the item's own stage ends the run
// (FailFast, Handle error, Budget exceeded); Done(nil) when Handle or Budget
// accepts the failure; a retried item that succeeds is settled nil once; an
// item cut short is not settled.
func TestContractAckPolicyFates(t *testing.T) {
	errX := errors.New("x")
	errH := errors.New("handler refuses")
	fails := func(ids ...int) func(context.Context, int) (int, error) {
		return func(_ context.Context, x int) (int, error) {
			for _, id := range ids {
				if x == id {
					return 0, errX
				}
			}
			return x, nil
		}
	}
	run := func(t *testing.T, a *rvAcks, s stage.Stream[int]) error {
		var err error
		rvRun(t, func() { err = sink.ForEach(context.Background(), s, func(context.Context, int) error { return nil }) })
		return err
	}
	t.Run("failfast-at-item", func(t *testing.T) {
		a := newRvAcks()
		err := run(t, a, stage.Map(a.source(ints(4)), fails(2), stage.Workers(1)))
		if !errors.Is(err, errX) || a.count(2) != 1 || !errors.Is(a.err(2), errX) {
			t.Errorf("err %v; fates %s; want item 2 told errX", err, a.fates(4))
		}
		if a.fate(0) != "nil" || a.fate(1) != "nil" {
			t.Errorf("fates %s: 0 and 1 were committed", a.fates(4))
		}
	})
	t.Run("handle-accepts", func(t *testing.T) {
		a := newRvAcks()
		err := run(t, a, stage.Map(a.source(ints(4)), fails(1, 2), stage.Workers(2), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil }))))
		if err != nil || a.fates(4) != "0:nil 1:nil 2:nil 3:nil " {
			t.Errorf("err %v; fates %s; want all nil", err, a.fates(4))
		}
	})
	t.Run("handle-refuses", func(t *testing.T) {
		a := newRvAcks()
		err := run(t, a, stage.Map(a.source(ints(4)), fails(1), stage.Workers(1), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return errH }))))
		if !errors.Is(err, errH) || a.count(1) != 1 || a.err(1) == nil {
			t.Errorf("err %v; fates %s; want item 1 told an error", err, a.fates(4))
		}
	})
	t.Run("budget", func(t *testing.T) {
		a := newRvAcks()
		err := run(t, a, stage.Map(a.source(ints(5)), fails(1, 3), stage.Workers(1), stage.OnError(stage.Budget(1, nil))))
		if !errors.Is(err, stage.ErrBudget) {
			t.Errorf("err %v, want ErrBudget", err)
		}
		if a.fate(1) != "nil" || a.count(3) != 1 || !errors.Is(a.err(3), stage.ErrBudget) && !errors.Is(a.err(3), errX) {
			t.Errorf("fates %s; want 1 nil (within budget), 3 told the budget's error", a.fates(5))
		}
	})
	t.Run("retry-then-success", func(t *testing.T) {
		a := newRvAcks()
		var mu sync.Mutex
		tries := map[int]int{}
		err := run(t, a, stage.Map(a.source(ints(4)), func(_ context.Context, x int) (int, error) {
			mu.Lock()
			tries[x]++
			n := tries[x]
			mu.Unlock()
			if n == 1 {
				return 0, errX
			}
			return x, nil
		}, stage.Workers(2), stage.Retry(3, 0)))
		if err != nil || a.fates(4) != "0:nil 1:nil 2:nil 3:nil " {
			t.Errorf("err %v; fates %s; want all nil once", err, a.fates(4))
		}
	})
	t.Run("keyby-key-panic-forward", func(t *testing.T) {
		a := newRvAcks()
		s := stage.Map(a.source(ints(4)), double, stage.Workers(2), stage.OnError(stage.Forward), stage.KeyBy(func(x int) int {
			if x == 2 {
				panic("bad key")
			}
			return x
		}))
		var err error
		var pe *stage.PanicError
		rvRun(t, func() { _, err = sink.Count(context.Background(), s) })
		if !errors.As(err, &pe) || a.count(2) != 1 || !errors.As(a.err(2), &pe) {
			t.Errorf("err %v; fates %s; want item 2 told its *PanicError", err, a.fates(4))
		}
		if a.fate(0) != "nil" || a.fate(1) != "nil" || a.fate(3) != "nil" {
			t.Errorf("fates %s", a.fates(4))
		}
	})
	t.Run("cut-short", func(t *testing.T) {
		a := newRvAcks()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		started := make(chan struct{})
		var err error
		go func() { <-started; cancel() }()
		rvRun(t, func() {
			err = sink.ForEach(ctx, stage.Map(a.source(ints(3)), func(ctx context.Context, x int) (int, error) {
				close(started)
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Workers(1)), func(context.Context, int) error { return nil })
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		if a.fate(0) != "none" {
			t.Errorf("item 0 (function cut short): %s, want none", a.fate(0))
		}
	})
}

// TestContractApplyNilAfterCancelledEmit: an Apply function that sees the run
// cancelled, whose emit returns false (the output is dropped), and that then
// returns nil. The item's output never reached the sink: Done(nil) would
// acknowledge an item whose data was lost ("Done is not called when the run
// ended before the item's fate was known: ... a cancelled context").
func TestContractApplyNilAfterCancelledEmit(t *testing.T) {
	for _, first := range []bool{true, false} {
		t.Run(fmt.Sprintf("firstOutput=%v", first), func(t *testing.T) {
			a := newRvAcks()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var emitted []bool
			s := stage.Apply(a.source([]int{0}), func(ctx context.Context, x int, emit func(int) bool) error {
				if !first {
					emitted = append(emitted, emit(-1))
				}
				cancel()
				<-ctx.Done()
				emitted = append(emitted, emit(x))
				return nil
			}, stage.Workers(1))
			var got []int
			var err error
			rvRun(t, func() {
				err = stage.Run(ctx, s, func(_ context.Context, v int, _ error) error {
					got = append(got, v)
					return nil
				})
			})
			t.Logf("err=%v emitted=%v got=%v fate=%s", err, emitted, got, a.fate(0))
			if emitted[len(emitted)-1] {
				t.Errorf("emit after the cancellation returned true")
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want Canceled", err)
			}
			if a.fate(0) == "nil" {
				t.Errorf("item 0 settled nil though its output was dropped by emit and never committed (sink got %v)", got)
			}
		})
	}
}
