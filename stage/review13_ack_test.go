package stage_test

// Review 13: acknowledgements (stage.Ack), from the Ack and AckSource
// documentation: Done at most once; Done(nil) only once the sink committed
// (or the item was dropped on purpose); Done(err) for a failure at it; no Done
// for items whose fate the run never learnt; none after the sink returned.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

type r13AckLog struct {
	t         *testing.T
	mu        sync.Mutex
	done      map[int][]error
	committed []atomic.Bool // set by a sink callback just before it returns nil
	children  []atomic.Int32
	returned  atomic.Bool // set once the sink returned
	taken     atomic.Int32
	// check, when set, runs inside Done(nil) for item i (before recording).
	check func(i int)
}

func r13NewAckLog(t *testing.T, n int) *r13AckLog {
	return &r13AckLog{t: t, done: map[int][]error{}, committed: make([]atomic.Bool, n), children: make([]atomic.Int32, n)}
}

type r13Ack struct {
	l *r13AckLog
	i int
}

func (a r13Ack) Done(err error) {
	l := a.l
	if l.returned.Load() {
		l.t.Errorf("Done(%v) for item %d after the sink returned", err, a.i)
	}
	if err == nil && l.check != nil {
		l.check(a.i)
	}
	l.mu.Lock()
	l.done[a.i] = append(l.done[a.i], err)
	l.mu.Unlock()
}

// source yields 0..n-1, each with its Ack.
func (l *r13AckLog) source(n int) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == n {
				return 0, nil, io.EOF
			}
			i++
			l.taken.Add(1)
			return i - 1, r13Ack{l, i - 1}, nil
		}, nil
	})
}

// verdicts returns, per item, "nil", "err" or "none"; it fails on a double Done.
func (l *r13AckLog) verdicts(n int) []string {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, n)
	for i := range n {
		switch d := l.done[i]; {
		case len(d) > 1:
			l.t.Errorf("item %d: Done called %d times: %v", i, len(d), d)
			out[i] = "twice"
		case len(d) == 0:
			out[i] = "none"
		case d[0] == nil:
			out[i] = "nil"
		default:
			out[i] = "err"
		}
	}
	return out
}

func (l *r13AckLog) errOf(i int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.done[i]) == 0 {
		return nil
	}
	return l.done[i][0]
}

// Doc (Ack): "Done(nil) when ... the sink committed it (its callback returned
// nil ...); or it was dropped on purpose: a Filter that did not keep it, a
// FlatMap or Apply call with no output". "An item that fans out (FlatMap,
// Tee) is done when all its outputs are". "Done(err) as soon as its way
// failed, with the first error: a forwarded *Error it led to reached the
// sink ... Outputs of it still on their way do not change its fate."
func TestReview13AckFlatMapFanOutWithForwardedChild(t *testing.T) {
	for _, m := range []string{"w1", "w4", "w4ordered", "unlimited", "keyby"} {
		t.Run(m, func(t *testing.T) {
			const n = 80
			l := r13NewAckLog(t, n)
			l.check = func(i int) {
				if got := l.children[i].Load(); int(got) != i%4 {
					t.Errorf("item %d: Done(nil) after %d of its %d outputs were committed", i, got, i%4)
				}
			}
			kids := stage.FlatMap(l.source(n), func(_ context.Context, v int) ([]int, error) {
				out := make([]int, v%4)
				for j := range out {
					out[j] = v*10 + j
				}
				return out, nil
			}, r13With(m)...)
			checked := stage.Map(kids, func(_ context.Context, c int) (int, error) {
				if c/10%4 == 3 && c%10 == 1 {
					return 0, errors.New("child 1 of a 3-child item")
				}
				return c, nil
			}, stage.Workers(3), stage.OnError(stage.Forward))
			var err error
			runcheck.Run(t, "flatmap", func() {
				err = sink.ForEach(context.Background(), checked, func(_ context.Context, c int) error {
					l.children[c/10].Add(1)
					return nil
				})
			})
			l.returned.Store(true)
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != n/4 {
				t.Fatalf("err = %v, want %d forwarded", err, n/4)
			}
			for i, v := range l.verdicts(n) {
				want := "nil"
				if i%4 == 3 {
					want = "err"
				}
				if v != want {
					t.Errorf("item %d (%d outputs): Done %s, want %s", i, i%4, v, want)
				}
				if want == "err" {
					var se *stage.Error
					if e := l.errOf(i); !errors.As(e, &se) {
						t.Errorf("item %d: Done(%v), want the forwarded *stage.Error", i, e)
					}
				}
			}
		})
	}
}

// Doc (Ack): "the sink committed it (its callback returned nil or ErrStop
// ...)", "one for which f returned an error failed with it"; "an Unbatch
// straight after a Batch gives each element its item's acknowledgement
// back, so that each is settled on its own"; "Done is not called when the
// run ended before the item's fate was known".
func TestReview13AckBatchUnbatchFailedCommit(t *testing.T) {
	const n = 20
	errCommit := errors.New("commit failed")
	l := r13NewAckLog(t, n)
	l.check = func(i int) {
		if !l.committed[i].Load() {
			t.Errorf("item %d: Done(nil) before its commit", i)
		}
	}
	var err error
	runcheck.Run(t, "unbatch", func() {
		err = sink.ForEach(context.Background(), stage.Unbatch(stage.Batch(l.source(n), 3, 0)), func(_ context.Context, v int) error {
			if v == 4 {
				return errCommit
			}
			l.committed[v].Store(true)
			return nil
		})
	})
	l.returned.Store(true)
	if !errors.Is(err, errCommit) {
		t.Fatalf("err = %v, want %v", err, errCommit)
	}
	for i, v := range l.verdicts(n) {
		want := "none"
		switch {
		case i < 4:
			want = "nil"
		case i == 4:
			want = "err"
		}
		if v != want {
			t.Errorf("item %d: Done %s, want %s", i, v, want)
		}
	}
	if e := l.errOf(4); !errors.Is(e, errCommit) {
		t.Errorf("item 4: Done(%v), want its commit's error", e)
	}
}

// Doc (Ack): "an item in a Batch is done when its batch is".
func TestReview13AckBatchSettledAfterItsBatch(t *testing.T) {
	const n = 23
	l := r13NewAckLog(t, n)
	l.check = func(i int) {
		if !l.committed[i].Load() {
			t.Errorf("item %d: Done(nil) before its batch was committed", i)
		}
	}
	var err error
	runcheck.Run(t, "batch", func() {
		err = sink.ForEach(context.Background(), stage.Batch(stage.Map(l.source(n), double, stage.Workers(4)), 4, 0),
			func(_ context.Context, b []int) error {
				for _, v := range b {
					l.committed[v/2].Store(true)
				}
				return nil
			})
	})
	l.returned.Store(true)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range l.verdicts(n) {
		if v != "nil" {
			t.Errorf("item %d: Done %s, want nil", i, v)
		}
	}
}

// Doc (Ack): "Done(err) ... or its stage's policy ended the run at it
// (FailFast, a Handle or Budget error)"; "Done is not called when the run
// ended before the item's fate was known: a FailFast error at another item";
// "Whatever ends the run, an item whose outputs were all committed is told
// nil"; Handle "that accepted its failure" is Done(nil).
func TestReview13AckPolicies(t *testing.T) {
	boom := errors.New("boom")
	for _, m := range []string{"w1", "w4", "w4ordered", "w4buffer", "unlimited", "keyby"} {
		for _, pol := range []string{"failfast", "handle", "budget"} {
			t.Run(m+"/"+pol, func(t *testing.T) {
				const n = 40
				l := r13NewAckLog(t, n)
				l.check = func(i int) {
					if i%7 != 5 && !l.committed[i].Load() {
						t.Errorf("item %d: Done(nil) before its commit", i)
					}
				}
				var handled []int
				h := func(_ context.Context, e *stage.Error) error {
					handled = append(handled, e.Input.(int))
					return nil
				}
				var p stage.ErrorPolicy
				switch pol {
				case "handle":
					p = stage.Handle(h)
				case "budget":
					p = stage.Budget(2, h)
				}
				var err error
				runcheck.Run(t, "policy", func() {
					err = sink.ForEach(context.Background(), stage.Map(l.source(n), func(_ context.Context, v int) (int, error) {
						if v%7 == 5 {
							return 0, boom
						}
						return v, nil
					}, r13With(m, stage.OnError(p))...), func(_ context.Context, v int) error {
						l.committed[v].Store(true)
						return nil
					})
				})
				l.returned.Store(true)
				verdicts := l.verdicts(n)
				failedAt := -1
				for i, v := range verdicts {
					switch {
					case l.committed[i].Load():
						if v != "nil" {
							t.Errorf("item %d committed: Done %s, want nil", i, v)
						}
					case i%7 == 5 && pol == "handle":
						if v != "nil" {
							t.Errorf("item %d handled: Done %s, want nil", i, v)
						}
					case v == "err":
						// Several items may fail at once (their calls overlap): each
						// that failed itself may be told its error (the deterministic
						// TestReview13AckCutShortFailureNotTold checks that a call
						// ending after the run did is not). The item the sink's
						// error names must be among them.
						if i%7 != 5 {
							t.Errorf("item %d told an error but it did not fail", i)
						}
						if se := (*stage.Error)(nil); failedAt < 0 || (errors.As(err, &se) && se.Input == i) {
							failedAt = i
						}
					case v == "nil":
						if pol != "budget" || i%7 != 5 {
							t.Errorf("item %d: Done(nil), neither committed nor dropped", i)
						}
					}
				}
				if pol == "handle" {
					if err != nil || failedAt >= 0 {
						t.Fatalf("err = %v, failed at %d; want nil", err, failedAt)
					}
					return
				}
				if err == nil || failedAt < 0 || failedAt%7 != 5 {
					t.Fatalf("err = %v, Done(err) at item %d: want a failure told to a failing item", err, failedAt)
				}
				var se *stage.Error
				if !errors.As(err, &se) || se.Input != failedAt {
					t.Fatalf("err = %v, but Done(err) went to item %d", err, failedAt)
				}
				if pol == "budget" {
					if !errors.Is(err, stage.ErrBudget) || !errors.Is(l.errOf(failedAt), stage.ErrBudget) || len(handled) != 2 {
						t.Fatalf("err = %v, Done(%v), handled %v: want ErrBudget after 2 handled", err, l.errOf(failedAt), handled)
					}
					for _, hi := range handled {
						if verdicts[hi] != "nil" {
							t.Errorf("item %d dropped by the budget: Done %s, want nil", hi, verdicts[hi])
						}
					}
				}
			})
		}
	}
}

// Doc (Ack): "the item sink.First returns, or the one before a break out of
// sink.All, counts" as committed; "Done is not called when the run ended
// before the item's fate was known: ... a sink that stopped early".
func TestReview13AckFirstAndBreak(t *testing.T) {
	for _, m := range []string{"w1", "w4", "w4ordered", "unlimited", "keyby", "bare"} {
		t.Run(m, func(t *testing.T) {
			for _, brk := range []int{1, 3} {
				const n = 50
				l := r13NewAckLog(t, n)
				s := l.source(n)
				if m != "bare" {
					s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, r13With(m)...)
				}
				var seen []int
				runcheck.Run(t, "first", func() {
					if brk == 1 {
						v, ok, err := sink.First(context.Background(), s)
						if !ok || err != nil {
							t.Errorf("First = %v %v %v", v, ok, err)
						}
						seen = append(seen, v)
						return
					}
					for v, err := range sink.All(context.Background(), s) {
						if err != nil {
							t.Errorf("All yielded %v", err)
						}
						seen = append(seen, v)
						if len(seen) == brk {
							break
						}
					}
				})
				l.returned.Store(true)
				for i, v := range l.verdicts(n) {
					want := "none"
					for _, s := range seen {
						if s == i {
							want = "nil"
						}
					}
					if v != want {
						t.Errorf("break after %d: item %d: Done %s, want %s (seen %v)", brk, i, v, want, seen)
					}
				}
				if m == "bare" && brk == 1 && l.taken.Load() != 1 {
					t.Errorf("bare source: %d items taken by First, want exactly 1", l.taken.Load())
				}
			}
		})
	}
}

// Doc (Ack): "A panic in Done ends the run with a *SourceError, which the sink
// returns unless its own result was decided first (its callback returned an
// error, or ErrStop)". Run: "nil when f returned ErrStop, whatever else
// happened meanwhile (... such as a panic in an Ack's Done ...)".
func TestReview13AckDonePanics(t *testing.T) {
	for _, m := range []string{"w1", "w4", "w4ordered", "keyby"} {
		for _, stopAt := range []int{-1, 2} {
			t.Run(fmt.Sprintf("%s/stop=%d", m, stopAt), func(t *testing.T) {
				const n = 5
				src := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
					i := 0
					return func(context.Context) (int, stage.Ack, error) {
						if i == n {
							return 0, nil, io.EOF
						}
						i++
						if (stopAt < 0 && i == n) || i-1 == stopAt {
							return i - 1, r13PanicAck{"done panics"}, nil
						}
						return i - 1, nil, nil
					}, nil
				})
				var err error
				runcheck.Run(t, "donepanic", func() {
					err = sink.ForEach(context.Background(), stage.Map(src, double, r13With(m)...), func(_ context.Context, v int) error {
						if v/2 == stopAt {
							return stage.ErrStop
						}
						return nil
					})
				})
				if stopAt >= 0 {
					if err != nil {
						t.Fatalf("err = %v, want nil: the callback returned ErrStop at the item whose Done panicked", err)
					}
					return
				}
				var se *stage.SourceError
				var pe *stage.PanicError
				if !errors.As(err, &se) || !errors.As(err, &pe) {
					t.Fatalf("err = %v, want a *SourceError > *PanicError (Done of the last item panicked)", err)
				}
			})
		}
	}
}

// Doc (Ack): Tee: an item is done "when every branch is"; a Filter that did
// not keep it counts as done; "Done(err) as soon as its way failed, with the
// first error".
func TestReview13AckTee(t *testing.T) {
	for _, failBranch := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%v", failBranch), func(t *testing.T) {
			const n = 30
			l := r13NewAckLog(t, n)
			l.check = func(i int) {
				if !l.committed[i].Load() {
					t.Errorf("item %d: Done(nil) before branch 0 committed it", i)
				}
			}
			b := stage.Tee(l.source(n), 2)
			kept := stage.Map(b[0], double, stage.Workers(3))
			other := stage.Filter(b[1], func(_ context.Context, v int) (bool, error) {
				if failBranch && v%5 == 2 {
					return false, errors.New("branch 1 fails")
				}
				return false, nil // drops every item
			}, stage.Workers(2), stage.OnError(stage.Forward))
			var err error
			runcheck.Run(t, "tee", func() {
				err = sink.ForEach(context.Background(), stage.Merge(kept, other), func(_ context.Context, v int) error {
					l.committed[v/2].Store(true)
					return nil
				})
			})
			l.returned.Store(true)
			var fe *sink.ForwardedError
			if failBranch != errors.As(err, &fe) || (err != nil && !failBranch) {
				t.Fatalf("err = %v", err)
			}
			for i, v := range l.verdicts(n) {
				want := "nil"
				if failBranch && i%5 == 2 {
					want = "err"
				}
				if v != want {
					t.Errorf("item %d: Done %s, want %s", i, v, want)
				}
			}
		})
	}
}

// Doc (Ack): "Done is not called when the run ended before the item's fate
// was known: a FailFast error at another item, a cancelled context, a sink
// that stopped early, an item whose function was cut short." Watcher: a call
// that "ended because the run did ... whatever the function returned: the
// call neither succeeded nor failed". Item 1's function returns its own error
// only after item 0's failure ended the run: it was cut short, and must not be
// told an error (only item 0 is).
func TestReview13AckCutShortFailureNotTold(t *testing.T) {
	for _, pol := range []string{"failfast", "handle-error", "budget0", "budget1"} {
		for _, m := range []string{"w4", "w4ordered", "unlimited", "w4buffer"} {
			t.Run(pol+"/"+m, func(t *testing.T) {
				const n = 4
				l := r13NewAckLog(t, n)
				handled := make(chan struct{})
				var p stage.ErrorPolicy
				switch pol {
				case "handle-error":
					p = stage.Handle(func(_ context.Context, e *stage.Error) error { return e })
				case "budget0":
					p = stage.Budget(0, nil)
				case "budget1":
					p = stage.Budget(1, func(context.Context, *stage.Error) error { close(handled); return nil })
				}
				var err error
				runcheck.Run(t, "cutshort", func() {
					err = sink.ForEach(context.Background(), stage.Map(l.source(n), func(ctx context.Context, v int) (int, error) {
						switch {
						case pol == "budget1" && v == 2:
							return 0, errors.New("first failure, within the budget")
						case v == 0 && pol == "budget1":
							<-ctx.Done() // waits for item 3 to exhaust the budget
							return 0, errors.New("late failure")
						case v == 0:
							return 0, errors.New("the failure")
						case pol == "budget1" && v == 3:
							select { // after item 2 used up the budget
							case <-handled:
							case <-ctx.Done():
							}
							return 0, errors.New("the failure")
						default:
							<-ctx.Done() // the run ended at the failing item
							return 0, errors.New("late failure")
						}
					}, r13With(m, stage.OnError(p))...), func(context.Context, int) error { return nil })
				})
				l.returned.Store(true)
				failing := 0
				if pol == "budget1" {
					failing = 3
				}
				var se *stage.Error
				if !errors.As(err, &se) || se.Input != failing {
					t.Fatalf("err = %v, want the error of item %d", err, failing)
				}
				for i, v := range l.verdicts(n) {
					want := "none"
					switch {
					case i == failing:
						want = "err"
					case pol == "budget1" && i == 2:
						want = "nil" // dropped by the budget
					}
					if v != want {
						t.Errorf("item %d: Done %s (%v), want %s", i, v, l.errOf(i), want)
					}
				}
			})
		}
	}
}
