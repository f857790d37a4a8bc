package stage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

func rvClassify(err error) string {
	var se *stage.SourceError
	var pe *stage.PanicError
	var ie *stage.Error
	switch {
	case err == nil:
		return "nil"
	case errors.As(err, &se) && errors.As(se.Err, &pe):
		return "source-panic"
	case errors.As(err, &se):
		return "source-error"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ie):
		return "item-error"
	}
	return "other:" + err.Error()
}

// TestContractAckDonePanics: "A panic in Done ends the run with a
// *SourceError", wherever Done is called from. Run in a child process since a
// panic in Done might crash the process or hang.
func TestContractAckDonePanics(t *testing.T) {
	errX := errors.New("x")
	type scen struct {
		name string
		want string // "" = only recorded
		run  func(a *rvAcks) error
	}
	ctxBg := context.Background()
	scens := []scen{
		{"commit-in-sink", "source-panic", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 1 }
			return sink.ForEach(ctxBg, stage.Map(a.source(ints(5)), double, stage.Workers(2)), func(context.Context, int) error { return nil })
		}},
		{"filter-drop-in-worker", "source-panic", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 1 }
			return sink.ForEach(ctxBg, stage.Filter(a.source(ints(5)), func(_ context.Context, x int) (bool, error) { return x != 1, nil }, stage.Workers(2)), func(context.Context, int) error { return nil })
		}},
		{"filter-drop-every-worker", "source-panic", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return true }
			return sink.ForEach(ctxBg, stage.Filter(a.source(ints(50)), func(_ context.Context, x int) (bool, error) { return false, nil }, stage.Workers(4)), func(context.Context, int) error { return nil })
		}},
		{"handle-accept", "source-panic", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 1 }
			return sink.ForEach(ctxBg, stage.Map(a.source(ints(5)), func(_ context.Context, x int) (int, error) {
				if x == 1 {
					return 0, errX
				}
				return x, nil
			}, stage.Workers(2), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil }))), func(context.Context, int) error { return nil })
		}},
		{"forwarded-reaches-sink", "source-panic", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return err != nil }
			_, err := sink.Count(ctxBg, stage.Map(a.source(ints(5)), func(_ context.Context, x int) (int, error) {
				if x == 1 {
					return 0, errX
				}
				return x, nil
			}, stage.Workers(2), stage.OnError(stage.Forward)))
			return err
		}},
		{"unbatch-element", "source-panic", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 1 }
			return sink.ForEach(ctxBg, stage.Unbatch(stage.Batch(a.source(ints(6)), 3, 0)), func(context.Context, int) error { return nil })
		}},
		{"batch-members", "source-panic", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 1 }
			return sink.ForEach(ctxBg, stage.Batch(a.source(ints(6)), 3, 0), func(context.Context, []int) error { return nil })
		}},
		{"tee-last-branch", "source-panic", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 1 }
			b := stage.Tee(a.source(ints(5)), 2)
			return sink.ForEach(ctxBg, stage.Merge(b[0], b[1]), func(context.Context, int) error { return nil })
		}},
		{"all-loop", "source-panic", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 1 }
			var last error
			for _, err := range sink.All(ctxBg, a.source(ints(5))) {
				last = err
			}
			return last
		}},
		{"failed-commit", "", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 1 }
			return sink.ForEach(ctxBg, a.source(ints(5)), func(_ context.Context, x int) error {
				if x == 1 {
					return errX
				}
				return nil
			})
		}},
		{"errstop-item", "", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 1 }
			return stage.Run(ctxBg, a.source(ints(5)), func(_ context.Context, x int, _ error) error {
				if x == 1 {
					return stage.ErrStop
				}
				return nil
			})
		}},
		{"first", "", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return true }
			_, _, err := sink.First(ctxBg, a.source(ints(5)))
			return err
		}},
		{"committed-after-cancel", "", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 0 }
			ctx, cancel := context.WithCancel(ctxBg)
			defer cancel()
			return stage.Run(ctx, a.source(ints(5)), func(context.Context, int, error) error {
				cancel()
				return nil
			})
		}},
		{"failfast-at-item", "", func(a *rvAcks) error {
			a.panicOn = func(id int, err error) bool { return id == 1 }
			return sink.ForEach(ctxBg, stage.Map(a.source(ints(5)), func(_ context.Context, x int) (int, error) {
				if x == 1 {
					return 0, errX
				}
				return x, nil
			}, stage.Workers(1)), func(context.Context, int) error { return nil })
		}},
	}
	out, parent := inChild(t, func() string {
		var parts []string
		for _, s := range scens {
			a := newRvAcks()
			err := s.run(a)
			parts = append(parts, fmt.Sprintf("%s=%s", s.name, rvClassify(err)))
		}
		return strings.Join(parts, " ")
	})
	if !parent {
		return
	}
	t.Logf("outcomes: %s", out)
	got := map[string]string{}
	for _, p := range strings.Fields(out) {
		k, v, _ := strings.Cut(p, "=")
		got[k] = v
	}
	for _, s := range scens {
		if s.want != "" && got[s.name] != s.want {
			t.Errorf("%s: %s, want %s", s.name, got[s.name], s.want)
		}
	}
}

// TestContractAckBatchCommitFails: a batch whose commit fails tells each member
// the commit's error; a forwarded error at one element after Batch+Unbatch
// fails only its own item.
func TestContractAckBatchCommitFails(t *testing.T) {
	errDB := errors.New("db")
	a := newRvAcks()
	var err error
	rvRun(t, func() {
		err = sink.ForEach(context.Background(), stage.Batch(a.source(ints(6)), 3, 0), func(_ context.Context, b []int) error {
			if b[0] == 3 {
				return errDB
			}
			return nil
		})
	})
	if !errors.Is(err, errDB) {
		t.Fatalf("err %v", err)
	}
	for id := range 6 {
		f := a.fate(id)
		if id < 3 && f != "nil" || id >= 3 && (a.count(id) != 1 || !errors.Is(a.err(id), errDB)) {
			t.Errorf("fates %s", a.fates(6))
			break
		}
	}

	b := newRvAcks()
	s := stage.Map(stage.Unbatch(stage.Batch(b.source(ints(6)), 3, 0)), func(_ context.Context, x int) (int, error) {
		if x == 4 {
			return 0, errDB
		}
		return x, nil
	}, stage.Workers(2), stage.OnError(stage.Forward))
	rvRun(t, func() { _, err = sink.Count(context.Background(), s) })
	for id := range 6 {
		f := b.fate(id)
		if id == 4 && !strings.HasPrefix(f, "err") || id != 4 && f != "nil" {
			t.Errorf("after Batch+Unbatch+Map(Forward): fates %s, want only item 4 failed", b.fates(6))
			break
		}
	}
}

// TestContractAckHandleAcceptsAfterOutputs: an Apply call emits an output and
// then fails; Handle accepts the failure ("outputs it emitted before failing
// stay emitted"). The item must not be settled nil before that output is
// committed (at-least-once: a crash between the two would lose it).
func TestContractAckHandleAcceptsAfterOutputs(t *testing.T) {
	errX := errors.New("x")
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			a := newRvAcks()
			opts := []stage.Option{stage.Workers(2), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil }))}
			if ordered {
				opts = append(opts, stage.Ordered())
			}
			s := stage.Apply(a.source(ints(6)), func(_ context.Context, x int, emit func(int) bool) error {
				emit(x)
				if x%2 == 1 {
					return errX
				}
				return nil
			}, opts...)
			var bad []string
			var err error
			rvRun(t, func() {
				err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
					if f := a.fate(v); f != "none" {
						bad = append(bad, fmt.Sprintf("item %d settled %s before its output was committed", v, f))
					}
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(bad) > 0 {
				t.Errorf("%v", bad)
			}
			if a.fates(6) != "0:nil 1:nil 2:nil 3:nil 4:nil 5:nil " {
				t.Errorf("fates %s", a.fates(6))
			}
		})
	}
}

// TestContractAckPartlyCommittedFanOut: a FlatMap item whose first output was
// committed and whose second never is (the run is cancelled in between) is
// not settled nil.
func TestContractAckPartlyCommittedFanOut(t *testing.T) {
	for _, viaTee := range []bool{false, true} {
		t.Run(fmt.Sprintf("tee=%v", viaTee), func(t *testing.T) {
			a := newRvAcks()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var s stage.Stream[int]
			if viaTee {
				b := stage.Tee(a.source(ints(3)), 2)
				s = stage.Merge(b[0], stage.Map(b[1], func(ctx context.Context, x int) (int, error) {
					<-ctx.Done() // the second copy never arrives
					return 0, ctx.Err()
				}))
			} else {
				s = stage.FlatMap(a.source(ints(3)), func(_ context.Context, x int) ([]int, error) { return []int{x, x}, nil }, stage.Workers(1))
			}
			var got []int
			var err error
			rvRun(t, func() {
				err = stage.Run(ctx, s, func(_ context.Context, v int, _ error) error {
					got = append(got, v)
					cancel()
					return nil
				})
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v", err)
			}
			if a.fate(got[0]) == "nil" {
				t.Errorf("item %d settled nil with one of its two outputs committed (sink got %v)", got[0], got)
			}
		})
	}
}

// TestContractAckRetryWithEmits: an Apply attempt emits then fails, the retry
// emits again and succeeds: the item is settled nil once, after all its
// outputs (of both attempts) were committed.
func TestContractAckRetryWithEmits(t *testing.T) {
	a := newRvAcks()
	var mu sync.Mutex
	tries := map[int]int{}
	s := stage.Apply(a.source(ints(4)), func(_ context.Context, x int, emit func(int) bool) error {
		mu.Lock()
		tries[x]++
		n := tries[x]
		mu.Unlock()
		emit(x)
		if n == 1 {
			return errors.New("again")
		}
		return nil
	}, stage.Workers(2), stage.Retry(2, 0))
	seen := map[int]int{}
	var bad []string
	var err error
	rvRun(t, func() {
		err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
			seen[v]++
			if f := a.fate(v); f != "none" {
				bad = append(bad, fmt.Sprintf("item %d settled %s before output %d of 2", v, f, seen[v]))
			}
			return nil
		})
	})
	if err != nil || len(bad) > 0 || a.fates(4) != "0:nil 1:nil 2:nil 3:nil " {
		t.Errorf("err %v; %v; fates %s", err, bad, a.fates(4))
	}
}

// TestContractAckDonePanicWithEarlyStop records what becomes of a panic in
// Done when the sink stopped early (First, a break, ErrStop), and checks
// whether the callback's own error survives a Done panic in ForEach.
func TestContractAckDonePanicWithEarlyStop(t *testing.T) {
	out, parent := inChild(t, func() string {
		var parts []string
		a := newRvAcks()
		a.panicOn = func(int, error) bool { return true }
		v, ok, err := sink.First(context.Background(), a.source(ints(3)))
		parts = append(parts, fmt.Sprintf("First=(%d,%v,%s)", v, ok, rvClassify(err)))
		b := newRvAcks()
		b.panicOn = func(int, error) bool { return true }
		var pairs []string
		for v, err := range sink.All(context.Background(), b.source(ints(3))) {
			pairs = append(pairs, fmt.Sprintf("(%d,%s)", v, rvClassify(err)))
			break
		}
		parts = append(parts, "AllBreak="+strings.Join(pairs, ""))
		return strings.Join(parts, " ")
	})
	if !parent {
		return
	}
	t.Logf("outcomes: %s", out)
}

// TestContractAckDonePanicKeepsCommitError: ForEach's callback fails the commit
// of item 1 ("ForEach returns that error"), and the Done(err) that tells item
// 1 its failure panics ("a panic in Done ends the run with a *SourceError").
// The run was ended by the callback's error first: it must not be lost.
func TestContractAckDonePanicKeepsCommitError(t *testing.T) {
	errX := errors.New("commit failed")
	out, parent := inChild(t, func() string {
		c := newRvAcks()
		c.panicOn = func(id int, err error) bool { return id == 1 }
		err := sink.ForEach(context.Background(), c.source(ints(3)), func(_ context.Context, x int) error {
			if x == 1 {
				return errX
			}
			return nil
		})
		return fmt.Sprintf("%s isCommitErr=%v err=%v", rvClassify(err), errors.Is(err, errX), err)
	})
	if !parent {
		return
	}
	if !strings.Contains(out, "isCommitErr=true") {
		t.Errorf("ForEach's result lost the callback's error: %s", out)
	}
}
