package sink_test

// Review 6: adversarial tests of the stage options, the error policies and
// the sinks, written from the documentation only (README, go doc, examples).
// No test assumes that something happens within a given time: events are
// ordered with channels; durations are watchdogs (30 s) or timeouts that the
// test waits for by observing their effect. Scenarios that could crash or
// deadlock the process run in a child process.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// ---------------------------------------------------------------------------
// helpers

var (
	errR6Boom     = errors.New("r6: boom")
	errR6Other    = errors.New("r6: other")
	errR6Src      = errors.New("r6: source failed")
	errR6Handler  = errors.New("r6: handler failed")
	errR6Watchdog = errors.New("r6: watchdog: the test hung for 30 s")
)

const r6ChildEnv = "SLUICE_REVIEW6_CHILD"

// r6Child runs body in a child process (the same test binary, this test
// only), so that a crash or a deadlock fails this test, not the process.
func r6Child(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(r6ChildEnv) == t.Name() {
		body(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // watchdog
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0],
		"-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v", "-test.timeout=50s")
	cmd.Env = append(os.Environ(), r6ChildEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("child process failed (%v):\n%s", err, out)
	}
}

// r6Ctx is a context that a watchdog cancels after 30 s; the test fails if
// it fired.
func r6Ctx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	tm := time.AfterFunc(30*time.Second, func() { cancel(errR6Watchdog) })
	t.Cleanup(func() {
		tm.Stop()
		if errors.Is(context.Cause(ctx), errR6Watchdog) {
			t.Errorf("watchdog fired: a run hung for 30 s")
		}
		cancel(nil)
	})
	return ctx
}

// r6Wait waits for ch to be closed (or to deliver), failing after 30 s.
func r6Wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("hang: %s never happened", what)
	}
}

// r6Gate waits for ch or for ctx; it reports whether ch came first.
func r6Gate(ctx context.Context, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// r6Ints is a waiting source (made with stage.Source, so that each run starts
// afresh at 0) of 0..n-1; onTake, if not nil, is called with the number of
// items taken so far, each time the source produces one.
func r6Ints(n int, onTake func(taken int64)) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i >= n {
				return 0, io.EOF
			}
			i++
			if onTake != nil {
				onTake(int64(i))
			}
			return i - 1, nil
		}, nil
	})
}

func r6Seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// r6OuterStageErrors returns the *stage.Error values in err's tree that are not
// inside a *sink.ForwardedError.
func r6OuterStageErrors(err error) []*stage.Error {
	var out []*stage.Error
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if _, ok := e.(*sink.ForwardedError); ok {
			return
		}
		if se, ok := e.(*stage.Error); ok {
			out = append(out, se)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

func r6IsPrefix(got, of []int) bool {
	return len(got) <= len(of) && slices.Equal(got, of[:len(got)])
}

// r6Active counts user function calls in progress.
type r6Active struct{ n, max atomic.Int64 }

func (a *r6Active) enter() func() {
	v := a.n.Add(1)
	for {
		m := a.max.Load()
		if v <= m || a.max.CompareAndSwap(m, v) {
			break
		}
	}
	return func() { a.n.Add(-1) }
}

// r6LiveRunGoroutines lists the goroutines, other than the caller's and those
// in before, that run code of the library (a goroutine of a run).
func r6Goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	m := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		id := strings.Fields(head)
		if len(id) >= 2 {
			m[id[1]] = g
		}
	}
	return m
}

func r6RunGoroutinesNow(before map[string]string) []string {
	var left []string
	for id, g := range r6Goroutines() {
		if _, ok := before[id]; ok {
			continue
		}
		if strings.Contains(g, "github.com/sluicedev/sluice/") && !strings.Contains(g, "r6Goroutines") {
			left = append(left, g)
		}
	}
	return left
}

// r6RunGoroutinesLeftT reports the goroutines of a run that outlive its sink.
// A goroutine still parked (waiting on a channel, a lock, a select...) is
// reported at once. One that is runnable in the library's own code right
// after the sink returned is usually on its way out after signalling that it
// is done: it is logged, and reported only if it is still there after the
// caller has yielded the processor many times.
func r6RunGoroutinesLeftT(t *testing.T, before map[string]string) []string {
	left := r6RunGoroutinesNow(before)
	if len(left) == 0 {
		return nil
	}
	for _, g := range left {
		head, _, _ := strings.Cut(g, "\n")
		if !strings.Contains(head, "[runnable]") && !strings.Contains(head, "[running]") {
			return left // parked: a real leftover
		}
	}
	r6Exiting.Add(1)
	if t != nil {
		t.Logf("note: %d goroutine(s) of the run still runnable right after the sink returned:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	for range 10000 {
		runtime.Gosched()
		if left = r6RunGoroutinesNow(before); len(left) == 0 {
			return nil
		}
	}
	return left
}

// r6Exiting counts the times a goroutine of a run was seen still alive (but
// runnable) right after its sink returned.
var r6Exiting atomic.Int64

// ---------------------------------------------------------------------------
// options are checked when made / when the stage is built, never during a run

func TestReview6OptionsPanicWhenMadeOrBuilt(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: did not panic", name)
			}
		}()
		f()
	}
	in := source.Slice([]int{1})
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	mustPanic("Workers(-2)", func() { stage.Workers(-2) })
	mustPanic("Buffer(-1)", func() { stage.Buffer(-1) })
	mustPanic("Retry(0,0)", func() { stage.Retry(0, 0) })
	mustPanic("Retry(1,-1)", func() { stage.Retry(1, -1) })
	mustPanic("RetryIf nil", func() { stage.RetryIf(2, 0, nil) })
	mustPanic("Timeout(0)", func() { stage.Timeout(0) })
	mustPanic("RateLimit(0,1)", func() { stage.RateLimit(0, 1) })
	mustPanic("RateLimit(1,0)", func() { stage.RateLimit(1, 0) })
	mustPanic("SharedRateLimit(nil)", func() { stage.SharedRateLimit(nil) })
	mustPanic("Budget(-1)", func() { stage.Budget(-1, nil) })
	mustPanic("Handle(nil)", func() { stage.Handle(nil) })
	mustPanic("Name(\"\")", func() { stage.Name("") })
	mustPanic("KeyBy(nil)", func() { stage.KeyBy[int, int](nil) })
	mustPanic("Batch size 0", func() { stage.Batch(in, 0, 0) })
	mustPanic("Batch timeout<0", func() { stage.Batch(in, 1, -1) })
	mustPanic("Tee 0", func() { stage.Tee(in, 0) })
	mustPanic("Merge same stream twice", func() { stage.Merge(in, in) })
	mustPanic("Merge stream and stage on it", func() { stage.Merge(in, stage.Map(in, id)) })
	mustPanic("Until nil stop", func() { stage.Until(in, nil) })
	// KeyBy of the wrong input type panics when the stage is built, not in a run.
	mustPanic("KeyBy type mismatch", func() {
		stage.Map(in, id, stage.KeyBy(func(s string) string { return s }))
	})
	// Valid edge values do not panic.
	stage.Retry(1, 0)
	stage.Budget(0, nil)
	stage.Workers(-1)
	stage.Workers(0)
	if got := stage.Budget(3, nil).String(); got != "Budget(3)" {
		t.Errorf("Budget(3).String() = %q", got)
	}
	if got := (stage.ErrorPolicy{}).String(); got != "FailFast" {
		t.Errorf("zero policy String() = %q, want FailFast", got)
	}
	if stage.Forward.String() != "Forward" || stage.FailFast.String() != "FailFast" {
		t.Errorf("policy names: %q %q", stage.Forward, stage.FailFast)
	}
	if got := stage.Handle(func(context.Context, *stage.Error) error { return nil }).String(); got != "Handle" {
		t.Errorf("Handle String() = %q", got)
	}
}

// ---------------------------------------------------------------------------
// FailFast

// The first item error: the sink returns that *Error (stage, index, input,
// attempts, cause unchanged), no new item starts, values before it only.
func TestReview6FailFastSequentialNoNewItem(t *testing.T) {
	for _, src := range []struct {
		name string
		s    stage.Stream[int]
	}{{"waiting", r6Ints(10, nil)}, {"slice", source.Slice(r6Seq(10))}} {
		t.Run(src.name, func(t *testing.T) {
			ctx := r6Ctx(t)
			var mu sync.Mutex
			var calls []int
			var failed, late atomic.Bool
			s := stage.Map(src.s, func(_ context.Context, v int) (int, error) {
				if failed.Load() {
					late.Store(true)
				}
				mu.Lock()
				calls = append(calls, v)
				mu.Unlock()
				if v == 3 {
					failed.Store(true)
					return 0, errR6Boom
				}
				return v * 10, nil
			}, stage.Workers(1), stage.Name("p"))
			got, err := sink.Slice(ctx, s)
			var se *stage.Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *stage.Error", err)
			}
			if se.Stage != "p" || se.Index != 3 || se.Input != any(3) || se.Attempts != 1 || se.Err != errR6Boom {
				t.Errorf("*Error = %+v, want stage p, index 3, input 3, attempts 1, Err errR6Boom unchanged", *se)
			}
			if !errors.Is(err, errR6Boom) {
				t.Errorf("errors.Is(err, errR6Boom) = false")
			}
			if late.Load() || !slices.Equal(calls, []int{0, 1, 2, 3}) {
				t.Errorf("calls = %v (late call: %v): no item may start after the FailFast error", calls, late.Load())
			}
			if !r6IsPrefix(got, []int{0, 10, 20}) {
				t.Errorf("values = %v, want a prefix of [0 10 20]", got)
			}
		})
	}
}

// Calls in flight see ctx.Done(), and context.Cause is the very *Error the
// sink returns.
func TestReview6FailFastCauseSeenInFlight(t *testing.T) {
	for _, src := range []struct {
		name string
		s    func() stage.Stream[int]
	}{{"waiting", func() stage.Stream[int] { return r6Ints(3, nil) }}, {"slice", func() stage.Stream[int] { return source.Slice(r6Seq(3)) }}} {
		t.Run(src.name, func(t *testing.T) {
			ctx := r6Ctx(t)
			var started sync.WaitGroup
			started.Add(2)
			allStarted := make(chan struct{})
			go func() { started.Wait(); close(allStarted) }()
			causes := make(chan error, 2)
			var act r6Active
			s := stage.Map(src.s(), func(ctx context.Context, v int) (int, error) {
				defer act.enter()()
				if v < 2 {
					started.Done()
					<-ctx.Done()
					causes <- context.Cause(ctx)
					return 0, ctx.Err()
				}
				if !r6Gate(ctx, allStarted) {
					return 0, ctx.Err()
				}
				return 0, errR6Boom
			}, stage.Workers(3))
			_, err := sink.Slice(ctx, s)
			if n := act.n.Load(); n != 0 {
				t.Errorf("%d user calls still running when the sink returned", n)
			}
			var se *stage.Error
			if !errors.As(err, &se) || !errors.Is(err, errR6Boom) {
				t.Fatalf("err = %v, want the *stage.Error of item 2", err)
			}
			if se.Input != any(2) || se.Index != 2 || se.Stage != "map#1" {
				t.Errorf("*Error = %+v, want input 2, index 2, stage map#1", *se)
			}
			close(causes)
			n := 0
			for c := range causes {
				n++
				var ce *stage.Error
				if !errors.As(c, &ce) || ce != se {
					t.Errorf("context.Cause in a call in flight = %v, want the sink's *Error (same pointer)", c)
				}
			}
			if n != 2 {
				t.Errorf("%d calls in flight saw the cancellation, want 2", n)
			}
		})
	}
}

// A sink callback's error is the run's cause, in a *Error with Stage
// "foreach"; calls in flight see it as context.Cause.
func TestReview6ForEachErrorIsTheCause(t *testing.T) {
	ctx := r6Ctx(t)
	started := make(chan struct{})
	cause := make(chan error, 1)
	s := stage.Map(r6Ints(2, nil), func(ctx context.Context, v int) (int, error) {
		if v == 1 {
			close(started)
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return 0, errR6Other
		}
		return v, nil
	}, stage.Workers(2))
	calls := 0
	err := sink.ForEach(ctx, s, func(ctx context.Context, v int) error {
		calls++
		if !r6Gate(ctx, started) {
			return ctx.Err()
		}
		return errR6Boom
	})
	var se *stage.Error
	if !errors.As(err, &se) || !errors.Is(err, errR6Boom) {
		t.Fatalf("err = %v, want a *stage.Error wrapping errR6Boom", err)
	}
	if se.Stage != "foreach" || se.Index != 0 || se.Input != any(0) {
		t.Errorf("*Error = %+v, want Stage foreach, Index 0, Input 0", *se)
	}
	if errors.Is(err, errR6Other) {
		t.Errorf("the cut-short call's error leaked into the result: %v", err)
	}
	var ce *stage.Error
	if c := <-cause; !errors.As(c, &ce) || ce != se {
		t.Errorf("context.Cause in flight = %v, want the foreach *Error", c)
	}
	if calls != 1 {
		t.Errorf("f called %d times after its error, want 1", calls)
	}
}

// ---------------------------------------------------------------------------
// Forward

// Forward then a later FailFast: the FailFast error is reported (never
// success), the forwarded item skipped the later stage's function.
func TestReview6ForwardThenLaterFailFast(t *testing.T) {
	ctx := r6Ctx(t)
	var bCalls []int
	a := stage.Map(r6Ints(6, nil), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			return 0, errR6Other
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward), stage.Name("a"))
	b := stage.Map(a, func(_ context.Context, v int) (int, error) {
		bCalls = append(bCalls, v)
		if v == 3 {
			return 0, errR6Boom
		}
		return v * 10, nil
	}, stage.Workers(1), stage.Name("b"))
	got, err := sink.Slice(ctx, b)
	if err == nil {
		t.Fatal("a run that failed reported success")
	}
	outer := r6OuterStageErrors(err)
	if len(outer) != 1 || outer[0].Stage != "b" || outer[0].Input != any(3) || outer[0].Index != 3 {
		t.Errorf("outer *Errors = %v, want exactly b's at input 3, index 3 (forwarded errors count as items)", outer)
	}
	var fe *sink.ForwardedError
	if errors.As(err, &fe) {
		var ae *stage.Error
		if fe.Count != 1 || !errors.As(fe.Sample[0], &ae) || ae.Stage != "a" || ae.Index != 1 {
			t.Errorf("forwarded = %+v, want a's error at index 1", fe)
		}
	}
	if slices.Contains(bCalls, 1) || !slices.Equal(bCalls, []int{0, 2, 3}) {
		t.Errorf("b was called with %v, want [0 2 3] (a forwarded error passes without a call)", bCalls)
	}
	if !r6IsPrefix(got, []int{0, 20}) {
		t.Errorf("values = %v, want a prefix of [0 20]", got)
	}
}

// Every collecting sink returns what succeeded plus a *ForwardedError: the
// count and the first SampleSize errors in arrival order.
func TestReview6ForwardedSampleEverySink(t *testing.T) {
	const n = 30 // items i%3 != 0 fail: 20 failures
	mk := func() stage.Stream[int] {
		return stage.Map(r6Ints(n, nil), func(_ context.Context, v int) (int, error) {
			if v%3 != 0 {
				return 0, fmt.Errorf("item %d: %w", v, errR6Boom)
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(stage.Forward))
	}
	var wantVals, wantIdx []int
	for i := range n {
		if i%3 == 0 {
			wantVals = append(wantVals, i)
		} else if len(wantIdx) < sink.SampleSize {
			wantIdx = append(wantIdx, i)
		}
	}
	check := func(name string, err error) {
		t.Helper()
		var fe *sink.ForwardedError
		if !errors.As(err, &fe) {
			t.Errorf("%s: err = %v, want a *sink.ForwardedError", name, err)
			return
		}
		if fe.Count != 20 || len(fe.Sample) != sink.SampleSize {
			t.Errorf("%s: Count %d, %d samples; want 20 and %d", name, fe.Count, len(fe.Sample), sink.SampleSize)
		}
		for i, e := range fe.Sample {
			var se *stage.Error
			if !errors.As(e, &se) || i >= len(wantIdx) || se.Index != wantIdx[i] {
				t.Errorf("%s: sample %d = %v, want the error of item %d", name, i, e, wantIdx[min(i, len(wantIdx)-1)])
			}
		}
		if o := r6OuterStageErrors(err); len(o) != 0 {
			t.Errorf("%s: an error other than the forwarded ones: %v", name, o)
		}
		if !errors.Is(err, errR6Boom) {
			t.Errorf("%s: errors.Is does not see through the ForwardedError", name)
		}
	}
	ctx := r6Ctx(t)
	got, err := sink.Slice(ctx, mk())
	check("Slice", err)
	if !slices.Equal(got, wantVals) {
		t.Errorf("Slice values = %v, want %v", got, wantVals)
	}
	c, err := sink.Count(ctx, mk())
	check("Count", err)
	if c != len(wantVals) {
		t.Errorf("Count = %d, want %d", c, len(wantVals))
	}
	var each []int
	err = sink.ForEach(ctx, mk(), func(_ context.Context, v int) error { each = append(each, v); return nil })
	check("ForEach", err)
	if !slices.Equal(each, wantVals) {
		t.Errorf("ForEach saw %v, want %v (forwarded errors do not reach f)", each, wantVals)
	}
	sum, err := sink.Reduce(ctx, mk(), 0, func(acc, v int) int { return acc + v })
	check("Reduce", err)
	want := 0
	for _, v := range wantVals {
		want += v
	}
	if sum != want {
		t.Errorf("Reduce = %d, want %d", sum, want)
	}
	out := make(chan int, n)
	err = sink.Chan(ctx, mk(), out)
	check("Chan", err)
	if len(out) != len(wantVals) {
		t.Errorf("Chan sent %d values, want %d", len(out), len(wantVals))
	}
	// All and First yield forwarded errors in their place.
	var pairs []string
	for v, err := range sink.All(ctx, mk()) {
		if err != nil {
			var se *stage.Error
			errors.As(err, &se)
			pairs = append(pairs, fmt.Sprintf("e%d", se.Index))
		} else {
			pairs = append(pairs, fmt.Sprint(v))
		}
	}
	if len(pairs) != n || pairs[0] != "0" || pairs[1] != "e1" || pairs[2] != "e2" || pairs[3] != "3" {
		t.Errorf("All yielded %v, want every item in its place", pairs)
	}
	first := stage.Map(r6Ints(3, nil), func(_ context.Context, v int) (int, error) {
		if v == 0 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	v, ok, err := sink.First(ctx, first)
	if v != 0 || ok || !errors.Is(err, errR6Boom) {
		t.Errorf("First = (%v, %v, %v), want (0, false, the forwarded error)", v, ok, err)
	}
}

// ---------------------------------------------------------------------------
// ErrStop

func TestReview6ErrStopVariants(t *testing.T) {
	ctx := r6Ctx(t)
	stopAt := func(ret error) (int, error) {
		calls := 0
		err := sink.ForEach(ctx, r6Ints(10, nil), func(_ context.Context, v int) error {
			calls++
			if v == 2 {
				return ret
			}
			return nil
		})
		return calls, err
	}
	if calls, err := stopAt(stage.ErrStop); err != nil || calls != 3 {
		t.Errorf("ErrStop: (%d calls, %v), want (3, nil)", calls, err)
	}
	if calls, err := stopAt(fmt.Errorf("enough: %w", stage.ErrStop)); err != nil || calls != 3 {
		t.Errorf("wrapped ErrStop: (%d calls, %v), want (3, nil)", calls, err)
	}
	inner := &stage.Error{Stage: "elsewhere", Err: stage.ErrStop}
	if _, err := stopAt(inner); err == nil || !errors.Is(err, stage.ErrStop) {
		t.Errorf("a *stage.Error wrapping ErrStop: err = %v, want a failure", err)
	}
	if _, err := stopAt(&stage.SourceError{Err: stage.ErrStop}); err == nil {
		t.Errorf("a *stage.SourceError wrapping ErrStop: err = nil, want a failure")
	}
	// ErrStop after a forwarded error: only the *ForwardedError.
	fw := stage.Map(r6Ints(10, nil), func(_ context.Context, v int) (int, error) {
		if v == 0 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	err := sink.ForEach(ctx, fw, func(_ context.Context, v int) error {
		if v == 2 {
			return stage.ErrStop
		}
		return nil
	})
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 1 || len(r6OuterStageErrors(err)) != 0 {
		t.Errorf("ErrStop after a forwarded error: err = %v, want only a *ForwardedError of 1", err)
	}
	// stage.Run directly.
	n := 0
	if err := stage.Run(ctx, r6Ints(10, nil), func(_ context.Context, v int, _ error) error {
		n++
		if v == 4 {
			return stage.ErrStop
		}
		return nil
	}); err != nil || n != 5 {
		t.Errorf("Run with ErrStop: (%d, %v), want (5, nil)", n, err)
	}
}

// ErrStop ends the run with nil whatever happens meanwhile: a later item
// failure, or a source failure after it.
func TestReview6ErrStopWinsOverLaterFailure(t *testing.T) {
	ctx := r6Ctx(t)
	stopping := make(chan struct{})
	s := stage.Map(r6Ints(2, nil), func(ctx context.Context, v int) (int, error) {
		if v == 1 {
			r6Gate(ctx, stopping)
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(2))
	err := sink.ForEach(ctx, s, func(_ context.Context, v int) error {
		close(stopping)
		return stage.ErrStop
	})
	if err != nil {
		t.Errorf("ForEach returned %v after ErrStop, want nil", err)
	}

	// The same with a source that fails once the callback decided to stop.
	stopping2 := make(chan struct{})
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
			i++
			if i == 1 {
				return 1, nil
			}
			r6Gate(ctx, stopping2)
			return 0, errR6Src
		}, nil
	})
	err = stage.Run(ctx, src, func(context.Context, int, error) error {
		close(stopping2)
		return stage.ErrStop
	})
	if err != nil {
		t.Errorf("Run returned %v after ErrStop, want nil", err)
	}
}

// ---------------------------------------------------------------------------
// First / All: the first pair never changes with what happens after it

func TestReview6FirstIgnoresLaterSourceError(t *testing.T) {
	mk := func() stage.Stream[int] {
		srcFailed := make(chan struct{})
		src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			i := 0
			return func(context.Context) (int, error) {
				i++
				if i == 1 {
					return 0, nil
				}
				close(srcFailed)
				return 0, errR6Src
			}, nil
		})
		return stage.Map(src, func(ctx context.Context, v int) (int, error) {
			if !r6Gate(ctx, srcFailed) { // the other worker read ahead into the failure
				return 0, ctx.Err()
			}
			return v + 100, nil
		}, stage.Workers(2))
	}
	ctx := r6Ctx(t)
	v, ok, err := sink.First(ctx, mk())
	if v != 100 || !ok || err != nil {
		t.Errorf("First = (%v, %v, %v), want (100, true, nil)", v, ok, err)
	}
	for v, err := range sink.All(ctx, mk()) {
		if v != 100 || err != nil {
			t.Errorf("All's first pair = (%v, %v), want (100, nil)", v, err)
		}
		break
	}
	got, err := sink.Slice(ctx, mk())
	var srcErr *stage.SourceError
	if !slices.Equal(got, []int{100}) || !errors.As(err, &srcErr) || !errors.Is(err, errR6Src) {
		t.Errorf("Slice = (%v, %v), want ([100], the *SourceError) since items before a source failure still go through", got, err)
	}
}

// ---------------------------------------------------------------------------
// Handle

func TestReview6HandleNoOverlapDropsAndKeepsEmitted(t *testing.T) {
	ctx := context.WithValue(r6Ctx(t), r6Key{}, "mine")
	var inH atomic.Int64
	var overlap atomic.Bool
	var dead []*stage.Error // appended without a lock: calls of h never overlap
	s := stage.Map(r6Ints(40, nil), func(_ context.Context, v int) (int, error) {
		runtime.Gosched()
		if v%2 == 1 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(8), stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error {
		if inH.Add(1) > 1 {
			overlap.Store(true)
		}
		runtime.Gosched()
		dead = append(dead, e)
		if ctx.Value(r6Key{}) != "mine" {
			t.Errorf("h's ctx is not derived from the caller's")
		}
		inH.Add(-1)
		return nil
	})))
	got, err := sink.Slice(ctx, s)
	if err != nil {
		t.Fatalf("err = %v, want nil (every failure handled)", err)
	}
	slices.Sort(got)
	var evens []int
	for i := 0; i < 40; i += 2 {
		evens = append(evens, i)
	}
	if !slices.Equal(got, evens) {
		t.Errorf("values = %v, want the evens", got)
	}
	if overlap.Load() {
		t.Errorf("calls of h overlapped")
	}
	if len(dead) != 20 {
		t.Errorf("h saw %d failures, want 20", len(dead))
	}
	for _, e := range dead {
		v, _ := e.Input.(int)
		if v%2 != 1 || e.Index != v || e.Attempts != 1 || !errors.Is(e, errR6Boom) {
			t.Errorf("h saw %+v", *e)
		}
	}

	// Outputs emitted before the failure stay emitted.
	ap := stage.Apply(r6Ints(4, nil), func(_ context.Context, v int, emit func(int) bool) error {
		emit(v * 10)
		if v == 2 {
			return errR6Boom
		}
		return nil
	}, stage.Workers(1), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	got, err = sink.Slice(ctx, ap)
	if err != nil || !slices.Equal(got, []int{0, 10, 20, 30}) {
		t.Errorf("Apply + Handle = (%v, %v), want ([0 10 20 30], nil)", got, err)
	}
}

type r6Key struct{}

func TestReview6HandleErrorFailsRun(t *testing.T) {
	ctx := r6Ctx(t)
	hCalls := 0
	var late atomic.Bool
	var failed atomic.Bool
	s := stage.Map(r6Ints(10, nil), func(_ context.Context, v int) (int, error) {
		if failed.Load() {
			late.Store(true)
		}
		if v%2 == 1 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
		hCalls++
		if hCalls == 2 {
			failed.Store(true)
			return errR6Handler
		}
		return nil
	})))
	got, err := sink.Slice(ctx, s)
	if !errors.Is(err, errR6Handler) {
		t.Fatalf("err = %v, want h's error", err)
	}
	if hCalls != 2 || late.Load() {
		t.Errorf("h called %d times (late item: %v), want 2 and nothing after", hCalls, late.Load())
	}
	if !r6IsPrefix(got, []int{0, 2}) {
		t.Errorf("values = %v, want a prefix of [0 2]", got)
	}
}

// ---------------------------------------------------------------------------
// Budget

func TestReview6BudgetExactCounting(t *testing.T) {
	ctx := r6Ctx(t)
	failOdd := func(_ context.Context, v int) (int, error) {
		if v%2 == 1 {
			return 0, errR6Boom
		}
		return v, nil
	}
	// 5 failures (1,3,5,7,9), budget 3: h sees 1,3,5; the run fails at 7.
	var seen []int
	s := stage.Map(r6Ints(10, nil), failOdd, stage.Workers(1), stage.OnError(stage.Budget(3, func(_ context.Context, e *stage.Error) error {
		seen = append(seen, e.Input.(int))
		return nil
	})))
	got, err := sink.Slice(ctx, s)
	var se *stage.Error
	if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || se.Input != any(7) || se.Index != 7 || !errors.Is(err, errR6Boom) {
		t.Errorf("err = %v, want ErrBudget wrapping the *Error of item 7", err)
	}
	if !slices.Equal(seen, []int{1, 3, 5}) {
		t.Errorf("h saw %v, want [1 3 5] (the (n+1)th is not passed to h)", seen)
	}
	if !r6IsPrefix(got, []int{0, 2, 4, 6}) {
		t.Errorf("values = %v, want a prefix of [0 2 4 6]", got)
	}

	// Exactly n failures: success, every run with a full budget.
	exact := stage.Map(r6Ints(10, nil), failOdd, stage.Workers(1), stage.OnError(stage.Budget(5, nil)))
	for run := range 3 {
		got, err := sink.Slice(ctx, exact)
		if err != nil || !slices.Equal(got, []int{0, 2, 4, 6, 8}) {
			t.Errorf("run %d with exactly n failures = (%v, %v), want ([0 2 4 6 8], nil)", run, got, err)
		}
	}
	// Budget(0): the first failure fails the run.
	_, err = sink.Count(ctx, stage.Map(r6Ints(10, nil), failOdd, stage.Workers(1), stage.OnError(stage.Budget(0, nil))))
	if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || se.Input != any(1) {
		t.Errorf("Budget(0): err = %v, want ErrBudget at item 1", err)
	}

	// Concurrent failures: 8 items all failing at once.
	for _, n := range []int{7, 8} {
		barrier := make(chan struct{})
		var started atomic.Int64
		var hCalls atomic.Int64
		s := stage.Map(r6Ints(8, nil), func(ctx context.Context, v int) (int, error) {
			if started.Add(1) == 8 {
				close(barrier)
			}
			r6Gate(ctx, barrier)
			return 0, errR6Boom
		}, stage.Workers(8), stage.OnError(stage.Budget(n, func(context.Context, *stage.Error) error {
			hCalls.Add(1)
			return nil
		})))
		_, err := sink.Count(ctx, s)
		if n == 8 && (err != nil || hCalls.Load() != 8) {
			t.Errorf("Budget(8), 8 concurrent failures: (%v, h %d), want (nil, 8)", err, hCalls.Load())
		}
		if n == 7 && (!errors.Is(err, stage.ErrBudget) || hCalls.Load() != 7) {
			t.Errorf("Budget(7), 8 concurrent failures: (%v, h %d), want (ErrBudget, 7)", err, hCalls.Load())
		}
	}

	// Items, not attempts: one item failing 3 attempts under Retry is one failure.
	calls := 0
	s = stage.Map(r6Ints(2, nil), func(_ context.Context, v int) (int, error) {
		if v == 0 {
			calls++
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(1), stage.Retry(3, 0), stage.OnError(stage.Budget(1, nil)))
	got, err = sink.Slice(ctx, s)
	if err != nil || !slices.Equal(got, []int{1}) || calls != 3 {
		t.Errorf("Budget(1) + Retry(3): (%v, %v, %d calls), want ([1], nil, 3)", got, err, calls)
	}

	// h's error fails the run at once, with h's error.
	_, err = sink.Count(ctx, stage.Map(r6Ints(10, nil), failOdd, stage.Workers(1), stage.OnError(stage.Budget(5, func(context.Context, *stage.Error) error {
		return errR6Handler
	}))))
	if !errors.Is(err, errR6Handler) || errors.Is(err, stage.ErrBudget) {
		t.Errorf("Budget h error: err = %v, want h's error, not ErrBudget", err)
	}
}

// ---------------------------------------------------------------------------
// Retry / RetryIf

func TestReview6RetryAttempts(t *testing.T) {
	ctx := r6Ctx(t)
	run := func(attempts, failures int) (calls int, got []int, err error) {
		s := stage.Map(r6Ints(1, nil), func(_ context.Context, v int) (int, error) {
			calls++
			if calls <= failures {
				return 0, fmt.Errorf("attempt %d: %w", calls, errR6Boom)
			}
			return 42, nil
		}, stage.Workers(1), stage.Retry(attempts, time.Microsecond), stage.Name("r"))
		got, err = sink.Slice(ctx, s)
		return
	}
	for _, c := range []struct{ attempts, failures, wantCalls int }{
		{4, 100, 4}, {3, 2, 3}, {2, 2, 2}, {1, 100, 1}, {5, 0, 1},
	} {
		calls, got, err := run(c.attempts, c.failures)
		if calls != c.wantCalls {
			t.Errorf("Retry(%d), %d failures: %d calls, want %d", c.attempts, c.failures, calls, c.wantCalls)
		}
		if c.failures < c.attempts {
			if err != nil || !slices.Equal(got, []int{42}) {
				t.Errorf("Retry(%d), %d failures: (%v, %v), want ([42], nil)", c.attempts, c.failures, got, err)
			}
			continue
		}
		var se *stage.Error
		if !errors.As(err, &se) || se.Attempts != c.attempts || se.Stage != "r" {
			t.Errorf("Retry(%d), %d failures: err = %v, want an *Error with Attempts %d", c.attempts, c.failures, err, c.attempts)
			continue
		}
		if want := fmt.Sprintf("attempt %d: ", c.attempts); !strings.HasPrefix(se.Err.Error(), want) {
			// (the message is our own error's, the only way to tell attempts apart here)
			t.Errorf("the policy saw %q, want the last attempt's error", se.Err)
		}
	}
}

func TestReview6RetryIfPredicate(t *testing.T) {
	ctx := r6Ctx(t)
	attemptErrs := []error{errors.New("e1"), errors.New("e2"), errors.New("e3")}
	var predSaw []error
	calls := 0
	s := stage.Map(r6Ints(1, nil), func(_ context.Context, v int) (int, error) {
		calls++
		return 0, attemptErrs[calls-1]
	}, stage.Workers(1), stage.RetryIf(3, time.Microsecond, func(err error) bool {
		predSaw = append(predSaw, err)
		return true
	}), stage.OnError(stage.Forward))
	_, err := sink.Slice(ctx, s)
	var se *stage.Error
	if !errors.As(err, &se) || se.Attempts != 3 || se.Err != attemptErrs[2] || calls != 3 {
		t.Errorf("err = %v (%d calls), want the 3rd attempt's error with Attempts 3", err, calls)
	}
	if len(predSaw) != 2 || predSaw[0] != attemptErrs[0] || predSaw[1] != attemptErrs[1] {
		t.Errorf("predicate saw %v, want [e1 e2] (not the last allowed attempt's)", predSaw)
	}
	// Not retryable: one call, Attempts 1.
	calls = 0
	s = stage.Map(r6Ints(1, nil), func(context.Context, int) (int, error) {
		calls++
		return 0, errR6Boom
	}, stage.Workers(1), stage.RetryIf(5, time.Microsecond, func(err error) bool { return !errors.Is(err, errR6Boom) }))
	_, err = sink.Slice(ctx, s)
	if !errors.As(err, &se) || se.Attempts != 1 || calls != 1 {
		t.Errorf("not retryable: err = %v, %d calls; want Attempts 1, 1 call", err, calls)
	}
}

// The backoff wait ends, without a retry, when the run is cancelled.
func TestReview6RetryBackoffEndsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(r6Ctx(t))
	defer cancel()
	failed := make(chan struct{})
	var calls atomic.Int64
	s := stage.Map(r6Ints(1, nil), func(context.Context, int) (int, error) {
		if calls.Add(1) == 1 {
			defer close(failed)
		}
		return 0, errR6Boom
	}, stage.Retry(3, time.Hour))
	done := make(chan error, 1)
	go func() { _, err := sink.Slice(ctx, s); done <- err }()
	r6Wait(t, failed, "the first attempt")
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("hang: the backoff wait did not end on cancellation")
	}
	if !errors.Is(err, context.Canceled) || calls.Load() != 1 {
		t.Errorf("(%v, %d calls), want (context.Canceled, 1)", err, calls.Load())
	}
}

// ---------------------------------------------------------------------------
// Timeout

func TestReview6TimeoutIdentityAndScope(t *testing.T) {
	ctx := r6Ctx(t)
	var runCtxDoneAfter atomic.Bool
	m := stage.Map(r6Ints(2, nil), func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			<-ctx.Done() // wait for the effect of the timeout
			return 0, ctx.Err()
		}
		return v, nil
	}, stage.Workers(1), stage.Timeout(time.Millisecond), stage.OnError(stage.Forward), stage.Name("t"))
	f := stage.Filter(m, func(ctx context.Context, v int) (bool, error) {
		if ctx.Err() != nil {
			runCtxDoneAfter.Store(true)
		}
		return true, nil
	}, stage.Workers(1))
	got, err := sink.Slice(ctx, f)
	if !slices.Equal(got, []int{1}) {
		t.Errorf("values = %v, want [1]: the run goes on after a timed-out call", got)
	}
	if runCtxDoneAfter.Load() {
		t.Errorf("the run's context expired with the call's")
	}
	var fe *sink.ForwardedError
	var se *stage.Error
	if !errors.As(err, &fe) || fe.Count != 1 || !errors.As(fe.Sample[0], &se) ||
		!errors.Is(se, context.DeadlineExceeded) || se.Stage != "t" || se.Attempts != 1 || se.Index != 0 {
		t.Errorf("err = %v, want one forwarded *Error of stage t wrapping context.DeadlineExceeded", err)
	}

	// FailFast: the timed-out item is an item failure (an *Error), not a
	// cancellation of the run.
	_, err = sink.Slice(ctx, stage.Map(source.Slice([]int{0}), func(ctx context.Context, v int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Timeout(time.Millisecond)))
	if !errors.As(err, &se) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("FailFast timeout: err = %v, want an *Error wrapping DeadlineExceeded", err)
	}

	// Retryable by default, each attempt its own deadline, later than the last.
	var deadlines []time.Time
	_, err = sink.Slice(ctx, stage.Map(r6Ints(1, nil), func(ctx context.Context, v int) (int, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			t.Errorf("an attempt's ctx has no deadline")
		}
		deadlines = append(deadlines, dl)
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Workers(1), stage.Timeout(time.Millisecond), stage.Retry(3, 0)))
	if !errors.As(err, &se) || se.Attempts != 3 || len(deadlines) != 3 {
		t.Errorf("Timeout + Retry(3): err %v, %d attempts seen; want Attempts 3", err, len(deadlines))
	}
	for i := 1; i < len(deadlines); i++ {
		if !deadlines[i].After(deadlines[i-1]) {
			t.Errorf("attempt %d's deadline %v is not after attempt %d's %v", i+1, deadlines[i], i, deadlines[i-1])
		}
	}

	// d after the call starts.
	before := time.Now()
	_, err = sink.Slice(ctx, stage.Map(r6Ints(1, nil), func(ctx context.Context, v int) (int, error) {
		dl, ok := ctx.Deadline()
		if !ok || dl.Before(before.Add(time.Hour)) || dl.After(time.Now().Add(time.Hour)) {
			t.Errorf("deadline %v (ok %v), want the call's start + 1h", dl, ok)
		}
		return v, nil
	}, stage.Timeout(time.Hour)))
	if err != nil {
		t.Error(err)
	}

	// A call that returns nil after its deadline is a success.
	got, err = sink.Slice(ctx, stage.Map(r6Ints(1, nil), func(ctx context.Context, v int) (int, error) {
		<-ctx.Done()
		return 7, nil
	}, stage.Timeout(time.Millisecond)))
	if err != nil || !slices.Equal(got, []int{7}) {
		t.Errorf("late success = (%v, %v), want ([7], nil)", got, err)
	}
}

// ---------------------------------------------------------------------------
// RateLimit / SharedRateLimit

// The bucket of RateLimit is per run and starts full: two runs of two items
// with a burst of 2 and an (almost) zero rate both complete.
func TestReview6RateLimitBucketPerRun(t *testing.T) {
	ctx := r6Ctx(t)
	s := stage.Map(source.Slice([]int{1, 2}), func(_ context.Context, v int) (int, error) { return v, nil },
		stage.Workers(2), stage.RateLimit(1e-6, 2))
	for run := range 2 {
		n, err := sink.Count(ctx, s)
		if err != nil || n != 2 {
			t.Errorf("run %d = (%d, %v), want (2, nil)", run, n, err)
		}
	}
}

// Each attempt takes a token of a shared limiter; one that can never give a
// token fails the attempt with ErrNoToken.
func TestReview6SharedRateLimitTokensPerAttempt(t *testing.T) {
	ctx := r6Ctx(t)
	l := rate.NewLimiter(0, 3) // 3 tokens, then never another
	var calls []int
	s := stage.Map(r6Ints(2, nil), func(_ context.Context, v int) (int, error) {
		calls = append(calls, v)
		if v == 0 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(1), stage.Retry(3, 0), stage.SharedRateLimit(l), stage.OnError(stage.Forward))
	var errs []*stage.Error
	for _, err := range sink.All(ctx, s) {
		var se *stage.Error
		if errors.As(err, &se) {
			errs = append(errs, se)
		} else if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
	}
	if !slices.Equal(calls, []int{0, 0, 0}) {
		t.Errorf("calls = %v, want [0 0 0]: three attempts of item 0 take the three tokens", calls)
	}
	if len(errs) != 2 || errs[0].Attempts != 3 || !errors.Is(errs[0], errR6Boom) || !errors.Is(errs[1], stage.ErrNoToken) {
		t.Errorf("errors = %v, want item 0 after 3 attempts and item 1 with ErrNoToken", errs)
	}
	// Burst 0: never a token.
	_, err := sink.Count(ctx, stage.Map(r6Ints(1, nil), func(_ context.Context, v int) (int, error) {
		t.Errorf("called without a token")
		return v, nil
	}, stage.SharedRateLimit(rate.NewLimiter(5, 0))))
	if !errors.Is(err, stage.ErrNoToken) {
		t.Errorf("burst 0: err = %v, want ErrNoToken", err)
	}
}

// "only the end of the run ends the wait (a deadline on the run's context is
// no reason to fail an item early)": with a deadline 1 h away and the next
// token 2 h away, the attempt waits (takes its token) instead of failing.
func TestReview6SharedRateLimitIgnoresRunDeadline(t *testing.T) {
	l := rate.NewLimiter(rate.Every(2*time.Hour), 1)
	l.Allow() // spend the burst
	ctx, cancel := context.WithDeadline(r6Ctx(t), time.Now().Add(time.Hour))
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := sink.Slice(ctx, stage.Map(source.Slice([]int{1}), func(_ context.Context, v int) (int, error) {
			return v, nil
		}, stage.SharedRateLimit(l), stage.OnError(stage.Forward)))
		done <- err
	}()
	watchdog := time.After(30 * time.Second)
	for l.Tokens() > -0.5 { // the attempt has not taken (reserved) its token yet
		select {
		case err := <-done:
			t.Fatalf("the run ended before its token came: %v (an item failed early because of the run's deadline)", err)
		case <-watchdog:
			t.Fatalf("the attempt neither waited for its token nor failed")
		default:
			runtime.Gosched()
		}
	}
	cancel()
	err := <-done
	var fe *sink.ForwardedError
	if !errors.Is(err, context.Canceled) || errors.As(err, &fe) {
		t.Errorf("err = %v, want context.Canceled and no item failure", err)
	}
}

// ---------------------------------------------------------------------------
// Cancellation and deadlines of the caller's ctx

// A call cut short by the caller's cancellation neither succeeded nor failed,
// whatever it returned: every sink returns context.Canceled, Handle does not
// see it, the watcher gets a cancellation error that is not an *Error.
func TestReview6CancelCutShortEverySink(t *testing.T) {
	sinks := map[string]func(ctx context.Context, s stage.Stream[int]) error{
		"Slice": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err },
		"Count": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Count(ctx, s); return err },
		"ForEach": func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
		},
		"Reduce": func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Reduce(ctx, s, 0, func(a, v int) int { return a + v })
			return err
		},
		"Chan":  func(ctx context.Context, s stage.Stream[int]) error { return sink.Chan(ctx, s, make(chan int, 10)) },
		"First": func(ctx context.Context, s stage.Stream[int]) error { _, _, err := sink.First(ctx, s); return err },
		"All": func(ctx context.Context, s stage.Stream[int]) error {
			var last error
			for _, err := range sink.All(ctx, s) {
				last = err
			}
			return last
		},
	}
	for name, run := range sinks {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(r6Ctx(t))
			defer cancel()
			obs := &r6Observer{}
			ctx2 := stage.Observe(ctx, obs)
			hCalls := atomic.Int64{}
			var act r6Active
			s := stage.Map(r6Ints(3, nil), func(ctx context.Context, v int) (int, error) {
				defer act.enter()()
				cancel() // the caller cancels while this call runs
				<-ctx.Done()
				return 0, errR6Other // not ctx.Err(): "whatever the function returned"
			}, stage.Workers(1), stage.Name("cut"), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
				hCalls.Add(1)
				return nil
			})))
			before := r6Goroutines()
			err := run(ctx2, s)
			if left := r6RunGoroutinesLeftT(t, before); len(left) > 0 {
				t.Errorf("%d goroutines of the run outlived the sink:\n%s", len(left), strings.Join(left, "\n\n"))
			}
			if act.n.Load() != 0 {
				t.Errorf("a user call is still running")
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			if errors.Is(err, errR6Other) {
				t.Errorf("the cut-short call's own error reached the result: %v", err)
			}
			if hCalls.Load() != 0 {
				t.Errorf("Handle saw a call cut short by the cancellation")
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			for _, fe := range obs.finished["cut"] {
				var se *stage.Error
				if !errors.Is(fe, context.Canceled) || errors.As(fe, &se) {
					t.Errorf("watcher Finished(%v), want a cancellation error that is not an *Error", fe)
				}
			}
		})
	}
}

func TestReview6CallerDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(r6Ctx(t), time.Millisecond)
	defer cancel()
	_, err := sink.Slice(ctx, stage.Map(r6Ints(3, nil), func(ctx context.Context, v int) (int, error) {
		<-ctx.Done() // wait for the caller's deadline
		return 0, errR6Other
	}))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	// Cancelled before the run: every sink reports it.
	cctx, ccancel := context.WithCancel(r6Ctx(t))
	ccancel()
	if _, _, err := sink.First(cctx, source.Slice([]int{1})); !errors.Is(err, context.Canceled) {
		t.Errorf("First with a cancelled ctx: %v", err)
	}
	if _, err := sink.Slice(cctx, source.Slice([]int{1})); !errors.Is(err, context.Canceled) {
		t.Errorf("Slice with a cancelled ctx: %v", err)
	}
}

// ---------------------------------------------------------------------------
// Backpressure bounds

// Unordered: with its consumer (a stage of one worker) holding one item, a
// stage of w workers and buffer b takes at most 1+w+b items from its source.
func TestReview6BackpressureUnordered(t *testing.T) {
	const w, b, n = 3, 2, 60
	ctx := r6Ctx(t)
	var taken atomic.Int64
	full := make(chan struct{})
	var once sync.Once
	src := r6Ints(n, func(k int64) {
		taken.Store(k) // before the gate opens: the consumer reads it then
		if k >= 1+w+b {
			once.Do(func() { close(full) })
		}
	})
	a := stage.Map(src, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(w), stage.Buffer(b))
	var first atomic.Bool
	var atRelease int64
	c := stage.Map(a, func(ctx context.Context, v int) (int, error) {
		if first.CompareAndSwap(false, true) {
			r6Gate(ctx, full)
			for range 1000 { // give a stage that would over-pull every chance
				runtime.Gosched()
			}
			atRelease = taken.Load()
		}
		return v, nil
	}, stage.Workers(1))
	cnt, err := sink.Count(ctx, c)
	if err != nil || cnt != n {
		t.Fatalf("(%d, %v), want (%d, nil)", cnt, err, n)
	}
	if atRelease > 1+w+b {
		t.Errorf("with its consumer holding one item, the stage took %d items, want at most 1+workers+buffer = %d", atRelease, 1+w+b)
	}
}

// Ordered: with its oldest item stuck, the stage takes at most 2w+b items
// its consumer has not taken, then stops pulling.
func TestReview6BackpressureOrderedWindow(t *testing.T) {
	const w, b, n = 3, 2, 60
	ctx := r6Ctx(t)
	var taken atomic.Int64
	full := make(chan struct{})
	var once sync.Once
	src := r6Ints(n, func(k int64) {
		taken.Store(k)
		if k >= 2*w+b {
			once.Do(func() { close(full) })
		}
	})
	var atRelease int64
	s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			if !r6Gate(ctx, full) {
				return 0, ctx.Err()
			}
			for range 1000 {
				runtime.Gosched()
			}
			atRelease = taken.Load()
		}
		return v, nil
	}, stage.Workers(w), stage.Buffer(b), stage.Ordered())
	got, err := sink.Slice(ctx, s)
	if err != nil || !slices.Equal(got, r6Seq(n)) {
		t.Fatalf("(%v, %v), want 0..%d in order", got, err, n-1)
	}
	if atRelease != 2*w+b {
		t.Errorf("behind a stuck item the ordered stage took %d items, want at most 2w+b = %d", atRelease, 2*w+b)
	}
}

// sink.First over a bare channel source receives exactly one value.
func TestReview6FirstTakesExactlyOne(t *testing.T) {
	ctx := r6Ctx(t)
	ch := make(chan int, 5)
	for i := range 5 {
		ch <- i + 1
	}
	v, ok, err := sink.First(ctx, source.Chan(ch))
	if v != 1 || !ok || err != nil || len(ch) != 4 {
		t.Errorf("First = (%v, %v, %v) with %d left in ch, want (1, true, nil) and 4 left", v, ok, err, len(ch))
	}
	// Empty stream.
	v, ok, err = sink.First(ctx, source.Slice([]int(nil)))
	if v != 0 || ok || err != nil {
		t.Errorf("First(empty) = (%v, %v, %v), want (0, false, nil)", v, ok, err)
	}
	// A source that fails before any item.
	_, ok, err = sink.First(ctx, source.Func(func(context.Context) (int, error) { return 0, errR6Src }))
	var se *stage.SourceError
	if ok || !errors.As(err, &se) || !errors.Is(err, errR6Src) {
		t.Errorf("First(failing source) = (%v, %v), want a *SourceError", ok, err)
	}
}

// ---------------------------------------------------------------------------
// KeyBy

func TestReview6KeyByPerKeyOrderSerialAndParallel(t *testing.T) {
	const n, keys = 60, 3
	ctx := r6Ctx(t)
	var inKey [keys]atomic.Int64
	var overlap atomic.Bool
	var mu sync.Mutex
	order := make([][]int, keys)
	key1Started := make(chan struct{})
	var once sync.Once
	s := stage.Map(r6Ints(n, nil), func(ctx context.Context, v int) (int, error) {
		k := v % keys
		if inKey[k].Add(1) > 1 {
			overlap.Store(true)
		}
		defer inKey[k].Add(-1)
		mu.Lock()
		order[k] = append(order[k], v)
		mu.Unlock()
		if k == 1 {
			once.Do(func() { close(key1Started) })
		}
		if v == 0 { // key 0 waits for an item of key 1: keys must run in parallel
			if !r6Gate(ctx, key1Started) {
				return 0, ctx.Err()
			}
		}
		runtime.Gosched()
		return v, nil
	}, stage.Workers(4), stage.KeyBy(func(v int) int { return v % keys }))
	cnt, err := sink.Count(ctx, s)
	if err != nil || cnt != n {
		t.Fatalf("(%d, %v)", cnt, err)
	}
	if overlap.Load() {
		t.Errorf("two items of one key ran at once")
	}
	for k := range keys {
		if !slices.IsSorted(order[k]) || len(order[k]) != n/keys {
			t.Errorf("key %d ran in order %v, want input order", k, order[k])
		}
	}
}

// All items of one key: one call at a time, in order, and the stage still
// takes at most workers+buffer items ahead of its consumer.
func TestReview6KeyBySameKeyBounded(t *testing.T) {
	const w, b, n = 3, 1, 30
	ctx := r6Ctx(t)
	var taken atomic.Int64
	full := make(chan struct{})
	var once sync.Once
	src := r6Ints(n, func(k int64) {
		taken.Store(k)
		if k >= w+b {
			once.Do(func() { close(full) })
		}
	})
	var act r6Active
	var calls []int
	var atRelease int64
	s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
		defer act.enter()()
		calls = append(calls, v) // one at a time: no lock needed
		if v == 0 {
			if !r6Gate(ctx, full) {
				return 0, ctx.Err()
			}
			for range 1000 {
				runtime.Gosched()
			}
			atRelease = taken.Load()
		}
		return v, nil
	}, stage.Workers(w), stage.Buffer(b), stage.KeyBy(func(int) string { return "same" }))
	cnt, err := sink.Count(ctx, s)
	if err != nil || cnt != n {
		t.Fatalf("(%d, %v)", cnt, err)
	}
	if act.max.Load() != 1 || !slices.Equal(calls, r6Seq(n)) {
		t.Errorf("max %d calls at once, order %v; want 1 at a time in input order", act.max.Load(), calls)
	}
	if atRelease != w+b {
		t.Errorf("with every item of one key, the stage took %d items while its consumer had none, want workers+buffer = %d", atRelease, w+b)
	}
}

// key is called once per item; forwarded errors pass through without a key;
// with Ordered the outputs follow input order across keys.
func TestReview6KeyByKeyOncePerItemForwardedOrdered(t *testing.T) {
	const n = 40
	ctx := r6Ctx(t)
	up := stage.Map(r6Ints(n, nil), func(_ context.Context, v int) (int, error) {
		if v%5 == 0 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var keyCalls atomic.Int64
	var fnOnErr atomic.Bool
	s := stage.Map(up, func(_ context.Context, v int) (int, error) {
		if v%5 == 0 {
			fnOnErr.Store(true)
		}
		if v%2 == 0 {
			for range 50 {
				runtime.Gosched()
			}
		}
		return v, nil
	}, stage.Workers(4), stage.Ordered(), stage.KeyBy(func(v int) int { keyCalls.Add(1); return v % 2 }))
	var seq []int
	for v, err := range sink.All(ctx, s) {
		if err != nil {
			var se *stage.Error
			if !errors.As(err, &se) {
				t.Fatalf("unexpected %v", err)
			}
			seq = append(seq, -1-se.Index)
			continue
		}
		seq = append(seq, v)
	}
	var want []int
	for i := range n {
		if i%5 == 0 {
			want = append(want, -1-i)
		} else {
			want = append(want, i)
		}
	}
	if !slices.Equal(seq, want) {
		t.Errorf("KeyBy+Ordered yielded %v, want input order with errors in place %v", seq, want)
	}
	if keyCalls.Load() != int64(n-n/5) {
		t.Errorf("key called %d times, want once per non-error item: %d", keyCalls.Load(), n-n/5)
	}
	if fnOnErr.Load() {
		t.Errorf("the function was called for a forwarded error")
	}
}

// ---------------------------------------------------------------------------
// Ordered + Forward: errors keep their input positions against a reversed
// completion order.

func TestReview6OrderedForwardPositions(t *testing.T) {
	const n = 24
	ctx := r6Ctx(t)
	done := make([]chan struct{}, n+1)
	for i := range done {
		done[i] = make(chan struct{})
	}
	close(done[n])
	s := stage.Map(r6Ints(n, nil), func(ctx context.Context, v int) (int, error) {
		defer close(done[v])
		if v%4 != 3 && !r6Gate(ctx, done[v+1]) { // complete in reverse within groups of 4
			return 0, ctx.Err()
		}
		if v%2 == 1 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(4), stage.Ordered(), stage.OnError(stage.Forward))
	var seq []int
	for v, err := range sink.All(ctx, s) {
		var se *stage.Error
		if errors.As(err, &se) {
			seq = append(seq, se.Index)
		} else if err != nil {
			t.Fatalf("unexpected %v", err)
		} else {
			seq = append(seq, v)
		}
	}
	if !slices.Equal(seq, r6Seq(n)) {
		t.Errorf("Ordered+Forward yielded %v, want 0..%d (errors at their input index)", seq, n-1)
	}
}

// ---------------------------------------------------------------------------
// Batch / Unbatch

// Batches leave when full or when the input ends (timeout 0 and a timeout
// that never fires in the test); a partial batch leaves on its timeout, the
// timer restarting for each batch.
func TestReview6BatchSizeAndTimeout(t *testing.T) {
	for _, timeout := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprint(timeout), func(t *testing.T) {
			ctx := r6Ctx(t)
			in := make(chan int)
			got := make(chan []int)
			done := make(chan error, 1)
			go func() {
				done <- sink.ForEach(ctx, stage.Batch(source.Chan(in), 3, timeout), func(ctx context.Context, b []int) error {
					select {
					case got <- b:
					case <-ctx.Done():
					}
					return nil
				})
			}()
			for i := 1; i <= 3; i++ {
				in <- i
			}
			if b := r6Recv(t, got); !slices.Equal(b, []int{1, 2, 3}) {
				t.Errorf("first batch %v, want [1 2 3]", b)
			}
			in <- 4
			close(in)
			if b := r6Recv(t, got); !slices.Equal(b, []int{4}) {
				t.Errorf("last batch %v, want the partial [4]", b)
			}
			if err := <-done; err != nil {
				t.Errorf("err = %v", err)
			}
		})
	}
	t.Run("partial on timeout", func(t *testing.T) {
		ctx := r6Ctx(t)
		in := make(chan int)
		got := make(chan []int)
		done := make(chan error, 1)
		go func() {
			done <- sink.ForEach(ctx, stage.Batch(source.Chan(in), 100, time.Millisecond), func(ctx context.Context, b []int) error {
				select {
				case got <- b:
				case <-ctx.Done():
				}
				return nil
			})
		}()
		for i := 1; i <= 3; i++ {
			in <- i // nothing else arrives until this item's batch has left on its timeout
			if b := r6Recv(t, got); !slices.Equal(b, []int{i}) {
				t.Errorf("batch %v, want [%d]", b, i)
			}
		}
		close(in)
		if err := <-done; err != nil {
			t.Errorf("err = %v", err)
		}
		select {
		case b := <-got:
			t.Errorf("an extra batch %v after the input ended", b)
		default:
		}
	})
}

func r6Recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("hang: nothing arrived")
	}
	var zero T
	return zero
}

func TestReview6BatchForwardedBoundaryAndUnbatch(t *testing.T) {
	ctx := r6Ctx(t)
	mk := func() stage.Stream[int] {
		return stage.Map(r6Ints(5, nil), func(_ context.Context, v int) (int, error) {
			if v == 2 {
				return 0, errR6Boom
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(stage.Forward))
	}
	var seq []string
	for b, err := range sink.All(ctx, stage.Batch(mk(), 10, 0)) {
		if err != nil {
			seq = append(seq, "err")
		} else {
			seq = append(seq, fmt.Sprint(b))
		}
	}
	if want := []string{"[0 1]", "err", "[3 4]"}; !slices.Equal(seq, want) {
		t.Errorf("Batch yielded %v, want %v", seq, want)
	}
	seq = nil
	for v, err := range sink.All(ctx, stage.Unbatch(stage.Batch(mk(), 10, 0))) {
		if err != nil {
			seq = append(seq, "err")
		} else {
			seq = append(seq, fmt.Sprint(v))
		}
	}
	if want := []string{"0", "1", "err", "3", "4"}; !slices.Equal(seq, want) {
		t.Errorf("Unbatch(Batch) yielded %v, want %v", seq, want)
	}
}

func TestReview6BatchFailFastDropsPartial(t *testing.T) {
	ctx := r6Ctx(t)
	s := stage.Map(r6Ints(5, nil), func(_ context.Context, v int) (int, error) {
		if v == 3 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(1))
	calls := 0
	err := sink.ForEach(ctx, stage.Batch(s, 10, 0), func(context.Context, []int) error { calls++; return nil })
	var se *stage.Error
	if !errors.As(err, &se) || se.Input != any(3) || calls != 0 {
		t.Errorf("(%v, %d batches), want the *Error of item 3 and no batch", err, calls)
	}
}

// Each batch is a new slice the consumer may keep and even append to.
func TestReview6BatchSlicesIndependent(t *testing.T) {
	ctx := r6Ctx(t)
	var kept [][]int
	err := sink.ForEach(ctx, stage.Batch(source.Slice(r6Seq(20)), 3, 0), func(_ context.Context, b []int) error {
		kept = append(kept, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var copies [][]int
	for _, b := range kept {
		copies = append(copies, slices.Clone(b))
	}
	for i := range kept {
		kept[i] = append(kept[i], -1, -2, -3)
	}
	var flat []int
	for i, b := range kept {
		if !slices.Equal(b[:len(copies[i])], copies[i]) {
			t.Errorf("batch %d changed to %v after appending to the others (shared backing array)", i, b)
		}
		flat = append(flat, copies[i]...)
	}
	if !slices.Equal(flat, r6Seq(20)) {
		t.Errorf("kept batches hold %v, want 0..19", flat)
	}
}

// ---------------------------------------------------------------------------
// Until

// Drain: calls in flight finish with a live ctx, the partial batch is
// flushed, the sink returns nil.
func TestReview6UntilDrainsCallsAndBatch(t *testing.T) {
	ctx := r6Ctx(t)
	stop, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	in := make(chan int)
	started := make(chan int, 2)
	release := make(chan struct{})
	var ctxDoneInCall atomic.Bool
	m := stage.Map(stage.Until(source.Chan(in), stop), func(ctx context.Context, v int) (int, error) {
		started <- v
		r6Gate(ctx, release)
		if ctx.Err() != nil {
			ctxDoneInCall.Store(true)
		}
		return v * 10, nil
	}, stage.Workers(2))
	var batches [][]int
	done := make(chan error, 1)
	go func() {
		done <- sink.ForEach(ctx, stage.Batch(m, 10, time.Hour), func(_ context.Context, b []int) error {
			batches = append(batches, b)
			return nil
		})
	}()
	in <- 1
	in <- 2
	r6Recv(t, started)
	r6Recv(t, started)
	stopNow()
	close(release)
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("hang: the drain did not end the run")
	}
	if err != nil {
		t.Errorf("drain: err = %v, want nil", err)
	}
	if ctxDoneInCall.Load() {
		t.Errorf("a call in flight saw its ctx done during a drain")
	}
	if len(batches) != 1 || len(batches[0]) != 2 {
		t.Errorf("batches %v, want one partial batch of the 2 items taken", batches)
	}
}

// Stop done before the run: no source is asked for an item.
func TestReview6UntilStoppedBeforeRun(t *testing.T) {
	ctx := r6Ctx(t)
	stop, stopNow := context.WithCancel(context.Background())
	stopNow()
	var taken atomic.Int64
	got, err := sink.Slice(ctx, stage.Map(stage.Until(r6Ints(10, func(k int64) { taken.Store(k) }), stop),
		func(_ context.Context, v int) (int, error) { return v, nil }))
	if err != nil || got != nil || taken.Load() != 0 {
		t.Errorf("(%v, %v, %d taken), want (nil, nil, 0)", got, err, taken.Load())
	}
	var atCalls atomic.Int64
	n, err := sink.Count(ctx, stage.Until(stage.Indexed(10, func(i int) int { atCalls.Add(1); return i }), stop))
	if err != nil || n != 0 || atCalls.Load() != 0 {
		t.Errorf("Indexed: (%d, %v, %d at calls), want (0, nil, 0)", n, err, atCalls.Load())
	}
}

// A slice source under Until stops taking once stop is done; what it took
// arrives, in order, and the sink returns nil.
func TestReview6UntilSliceStopsTaking(t *testing.T) {
	ctx := r6Ctx(t)
	stop, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	var got []int
	err := sink.ForEach(ctx, stage.Map(stage.Until(source.Slice(r6Seq(100)), stop),
		func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1)),
		func(_ context.Context, v int) error {
			got = append(got, v)
			if v == 5 {
				stopNow()
			}
			return nil
		})
	if err != nil || len(got) < 6 || len(got) > 7 || !slices.Equal(got, r6Seq(len(got))) {
		t.Errorf("(%v, %v), want nil and 0..5 (plus at most item 6, which could be in flight)", got, err)
	}
}

// ---------------------------------------------------------------------------
// Merge

func TestReview6MergeWithFailingInput(t *testing.T) {
	ctx := r6Ctx(t)
	// A FailFast failure in one input cancels the other, blocked input.
	causeSeen := make(chan error, 1)
	var blockedCalled atomic.Bool
	blocked := source.Func(func(ctx context.Context) (int, error) {
		blockedCalled.Store(true)
		<-ctx.Done()
		causeSeen <- context.Cause(ctx)
		return 0, ctx.Err()
	})
	failing := stage.Map(source.Slice([]int{1, 2, 3}), func(_ context.Context, v int) (int, error) {
		if v == 2 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(1))
	_, err := sink.Slice(ctx, stage.Merge(blocked, failing))
	var se, ce *stage.Error
	if !errors.As(err, &se) || se.Input != any(2) || errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want only the *Error of input 2", err)
	}
	// The sink returned, so a next that was called has returned: it saw the cause.
	if blockedCalled.Load() {
		select {
		case c := <-causeSeen:
			if !errors.As(c, &ce) || ce != se {
				t.Errorf("the blocked source saw cause %v, want the *Error", c)
			}
		default:
			t.Errorf("the blocked source's next was still running when the sink returned")
		}
	}

	// A source failure in one input: the blocked other input stops quietly,
	// the sink returns the *SourceError after the items before it.
	blocked2 := source.Func(func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() })
	i := 0
	bad := source.Func(func(context.Context) (int, error) {
		i++
		if i <= 2 {
			return i, nil
		}
		return 0, errR6Src
	})
	got, err := sink.Slice(ctx, stage.Merge(blocked2, bad))
	var srcErr *stage.SourceError
	slices.Sort(got)
	if !errors.As(err, &srcErr) || !errors.Is(err, errR6Src) || errors.Is(err, context.Canceled) || !slices.Equal(got, []int{1, 2}) {
		t.Errorf("(%v, %v), want ([1 2], only the *SourceError)", got, err)
	}

	// Forwarded errors pass through Merge; no inputs: empty.
	fw := stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) { return 0, errR6Boom }, stage.OnError(stage.Forward))
	got, err = sink.Slice(ctx, stage.Merge(fw, source.Slice([]int{5})))
	var fe *sink.ForwardedError
	if !slices.Equal(got, []int{5}) || !errors.As(err, &fe) || fe.Count != 1 {
		t.Errorf("Merge with a forwarded error = (%v, %v)", got, err)
	}
	got, err = sink.Slice(ctx, stage.Merge[int]())
	if got != nil || err != nil {
		t.Errorf("Merge() = (%v, %v), want (nil, nil)", got, err)
	}
}

// Until drains only its own branch of a Merge; the other branch runs on.
func TestReview6MergeUntilOneBranch(t *testing.T) {
	ctx := r6Ctx(t)
	stop, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	a, b := make(chan int), make(chan int)
	got := make(chan int)
	done := make(chan error, 1)
	go func() {
		done <- sink.ForEach(ctx, stage.Merge(stage.Until(source.Chan(a), stop), source.Chan(b)), func(ctx context.Context, v int) error {
			select {
			case got <- v:
			case <-ctx.Done():
			}
			return nil
		})
	}()
	a <- 1
	if v := r6Recv(t, got); v != 1 {
		t.Errorf("got %d", v)
	}
	stopNow()
	b <- 2
	if v := r6Recv(t, got); v != 2 {
		t.Errorf("got %d", v)
	}
	b <- 3
	if v := r6Recv(t, got); v != 3 {
		t.Errorf("got %d", v)
	}
	close(b)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("err = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("hang: the merged run did not end when the other branch ended")
	}
}

// ---------------------------------------------------------------------------
// Tee

func TestReview6TeeBranches(t *testing.T) {
	ctx := r6Ctx(t)
	var seen [2][]int
	br := stage.Tee(r6Ints(6, nil), 2)
	m0 := stage.Map(br[0], func(_ context.Context, v int) (int, error) { seen[0] = append(seen[0], v); return v, nil }, stage.Workers(1))
	m1 := stage.Map(br[1], func(_ context.Context, v int) (int, error) { seen[1] = append(seen[1], v); return v, nil }, stage.Workers(1))
	n, err := sink.Count(ctx, stage.Merge(m0, m1))
	if err != nil || n != 12 || !slices.Equal(seen[0], r6Seq(6)) || !slices.Equal(seen[1], r6Seq(6)) {
		t.Errorf("(%d, %v), branches saw %v; want 12 and every item in order on each", n, err, seen)
	}

	// Each branch reports a forwarded error.
	up := stage.Map(r6Ints(3, nil), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	br = stage.Tee(up, 2)
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	got, err := sink.Slice(ctx, stage.Merge(stage.Map(br[0], id), stage.Map(br[1], id)))
	var fe *sink.ForwardedError
	if len(got) != 4 || !errors.As(err, &fe) || fe.Count != 2 {
		t.Errorf("(%v, %v), want 4 values and 2 forwarded errors (one per branch)", got, err)
	}

	// A failing branch fails the run; nothing hangs.
	br = stage.Tee(r6Ints(50, nil), 2)
	bad := stage.Map(br[0], func(_ context.Context, v int) (int, error) {
		if v == 3 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Name("bad"))
	_, err = sink.Count(ctx, stage.Merge(bad, stage.Map(br[1], id)))
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "bad" {
		t.Errorf("err = %v, want the failing branch's *Error", err)
	}

	// First over merged branches.
	br = stage.Tee(r6Ints(50, nil), 2)
	if _, ok, err := sink.First(ctx, stage.Merge(stage.Map(br[0], id), stage.Map(br[1], id))); !ok || err != nil {
		t.Errorf("First over a Tee = (%v, %v)", ok, err)
	}
}

// A run that leaves a branch unconsumed fails before any item is taken and
// before any function is called.
func TestReview6TeeUnconsumedBranch(t *testing.T) {
	ctx := r6Ctx(t)
	for _, c := range []struct{ n, used int }{{2, 1}, {3, 2}} {
		var opened, stopped, nexts, calls atomic.Int64
		src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			opened.Add(1)
			return func(context.Context) (int, error) {
					nexts.Add(1)
					return 0, io.EOF
				}, func() {
					stopped.Add(1)
				}
		})
		br := stage.Tee(src, c.n)
		var ins []stage.Stream[int]
		for i := range c.used {
			ins = append(ins, stage.Map(br[i], func(_ context.Context, v int) (int, error) { calls.Add(1); return v, nil }))
		}
		_, err := sink.Slice(ctx, stage.Merge(ins...))
		if !errors.Is(err, stage.ErrUnconsumedBranch) {
			t.Errorf("Tee(%d) with %d consumed: err = %v, want ErrUnconsumedBranch", c.n, c.used, err)
		}
		if nexts.Load() != 0 || calls.Load() != 0 {
			t.Errorf("Tee(%d) with %d consumed: %d items asked, %d calls; want none", c.n, c.used, nexts.Load(), calls.Load())
		}
		if opened.Load() != stopped.Load() {
			t.Errorf("source opened %d times, stopped %d times", opened.Load(), stopped.Load())
		}
	}
}

// ---------------------------------------------------------------------------
// Sinks: Slice, Reduce, All

func TestReview6SliceReduceAll(t *testing.T) {
	ctx := r6Ctx(t)
	none := stage.Filter(source.Slice(r6Seq(5)), func(context.Context, int) (bool, error) { return false, nil })
	if got, err := sink.Slice(ctx, none); got != nil || err != nil {
		t.Errorf("Slice with no value = (%#v, %v), want (nil, nil)", got, err)
	}
	if got, err := sink.Slice(ctx, source.Slice([]int{})); got != nil || err != nil {
		t.Errorf("Slice of an empty source = (%#v, %v), want (nil, nil)", got, err)
	}
	// Reduce: the accumulator as it stands when a FailFast error ends the run.
	s := stage.Map(r6Ints(10, nil), func(_ context.Context, v int) (int, error) {
		if v == 4 {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Workers(1))
	var folded []int
	acc, err := sink.Reduce(ctx, s, 100, func(acc, v int) int { folded = append(folded, v); return acc + v })
	sum := 100
	for _, v := range folded {
		sum += v
	}
	if !errors.Is(err, errR6Boom) || acc != sum || !r6IsPrefix(folded, []int{0, 1, 2, 3}) {
		t.Errorf("Reduce = (%d, %v) after folding %v", acc, err, folded)
	}
	// All: a failed run's last pair is the error; each range runs anew.
	var pairs []string
	for v, err := range sink.All(ctx, s) {
		if err != nil {
			pairs = append(pairs, "err")
		} else {
			pairs = append(pairs, fmt.Sprint(v))
		}
	}
	if len(pairs) == 0 || pairs[len(pairs)-1] != "err" || slices.Index(pairs, "err") != len(pairs)-1 {
		t.Errorf("All over a failing run yielded %v, want values then one final error", pairs)
	}
	it := sink.All(ctx, source.Slice([]int{1, 2, 3}))
	for range 2 {
		var got []int
		for v, err := range it {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if !slices.Equal(got, []int{1, 2, 3}) {
			t.Errorf("a range over All = %v, want a new run each time", got)
		}
	}
	// Break: the loop ends with no user call running and no run goroutine left.
	var act r6Active
	blocking := stage.Map(r6Ints(10, nil), func(ctx context.Context, v int) (int, error) {
		defer act.enter()()
		if v > 0 {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return v, nil
	}, stage.Workers(4))
	before := r6Goroutines()
	for range sink.All(ctx, blocking) {
		break
	}
	if left := r6RunGoroutinesLeftT(t, before); len(left) > 0 {
		t.Errorf("%d goroutines of the run outlived the break:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	if act.n.Load() != 0 {
		t.Errorf("%d user calls running after the break", act.n.Load())
	}
}

// No user function and no goroutine of the run is left when any sink returns,
// for each kind of ending.
func TestReview6NothingLeftAfterSink(t *testing.T) {
	type ending struct {
		name string
		run  func(ctx context.Context, s stage.Stream[int]) error
		fail int // the item whose call fails (-1: none)
	}
	endings := []ending{
		{"Slice success", func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err }, -1},
		{"Slice FailFast", func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err }, 0},
		{"ForEach error", func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return errR6Handler })
		}, -1},
		{"ForEach ErrStop", func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return stage.ErrStop })
		}, -1},
		{"First", func(ctx context.Context, s stage.Stream[int]) error { _, _, err := sink.First(ctx, s); return err }, -1},
		{"Chan FailFast", func(ctx context.Context, s stage.Stream[int]) error { return sink.Chan(ctx, s, make(chan int, 100)) }, 0},
		{"Reduce FailFast", func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Reduce(ctx, s, 0, func(a, v int) int { return a + v })
			return err
		}, 0},
	}
	for _, e := range endings {
		t.Run(e.name, func(t *testing.T) {
			ctx := r6Ctx(t)
			var act r6Active
			n := 8
			if e.fail < 0 && !strings.Contains(e.name, "success") {
				n = 1000 // runs that end early: plenty of calls in flight
			}
			var returned, late atomic.Bool
			s := stage.Map(r6Ints(n, func(int64) {
				if returned.Load() {
					late.Store(true)
				}
			}), func(ctx context.Context, v int) (int, error) {
				defer act.enter()()
				if returned.Load() {
					late.Store(true)
				}
				if v == e.fail {
					return 0, errR6Boom
				}
				runtime.Gosched()
				return v, nil
			}, stage.Workers(4), stage.Buffer(2))
			s = stage.Map(s, func(_ context.Context, v int) (int, error) { defer act.enter()(); return v, nil }, stage.Workers(3))
			before := r6Goroutines()
			err := e.run(ctx, s)
			returned.Store(true)
			left := r6RunGoroutinesLeftT(t, before) // yields if a goroutine is still around
			if late.Load() {
				t.Errorf("user code (a source's next or a stage function) ran after the sink returned")
			}
			if act.n.Load() != 0 {
				t.Errorf("%d user calls still running when the sink returned", act.n.Load())
			}
			if len(left) > 0 {
				t.Errorf("%d goroutines of the run outlived the sink:\n%s", len(left), strings.Join(left, "\n\n"))
			}
			if e.fail >= 0 && !errors.Is(err, errR6Boom) {
				t.Errorf("err = %v, want the failure", err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Names, observers, Stats

type r6Observer struct {
	mu       sync.Mutex
	infos    []stage.Info
	finished map[string][]error
	closed   map[string]int
	received map[string]int
	after    []string // calls after Closed
}

func (o *r6Observer) Stage(info stage.Info) stage.Watcher {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.infos = append(o.infos, info)
	if o.finished == nil {
		o.finished, o.closed, o.received = map[string][]error{}, map[string]int{}, map[string]int{}
	}
	return &r6Watcher{o: o, name: info.Name}
}

type r6Watcher struct {
	o    *r6Observer
	name string
}

func (w *r6Watcher) Received() {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	if w.o.closed[w.name] > 0 {
		w.o.after = append(w.o.after, w.name+".Received")
	}
	w.o.received[w.name]++
}

func (w *r6Watcher) Finished(_ time.Duration, err error) {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	if w.o.closed[w.name] > 0 {
		w.o.after = append(w.o.after, w.name+".Finished")
	}
	w.o.finished[w.name] = append(w.o.finished[w.name], err)
}

func (w *r6Watcher) Closed() {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	w.o.closed[w.name]++
}

func TestReview6NamesAndObserverLifecycle(t *testing.T) {
	ctx := r6Ctx(t)
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	var stagesAtFirstItem atomic.Int64
	obs := &r6Observer{}
	src := r6Ints(4, func(k int64) {
		if k == 1 {
			obs.mu.Lock()
			stagesAtFirstItem.Store(int64(len(obs.infos)))
			obs.mu.Unlock()
		}
	})
	m := stage.Map(src, id)
	f := stage.Filter(m, func(context.Context, int) (bool, error) { return true, nil }, stage.Name("keep"))
	u := stage.Unbatch(stage.Batch(f, 2, 0))
	fm := stage.FlatMap(u, func(_ context.Context, v int) ([]int, error) { return []int{v}, nil })
	ap := stage.Apply(fm, func(_ context.Context, v int, emit func(int) bool) error {
		if v == 3 {
			return errR6Boom
		}
		emit(v)
		return nil
	}, stage.Workers(1))
	for run := range 2 {
		obs.mu.Lock()
		obs.infos = nil
		obs.closed = map[string]int{}
		obs.mu.Unlock()
		_, err := sink.Slice(stage.Observe(ctx, obs), ap)
		var se *stage.Error
		if !errors.As(err, &se) || se.Stage != "apply#5" {
			t.Errorf("run %d: err = %v, want the *Error of stage apply#5", run, err)
		}
		obs.mu.Lock()
		var names, kinds []string
		var totals []int
		for _, in := range obs.infos {
			names = append(names, in.Name)
			kinds = append(kinds, in.Kind)
			totals = append(totals, in.Total)
		}
		if want := []string{"map#1", "keep", "unbatch#3", "flatmap#4", "apply#5"}; !slices.Equal(names, want) {
			t.Errorf("run %d: stage names %v, want %v", run, names, want)
		}
		if want := []string{"map", "filter", "unbatch", "flatmap", "apply"}; !slices.Equal(kinds, want) {
			t.Errorf("run %d: kinds %v, want %v", run, kinds, want)
		}
		if len(obs.infos) == 5 && (obs.infos[0].Workers != stage.DefaultWorkers() || obs.infos[4].Workers != 1) {
			t.Errorf("run %d: workers %d and %d", run, obs.infos[0].Workers, obs.infos[4].Workers)
		}
		_ = totals // r6Ints is not a sized source: totals are -1 here
		for _, n := range names {
			if obs.closed[n] != 1 {
				t.Errorf("run %d: %s closed %d times before the sink returned, want once", run, n, obs.closed[n])
			}
		}
		if len(obs.after) > 0 {
			t.Errorf("run %d: calls after Closed: %v", run, obs.after)
		}
		obs.mu.Unlock()
		if got := stagesAtFirstItem.Load(); got != 5 {
			t.Errorf("run %d: %d stages seen by the observer when the first item was taken, want all 5", run, got)
		}
	}
	// Total over a sized source.
	obs2 := &r6Observer{}
	m2 := stage.Map(source.Slice(r6Seq(5)), id)
	f2 := stage.Filter(m2, func(context.Context, int) (bool, error) { return true, nil })
	m3 := stage.Map(f2, id)
	if _, err := sink.Count(stage.Observe(ctx, obs2), m3); err != nil {
		t.Fatal(err)
	}
	var totals []int
	for _, in := range obs2.infos {
		totals = append(totals, in.Total)
	}
	if !slices.Equal(totals, []int{5, 5, -1}) {
		t.Errorf("totals %v, want [5 5 -1]", totals)
	}
}

func TestReview6StatsCounts(t *testing.T) {
	ctx := r6Ctx(t)
	var stats stage.Stats
	calls := map[int]int{}
	s := stage.Map(source.Slice(r6Seq(5)), func(_ context.Context, v int) (int, error) {
		calls[v]++
		if v == 2 || (v == 3 && calls[v] == 1) {
			return 0, errR6Boom
		}
		return v, nil
	}, stage.Name("p"), stage.Workers(1), stage.Retry(3, 0), stage.OnError(stage.Forward))
	_, err := sink.Count(stage.Observe(ctx, &stats), s)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 1 {
		t.Fatalf("err = %v", err)
	}
	c, ok := stats.Get("p")
	if !ok || c.Received != 5 || c.Finished != 5 || c.Failed != 1 || c.InFlight != 0 || c.Running != 0 || c.Total != 5 {
		t.Errorf("counts %+v, want received 5 (items, not attempts), finished 5, failed 1, in flight 0, running 0, total 5", c)
	}
	// While a call runs.
	started, release := make(chan struct{}), make(chan struct{})
	var stats2 stage.Stats
	done := make(chan error, 1)
	go func() {
		_, err := sink.Count(stage.Observe(ctx, &stats2), stage.Map(r6Ints(1, nil), func(ctx context.Context, v int) (int, error) {
			close(started)
			r6Gate(ctx, release)
			return v, nil
		}, stage.Name("q")))
		done <- err
	}()
	r6Wait(t, started, "the call")
	c, ok = stats2.Get("q")
	if !ok || c.Received != 1 || c.InFlight != 1 || c.Finished != 0 || c.Running != 1 {
		t.Errorf("mid-run counts %+v, want received 1, in flight 1, finished 0, running 1", c)
	}
	close(release)
	if err := <-done; err != nil {
		t.Error(err)
	}
	c, _ = stats2.Get("q")
	if c.Running != 0 || c.Finished != 1 || c.InFlight != 0 {
		t.Errorf("after the run %+v", c)
	}
}

// ---------------------------------------------------------------------------
// Child processes: panics in every user callback, Chan abandonment

func r6CheckPanic(t *testing.T, what string, err error, value any) *stage.Error {
	t.Helper()
	var se *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) {
		t.Errorf("%s: err = %v, want a *stage.Error wrapping a *stage.PanicError", what, err)
		return nil
	}
	if pe.Value != value || len(pe.Stack) == 0 {
		t.Errorf("%s: panic value %v (stack %d bytes), want %v and a stack", what, pe.Value, len(pe.Stack), value)
	}
	return se
}

func TestReview6ChildPanicsInStageFunctions(t *testing.T) {
	r6Child(t, func(t *testing.T) {
		ctx := r6Ctx(t)
		_, err := sink.Slice(ctx, stage.Map(source.Slice([]int{0, 1, 2}), func(_ context.Context, v int) (int, error) {
			if v == 1 {
				panic("map")
			}
			return v, nil
		}, stage.Workers(1)))
		if se := r6CheckPanic(t, "Map", err, "map"); se != nil && (se.Input != any(1) || se.Index != 1 || se.Stage != "map#1") {
			t.Errorf("Map panic *Error %+v", *se)
		}
		_, err = sink.Slice(ctx, stage.Filter(r6Ints(3, nil), func(_ context.Context, v int) (bool, error) {
			if v == 1 {
				panic("filter")
			}
			return true, nil
		}))
		r6CheckPanic(t, "Filter", err, "filter")
		_, err = sink.Slice(ctx, stage.FlatMap(r6Ints(3, nil), func(_ context.Context, v int) ([]int, error) {
			if v == 1 {
				panic("flatmap")
			}
			return []int{v}, nil
		}))
		r6CheckPanic(t, "FlatMap", err, "flatmap")
		_, err = sink.Slice(ctx, stage.Apply(r6Ints(3, nil), func(_ context.Context, v int, emit func(int) bool) error {
			if v == 1 {
				panic("apply")
			}
			emit(v)
			return nil
		}, stage.Ordered(), stage.Workers(2)))
		r6CheckPanic(t, "Apply", err, "apply")
		tasks := []func(context.Context) (int, error){
			func(context.Context) (int, error) { return 1, nil },
			func(context.Context) (int, error) { panic("task") },
			nil,
		}
		_, err = sink.Slice(ctx, stage.Concurrent(source.Slice(tasks[:2])))
		r6CheckPanic(t, "Concurrent", err, "task")
		_, err = sink.Slice(ctx, stage.Concurrent(source.Slice(tasks[2:])))
		if !errors.Is(err, stage.ErrNilTask) {
			t.Errorf("nil task: %v, want ErrNilTask", err)
		}
		// A panic with an error value: errors.Is sees its cause.
		_, err = sink.Slice(ctx, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) { panic(errR6Boom) }))
		if !errors.Is(err, errR6Boom) {
			t.Errorf("panic(err): errors.Is does not see err: %v", err)
		}
		_, err = sink.Slice(ctx, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
			var m map[int]int
			//lint:ignore SA5000 a runtime error, on purpose
			m[1] = 1
			return 0, nil
		}))
		var re runtime.Error
		if !errors.As(err, &re) {
			t.Errorf("runtime panic: errors.As runtime.Error fails: %v", err)
		}
		// Forward: the panic travels as an item error.
		got, err := sink.Slice(ctx, stage.Map(source.Slice([]int{0, 1, 2}), func(_ context.Context, v int) (int, error) {
			if v == 1 {
				panic("fw")
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(stage.Forward)))
		var fe *sink.ForwardedError
		if !slices.Equal(got, []int{0, 2}) || !errors.As(err, &fe) || fe.Count != 1 {
			t.Errorf("forwarded panic: (%v, %v)", got, err)
		}
		r6CheckPanic(t, "forwarded", err, "fw")
	})
}

func TestReview6ChildPanicsInSinkCallbacks(t *testing.T) {
	r6Child(t, func(t *testing.T) {
		ctx := r6Ctx(t)
		err := sink.ForEach(ctx, source.Slice([]int{0, 1, 2}), func(_ context.Context, v int) error {
			if v == 1 {
				panic("foreach")
			}
			return nil
		})
		if se := r6CheckPanic(t, "ForEach", err, "foreach"); se != nil && (se.Stage != "foreach" || se.Index != 1) {
			t.Errorf("ForEach panic *Error %+v", *se)
		}
		acc, err := sink.Reduce(ctx, source.Slice([]int{1, 2, 3, 4}), 0, func(acc, v int) int {
			if v == 3 {
				panic("reduce")
			}
			return acc + v
		})
		if se := r6CheckPanic(t, "Reduce", err, "reduce"); se != nil && se.Stage != "reduce" {
			t.Errorf("Reduce panic Stage %q", se.Stage)
		}
		if acc != 3 {
			t.Errorf("Reduce acc = %d, want 3 (as it stood)", acc)
		}
		// A panic in the loop body of All stops the run and continues, with
		// every goroutine of the run gone.
		var act r6Active
		s := stage.Map(r6Ints(10, nil), func(ctx context.Context, v int) (int, error) {
			defer act.enter()()
			if v > 0 {
				<-ctx.Done()
				return 0, ctx.Err()
			}
			return v, nil
		}, stage.Workers(3))
		before := r6Goroutines()
		func() {
			defer func() {
				if r := recover(); r != "body" {
					t.Errorf("recovered %v, want the body's panic", r)
				}
				if act.n.Load() != 0 {
					t.Errorf("user calls running when the body's panic continued")
				}
				if left := r6RunGoroutinesLeftT(t, before); len(left) > 0 {
					t.Errorf("run goroutines left after a panic in the body:\n%s", strings.Join(left, "\n\n"))
				}
			}()
			for range sink.All(ctx, s) {
				panic("body")
			}
		}()
		// A panic in Run's f is not recovered: the run is cancelled and waited for.
		func() {
			defer func() {
				if r := recover(); r != "runf" {
					t.Errorf("recovered %v, want Run's f panic", r)
				}
				if act.n.Load() != 0 {
					t.Errorf("user calls running when Run's panic continued")
				}
			}()
			stage.Run(ctx, s, func(context.Context, int, error) error { panic("runf") })
		}()
	})
}

func TestReview6ChildPanicsInPolicyCallbacks(t *testing.T) {
	r6Child(t, func(t *testing.T) {
		ctx := r6Ctx(t)
		failing := func(_ context.Context, v int) (int, error) {
			if v == 1 {
				return 0, errR6Boom
			}
			return v, nil
		}
		_, err := sink.Slice(ctx, stage.Map(r6Ints(3, nil), failing, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { panic("h") }))))
		r6CheckPanic(t, "Handle", err, "h")
		_, err = sink.Slice(ctx, stage.Map(r6Ints(3, nil), failing, stage.OnError(stage.Budget(3, func(context.Context, *stage.Error) error { panic("bh") }))))
		r6CheckPanic(t, "Budget", err, "bh")
		// A panic is not retried by Retry.
		calls := 0
		_, err = sink.Slice(ctx, stage.Map(r6Ints(1, nil), func(context.Context, int) (int, error) { calls++; panic("again") },
			stage.Retry(5, 0)))
		if se := r6CheckPanic(t, "Retry", err, "again"); se != nil && (calls != 1 || se.Attempts != 1) {
			t.Errorf("Retry of a panic: %d calls, Attempts %d; want 1 and 1", calls, se.Attempts)
		}
		// RetryIf may retry a panic (it sees a *PanicError).
		calls = 0
		var sawPanic bool
		got, err := sink.Slice(ctx, stage.Map(r6Ints(1, nil), func(context.Context, int) (int, error) {
			calls++
			if calls < 3 {
				panic("flaky")
			}
			return 9, nil
		}, stage.RetryIf(3, 0, func(err error) bool {
			var pe *stage.PanicError
			sawPanic = errors.As(err, &pe)
			return true
		})))
		if err != nil || !slices.Equal(got, []int{9}) || !sawPanic {
			t.Errorf("RetryIf over panics: (%v, %v, saw panic %v)", got, err, sawPanic)
		}
		// A panic in the predicate fails the item at once.
		calls = 0
		_, err = sink.Slice(ctx, stage.Map(r6Ints(1, nil), func(context.Context, int) (int, error) { calls++; return 0, errR6Boom },
			stage.RetryIf(5, 0, func(error) bool { panic("pred") })))
		r6CheckPanic(t, "RetryIf predicate", err, "pred")
		if calls != 1 {
			t.Errorf("predicate panic: %d calls, want 1 (not retried)", calls)
		}
		// A panic in KeyBy's key: the item fails, its function is not called.
		var fnCalls []int
		var mu sync.Mutex
		got, err = sink.Slice(ctx, stage.Map(r6Ints(3, nil), func(_ context.Context, v int) (int, error) {
			mu.Lock()
			fnCalls = append(fnCalls, v)
			mu.Unlock()
			return v, nil
		}, stage.OnError(stage.Forward), stage.KeyBy(func(v int) int {
			if v == 1 {
				panic("key")
			}
			return v
		})))
		if se := r6CheckPanic(t, "KeyBy", err, "key"); se != nil && se.Input != any(1) {
			t.Errorf("key panic *Error input %v", se.Input)
		}
		slices.Sort(got)
		slices.Sort(fnCalls)
		if !slices.Equal(got, []int{0, 2}) || !slices.Equal(fnCalls, []int{0, 2}) {
			t.Errorf("key panic: values %v, calls %v; want [0 2] and [0 2]", got, fnCalls)
		}
	})
}

type r6PanicObserver struct{ where string }

func (o r6PanicObserver) Stage(stage.Info) stage.Watcher {
	if o.where == "Stage" {
		panic("obs Stage")
	}
	return r6PanicWatcher(o)
}

type r6PanicWatcher struct{ where string }

func (w r6PanicWatcher) Received() {
	if w.where == "Received" {
		panic("obs Received")
	}
}

func (w r6PanicWatcher) Finished(time.Duration, error) {
	if w.where == "Finished" {
		panic("obs Finished")
	}
}

func (w r6PanicWatcher) Closed() {
	if w.where == "Closed" {
		panic("obs Closed")
	}
}

func TestReview6ChildPanicsInSourcesAndObservers(t *testing.T) {
	r6Child(t, func(t *testing.T) {
		ctx := r6Ctx(t)
		i := 0
		got, err := sink.Slice(ctx, source.Func(func(context.Context) (int, error) {
			i++
			if i == 3 {
				panic("next")
			}
			return i, nil
		}))
		var srcErr *stage.SourceError
		var pe *stage.PanicError
		if !errors.As(err, &srcErr) || !errors.As(err, &pe) || pe.Value != "next" || !slices.Equal(got, []int{1, 2}) {
			t.Errorf("Func panic: (%v, %v), want ([1 2], *SourceError with a *PanicError)", got, err)
		}
		_, err = sink.Slice(ctx, source.Seq(func(yield func(int) bool) {
			yield(1)
			panic("seq")
		}))
		if !errors.As(err, &srcErr) || !errors.As(err, &pe) || pe.Value != "seq" {
			t.Errorf("Seq panic: %v", err)
		}
		_, err = sink.Slice(ctx, stage.Source(func(context.Context) (func(context.Context) (int, error), func()) { panic("open") }))
		if !errors.As(err, &srcErr) {
			t.Errorf("open panic: %v, want a *SourceError", err)
		}
		got, err = sink.Slice(ctx, stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			n := 0
			return func(context.Context) (int, error) {
					n++
					if n > 2 {
						return 0, io.EOF
					}
					return n, nil
				}, func() {
					panic("stop")
				}
		}))
		if !errors.As(err, &srcErr) || !slices.Equal(got, []int{1, 2}) {
			t.Errorf("stop panic: (%v, %v), want ([1 2], a *SourceError)", got, err)
		}
		for _, where := range []string{"Stage", "Received", "Finished", "Closed"} {
			_, err := sink.Slice(stage.Observe(ctx, r6PanicObserver{where}), stage.Map(source.Slice([]int{1, 2}),
				func(_ context.Context, v int) (int, error) { return v, nil }))
			if !errors.As(err, &pe) || pe.Value != "obs "+where {
				t.Errorf("observer panic in %s: err = %v, want an error wrapping its *PanicError", where, err)
			}
		}
	})
}

func TestReview6ChildChanOwnershipAndAbandon(t *testing.T) {
	r6Child(t, func(t *testing.T) {
		ctx := r6Ctx(t)
		// Success: values in order, out left open.
		out := make(chan int, 10)
		if err := sink.Chan(ctx, stage.Map(r6Ints(5, nil), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1)), out); err != nil {
			t.Fatal(err)
		}
		var got []int
		for len(out) > 0 {
			got = append(got, <-out)
		}
		if !slices.Equal(got, r6Seq(5)) {
			t.Errorf("Chan sent %v", got)
		}
		select {
		case _, ok := <-out:
			if !ok {
				t.Errorf("Chan closed the caller's channel")
			}
		default:
		}
		// Nobody reads out; a later item fails: Chan stops waiting.
		unread := make(chan int)
		err := sink.Chan(ctx, stage.Map(r6Ints(2, nil), func(_ context.Context, v int) (int, error) {
			if v == 1 {
				return 0, errR6Boom
			}
			return v, nil
		}, stage.Workers(2)), unread)
		if !errors.Is(err, errR6Boom) {
			t.Errorf("abandoned Chan: err = %v, want the item failure", err)
		}
		select {
		case _, ok := <-unread:
			t.Errorf("after Chan returned, out delivered (ok=%v)", ok)
		default:
		}
		// Nobody reads out; the caller cancels.
		cctx, cancel := context.WithCancel(ctx)
		delivered := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- sink.Chan(cctx, stage.Map(r6Ints(3, nil), func(_ context.Context, v int) (int, error) {
				if v == 0 {
					defer close(delivered)
				}
				return v, nil
			}, stage.Workers(1)), unread)
		}()
		r6Wait(t, delivered, "the first call")
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled Chan: err = %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("hang: Chan kept waiting on out after the cancellation")
		}
		// A nil out panics.
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Chan with a nil out did not panic")
				}
			}()
			sink.Chan[int](ctx, source.Slice([]int{1}), nil)
		}()
	})
}

// A run cancelled by its caller, followed at once by other runs of the same
// pipeline: what the cancelled run left behind (the per-run state is
// recycled between runs) never disturbs a later run, and nothing of it runs
// once its sink has returned.
func TestReview6CancelledRunDoesNotDisturbNextRun(t *testing.T) {
	base := r6Ctx(t)
	s := stage.Map(source.Slice(r6Seq(16)), func(ctx context.Context, v int) (int, error) {
		if c, ok := ctx.Value(r6Key{}).(context.CancelFunc); ok && v == 3 {
			c()
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return v, nil
	}, stage.Workers(4), stage.Ordered())
	for i := range 300 {
		ctx, cancel := context.WithCancel(base)
		_, err := sink.Slice(context.WithValue(ctx, r6Key{}, cancel), s)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("iteration %d: cancelled run returned %v", i, err)
		}
		got, err := sink.Slice(base, s)
		if err != nil || !slices.Equal(got, r6Seq(16)) {
			t.Fatalf("iteration %d: the run after a cancelled one = (%v, %v)", i, got, err)
		}
	}
}
