package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Finished: "err is ... the *Error that the stage's ErrorPolicy is about to
// handle (of that type, not wrapped): the item failed". Error: "Stage is the
// stage's name", "Index is the item's 0-based position in the stage's
// input", "Input is the item the function was called with", "Attempts is how
// many times the stage tried the item: 1, or more under Retry", "Err is the
// error the function returned ... unchanged".
func TestReview70FinishedErrorFields(t *testing.T) {
	const n = 60
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var tries [n]atomic.Int32
			userErrs := make([]error, n)
			for i := range userErrs {
				userErrs[i] = fmt.Errorf("user %d: %w", i, errR70)
			}
			s := stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (string, error) {
				tries[v].Add(1)
				if v%5 == 2 {
					return "", userErrs[v]
				}
				if v%5 == 4 && tries[v].Load() < 2 {
					return "", errors.New("transient")
				}
				return fmt.Sprint(v), nil
			}, m.opts(stage.Name("fields"), stage.Retry(3, 0), stage.OnError(stage.Forward))...)
			o := &r70obs{}
			got, err := sink.Slice(stage.Observe(context.Background(), o), s)
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != n/5 {
				t.Fatalf("err %v, want a *ForwardedError of %d", err, n/5)
			}
			if len(got) != n-n/5 {
				t.Fatalf("%d values, want %d", len(got), n-n/5)
			}
			for _, v := range o.check() {
				t.Error(v)
			}
			w := o.byName("fields")
			if w.recv.Load() != n || w.kindCount("ok") != n-n/5 || w.kindCount("failed") != n/5 || w.kindCount("cut") != 0 {
				t.Fatalf("received %d, ok %d, failed %d, cut %d", w.recv.Load(), w.kindCount("ok"), w.kindCount("failed"), w.kindCount("cut"))
			}
			var idx []int
			for _, e := range w.failedErrs() {
				v, ok := e.Input.(int)
				if !ok || e.Stage != "fields" || e.Index != v || e.Attempts != 3 || e.Err != userErrs[v] {
					t.Errorf("Finished got %+v; want Stage fields, Index = Input, Attempts 3, Err the user's own", *e)
				}
				idx = append(idx, e.Index)
			}
			slices.Sort(idx)
			for i, x := range idx {
				if x != 5*i+2 {
					t.Fatalf("failed indexes %v, want 2, 7, 12, ...", idx)
				}
			}
			for _, se := range fe.Sample {
				e, ok := se.(*stage.Error)
				if !ok || e.Stage != "fields" || e.Attempts != 3 || e.Err != userErrs[e.Index] {
					t.Errorf("forwarded sample %v (%T) differs from what Finished got", se, se)
				}
			}
		})
	}
}

// Watcher.Received: "Forwarded errors, which pass through without a call, are
// not reported." Error.Index: "Forwarded errors count as items."
func TestReview70FinishedForwardedNotReceivedIndexCounts(t *testing.T) {
	const n = 30
	a := stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (int, error) {
		if v%3 == 0 {
			return 0, errR70
		}
		return v, nil
	}, stage.Name("a"), stage.Workers(1), stage.OnError(stage.Forward))
	b := stage.Map(a, func(_ context.Context, v int) (int, error) {
		if v == 10 || v == 29 {
			return 0, errors.New("b fails")
		}
		return v, nil
	}, stage.Name("b"), stage.Workers(4), stage.Ordered(), stage.OnError(stage.Forward))
	c := stage.Filter(b, func(context.Context, int) (bool, error) { return true, nil }, stage.Name("c"), stage.Workers(2))
	o := &r70obs{}
	got, err := sink.Slice(stage.Observe(context.Background(), o), c)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 12 || len(got) != 18 {
		t.Fatalf("%d values, err %v; want 18 values and 12 forwarded", len(got), err)
	}
	for _, v := range o.check() {
		t.Error(v)
	}
	if r := o.byName("b").recv.Load(); r != 20 {
		t.Errorf("b received %d, want 20 (forwarded errors are not reported)", r)
	}
	if r := o.byName("c").recv.Load(); r != 18 {
		t.Errorf("c received %d, want 18", r)
	}
	var idx []int
	for _, e := range o.byName("b").failedErrs() {
		idx = append(idx, e.Index)
		if e.Input != e.Index {
			t.Errorf("b's *Error: Index %d, Input %v; want equal (forwarded errors count as items)", e.Index, e.Input)
		}
	}
	slices.Sort(idx)
	if !slices.Equal(idx, []int{10, 29}) {
		t.Errorf("b's failed indexes %v, want [10 29]", idx)
	}
}

// Watcher.Received: "or, when its KeyBy key function panicked, to hand it to
// the policy without a call: Finished then gets its *Error, of Attempts 0".
// Error.Attempts: "0 when its KeyBy key function panicked".
func TestReview70FinishedKeyPanicAttemptsZero(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var called atomic.Int64
			s := stage.Map(source.Slice(ints(20)), func(_ context.Context, v int) (int, error) {
				called.Add(1)
				if v == 4 {
					t.Error("function called for the item whose key panicked")
				}
				return v, nil
			}, m.opts(stage.Name("k"), stage.Retry(3, 0), stage.OnError(stage.Forward), stage.KeyBy(func(v int) int {
				if v == 4 {
					panic("key boom")
				}
				return v % 3
			}))...)
			o := &r70obs{}
			_, err := sink.Slice(stage.Observe(context.Background(), o), s)
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != 1 {
				t.Fatalf("err %v", err)
			}
			for _, v := range o.check() {
				t.Error(v)
			}
			w := o.byName("k")
			if w.recv.Load() != 20 || called.Load() != 19 {
				t.Errorf("received %d (want 20), calls %d (want 19)", w.recv.Load(), called.Load())
			}
			errs := w.failedErrs()
			var pe *stage.PanicError
			if len(errs) != 1 || errs[0].Attempts != 0 || errs[0].Index != 4 || !errors.As(errs[0].Err, &pe) || pe.Value != "key boom" || len(pe.Stack) == 0 {
				t.Fatalf("Finished errors %v; want one *Error of Attempts 0, Index 4, a *PanicError of the key's panic", errs)
			}
		})
	}
}

// Finished: "or, when the call returned an error once the run was ending (a
// failure elsewhere, the caller's cancellation, an early stop), an error for
// which errors.Is(err, context.Canceled) holds and that neither is nor wraps
// an *Error, whatever error the function returned: the call neither succeeded
// nor failed. Its message names the run's cause (context.Cause of the run's
// context). A call that returned nil is a success, even once the run was
// ending".
func TestReview70FinishedCutShort(t *testing.T) {
	type ending struct {
		name  string
		cause string // what the cut-short message must name
		kind  string
	}
	for _, end := range []ending{
		{"failfast", "r70 item zero failed", ctxtest.Std},
		{"cancel-cause", "ctxtest: cancelled", ctxtest.Cause},
		{"cancel-own", "", ctxtest.Own},
		{"first", "", ctxtest.Std},
	} {
		for _, ret := range []string{"own-error", "ctx-error", "nil"} {
			t.Run(end.name+"/"+ret, func(t *testing.T) {
				ctx, cancel := ctxtest.New(end.kind)
				defer cancel()
				const w = 4
				started := newR70gate(w - 1)
				s := stage.Map(source.Slice(ints(w)), func(fctx context.Context, v int) (int, error) {
					if v == 0 {
						<-started.Wait()
						switch end.name {
						case "failfast":
							return 0, errors.New("r70 item zero failed")
						case "first":
							return 0, nil
						default:
							cancel()
							<-fctx.Done()
							return 0, fctx.Err()
						}
					}
					started.Arrive()
					<-fctx.Done()
					switch ret {
					case "own-error":
						return 0, errors.New("my own error")
					case "ctx-error":
						return 0, fctx.Err()
					}
					return v, nil
				}, stage.Name("cut"), stage.Workers(w), stage.Buffer(1))
				o := &r70obs{}
				var err error
				runcheck.Run(t, end.name, func() {
					o.arm()
					if end.name == "first" {
						_, _, err = sink.First(stage.Observe(ctx, o), s)
					} else {
						_, err = sink.Slice(stage.Observe(ctx, o), s)
					}
				})
				for _, v := range o.check() {
					t.Error(v)
				}
				wt := o.byName("cut")
				switch end.name {
				case "failfast":
					var e *stage.Error
					if !errors.As(err, &e) || e.Index != 0 {
						t.Fatalf("err %v, want the *Error of item 0", err)
					}
					if fs := wt.failedErrs(); len(fs) != 1 || fs[0].Index != 0 {
						t.Errorf("failed reports %v, want only item 0", fs)
					}
				case "first":
					if err != nil || wt.kindCount("failed") != 0 {
						t.Fatalf("err %v, failed %d", err, wt.kindCount("failed"))
					}
				default:
					if !errors.Is(err, context.Canceled) || wt.kindCount("failed") != 0 {
						t.Fatalf("err %v, failed %d", err, wt.kindCount("failed"))
					}
				}
				wantCut, wantOK := w-1, 1
				if end.name == "failfast" {
					wantOK = 0
				} else if end.name != "first" {
					wantCut, wantOK = w, 0
				}
				if ret == "nil" {
					wantOK += w - 1
					wantCut -= w - 1
				}
				if wt.kindCount("cut") != wantCut || wt.kindCount("ok") != wantOK {
					t.Errorf("cut %d ok %d, want cut %d ok %d", wt.kindCount("cut"), wt.kindCount("ok"), wantCut, wantOK)
				}
				for _, c := range wt.cutErrs() {
					if end.cause != "" && !strings.Contains(c.Error(), end.cause) {
						t.Errorf("cut-short error %q does not name the run's cause %q", c, end.cause)
					}
				}
			})
		}
	}
}

// Finished: "latency, measured from Received to the end of the last attempt:
// the waits for RateLimit tokens, the backoff between attempts ... count".
// Retry: "Before the n-th retry the worker waits a random duration between d/2
// and d, where d = backoff·2^(n-1)". Counts.Latency: "the calls' total
// duration". A lower bound only: it holds whatever the timing.
func TestReview70FinishedLatencyCoversBackoffAndTokens(t *testing.T) {
	const backoff = 10 * time.Millisecond
	var own [4]atomic.Int64
	s := stage.Map(source.Slice(ints(4)), func(_ context.Context, v int) (int, error) {
		t0 := time.Now()
		defer func() { own[v].Add(int64(time.Since(t0))) }()
		return 0, errR70
	}, stage.Name("lat"), stage.Workers(4), stage.Retry(3, backoff), stage.OnError(stage.Forward))
	stats := &stage.Stats{}
	o := &r70obs{}
	_, err := sink.Slice(stage.Observe(stage.Observe(context.Background(), o), stats), s)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 4 {
		t.Fatalf("err %v", err)
	}
	w := o.byName("lat")
	w.mu.Lock()
	lats := append([]time.Duration(nil), w.latency...)
	w.mu.Unlock()
	var sum time.Duration
	for _, l := range lats {
		if l < backoff/2+backoff {
			t.Errorf("latency %v under the least backoff %v of two retries", l, backoff/2+backoff)
		}
		sum += l
	}
	var ownSum time.Duration
	for i := range own {
		ownSum += time.Duration(own[i].Load())
	}
	if sum < ownSum {
		t.Errorf("latencies %v sum under the calls' own durations %v", sum, ownSum)
	}
	c, ok := stats.Get("lat")
	if !ok || c.Latency != sum || c.Finished != 4 || c.Failed != 4 || c.MeanLatency() != sum/4 {
		t.Errorf("Stats %+v (mean %v), want Latency %v, 4 finished, 4 failed", c, c.MeanLatency(), sum)
	}

	// RateLimit(20/s, burst 1) and two attempts: the second waits 50 ms for
	// its token.
	s2 := stage.Map(source.Slice([]int{0}), func(context.Context, int) (int, error) { return 0, errR70 },
		stage.Name("tok"), stage.Retry(2, 0), stage.RateLimit(20, 1), stage.OnError(stage.Forward))
	o2 := &r70obs{}
	_, _ = sink.Slice(stage.Observe(context.Background(), o2), s2)
	w2 := o2.byName("tok")
	if len(w2.latency) != 1 || w2.latency[0] < 45*time.Millisecond {
		t.Errorf("latencies %v; want one of at least the 50 ms token wait", w2.latency)
	}
}

// Received: "the stage took an item and is about to call its function on
// it"; Finished: "the call (all its attempts under Retry) ended". So at any
// moment the calls started are at most the Received, and the Finished at most
// the calls returned, under every worker count, with many runs at once.
func TestReview70FinishedOrderAroundCalls(t *testing.T) {
	var started, returned, recv, fin atomic.Int64
	var bad atomic.Value
	obs := r70funcObs{
		received: func() { recv.Add(1) },
		finished: func() {
			f := fin.Add(1)
			if r := returned.Load(); r < f {
				bad.Store(fmt.Sprintf("Finished number %d with only %d calls returned", f, r))
			}
		},
	}
	f := func(_ context.Context, v int) (int, error) {
		c := started.Add(1)
		if r := recv.Load(); r < c {
			bad.Store(fmt.Sprintf("call number %d started with only %d Received", c, r))
		}
		returned.Add(1)
		return v, nil
	}
	ctx := stage.Observe(context.Background(), obs)
	runcheck.NoHang(t, "runs", func() {
		done := make(chan error)
		opts := [][]stage.Option{
			{stage.Workers(1)}, {stage.Workers(-1)}, {stage.Workers(1000)}, {stage.Workers(3), stage.Ordered()},
			{stage.Workers(2), stage.Buffer(0)}, {stage.Workers(8), stage.Buffer(5)},
		}
		for i := range 24 {
			go func() {
				s := stage.Map(source.Slice(ints(i*37)), f, opts[i%len(opts)]...)
				s = stage.Map(s, f, opts[(i+1)%len(opts)]...)
				_, err := sink.Count(ctx, s)
				done <- err
			}()
		}
		for range 24 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	})
	if v := bad.Load(); v != nil {
		t.Error(v)
	}
	if recv.Load() != fin.Load() || recv.Load() != started.Load() {
		t.Errorf("received %d, finished %d, calls %d", recv.Load(), fin.Load(), started.Load())
	}
}

// r70funcObs is an observer of plain functions, the same for every stage.
type r70funcObs struct {
	received func()
	finished func()
}

func (o r70funcObs) Stage(stage.Info) stage.Watcher { return r70funcWatch(o) }

type r70funcWatch r70funcObs

func (w r70funcWatch) Received()                     { w.received() }
func (w r70funcWatch) Finished(time.Duration, error) { w.finished() }
func (w r70funcWatch) Closed()                       {}

// Finished: the cut-short error is "an error for which errors.Is(err,
// context.Canceled) holds and that neither is nor wraps an *Error, whatever
// error the function returned" — also when the run ends because the caller's
// ctx passed its deadline (the function returns context.DeadlineExceeded).
// Its message names the run's cause. Logger: "a call ended by the run's
// cancellation is not a failure"; Stats Failed counts none.
func TestReview70FinishedCutByCallerDeadline(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			// The deadline is only the trigger: if it passed before any
			// call was received (a slow machine), there was no call to cut
			// short, and the run goes again with a deadline twice as long.
			// Only one past half the watchdog fails for want of a call.
			for d := 30 * time.Millisecond; ; d *= 2 {
				if r70CutByCallerDeadline(t, m, d) {
					return
				}
				t.Logf("the deadline (%v) passed before any call was received: again with a longer one", d)
			}
		})
	}
}

// r70CutByCallerDeadline is one run of TestReview70FinishedCutByCallerDeadline
// with a caller's deadline d away; false if no call was received before it
// (and d is shorter than half the watchdog): the run had nothing to cut short.
func r70CutByCallerDeadline(t *testing.T, m mode, d time.Duration) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	o := &r70obs{}
	var st stage.Stats
	s := stage.Map(source.Slice(ints(3)), func(fctx context.Context, v int) (int, error) {
		<-fctx.Done()
		return 0, fctx.Err()
	}, m.opts(stage.Name("dl"), stage.Buffer(1))...)
	var err error
	runcheck.Run(t, "slice", func() {
		o.arm()
		_, err = sink.Slice(stage.Observe(stage.Observe(ctx, o), &st), s)
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded", err)
	}
	for _, v := range o.check() {
		t.Error(v)
	}
	w := o.byName("dl")
	if w == nil || w.recv.Load() == 0 {
		if d < runcheck.Watchdog/2 { // the run itself is under runcheck's watchdog
			return false
		}
		t.Fatalf("no call received before a deadline of %v (watchdog)", d)
	}
	if w.kindCount("cut") != int(w.recv.Load()) {
		t.Errorf("received %d, cut %d, failed %d, ok %d; want every call cut short", w.recv.Load(), w.kindCount("cut"), w.kindCount("failed"), w.kindCount("ok"))
	}
	for _, c := range w.cutErrs() {
		if !strings.Contains(c.Error(), context.DeadlineExceeded.Error()) {
			t.Errorf("cut-short error %q does not name the run's cause (deadline exceeded)", c)
		}
	}
	if c, _ := st.Get("dl"); c.Failed != 0 {
		t.Errorf("Stats counted %d failed", c.Failed)
	}
	return true
}

// Timeout: "Only that call's context expires, not the run's: what the call's
// error does then is the stage's policy's". So the call's DeadlineExceeded is
// an item failure (an *Error to Finished), not a cut-short call; and a call
// that returns nil after its deadline "is a success".
func TestReview70FinishedTimeoutIsAFailure(t *testing.T) {
	s := stage.Map(source.Slice(ints(6)), func(ctx context.Context, v int) (int, error) {
		<-ctx.Done()
		if v%2 == 0 {
			return v, nil
		}
		return 0, ctx.Err()
	}, stage.Name("to"), stage.Workers(3), stage.Timeout(time.Millisecond), stage.OnError(stage.Forward))
	o := &r70obs{}
	got, err := sink.Slice(stage.Observe(context.Background(), o), s)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 3 || len(got) != 3 {
		t.Fatalf("%v, %v", got, err)
	}
	w := o.byName("to")
	if w.kindCount("ok") != 3 || w.kindCount("failed") != 3 {
		t.Errorf("ok %d, failed %d, cut %d; want 3 and 3", w.kindCount("ok"), w.kindCount("failed"), w.kindCount("cut"))
	}
	for _, e := range w.failedErrs() {
		if !errors.Is(e, context.DeadlineExceeded) {
			t.Errorf("%v does not wrap DeadlineExceeded", e)
		}
	}
}
