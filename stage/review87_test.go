package stage_test

// review87: adversarial black-box tests written from the documentation
// alone, aimed at combinations of options and policies: Timeout with
// Retry/RetryIf, Ordered, Workers(n), Buffer and KeyBy; the error policies
// with Retry and Timeout; Batch, Tee, Merge and Until downstream of
// retrying or ordered stages; Stats and observers under retries; panics and
// runtime.Goexit in retried or timed calls, in predicates, key functions
// and handlers; cancellation during a backoff, a timed call or a handler;
// early exits while retries are pending. Every verdict depends only on the
// order of events: durations are hang watchdogs, a minute-long Timeout for
// calls that must not time out, or a short Timeout on a call that blocks
// until its ctx is done.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// errR87Fail is a retryable failure of a user function.
var errR87Fail = errors.New("r87: fail")

// errR87Permanent is a failure that r87 predicates do not retry.
var errR87Permanent = errors.New("r87: permanent")

// r87mode is one cell of the option matrix.
type r87mode struct {
	workers int
	ordered bool
	buffer  int
}

func (m r87mode) String() string {
	return fmt.Sprintf("w=%d/o=%v/b=%d", m.workers, m.ordered, m.buffer)
}

// buffered returns m with a Buffer of at least 1, so that every call runs on
// a goroutine of the stage's own.
func (m r87mode) buffered() r87mode {
	if m.buffer == 0 {
		m.buffer = 1
	}
	return m
}

func (m r87mode) opts(more ...stage.Option) []stage.Option {
	opts := []stage.Option{stage.Workers(m.workers)}
	if m.ordered {
		opts = append(opts, stage.Ordered())
	}
	if m.buffer > 0 {
		opts = append(opts, stage.Buffer(m.buffer))
	}
	return append(opts, more...)
}

var r87modes = []r87mode{
	{1, false, 0}, {1, true, 0}, {1, false, 1},
	{3, false, 0}, {3, true, 0}, {3, true, 2}, {3, false, 1},
	{-1, false, 0}, {-1, true, 0},
}

// r87obs is an Observer that records, per stage name, what its watchers
// were told.
type r87obs struct {
	mu     sync.Mutex
	stages map[string]*r87watch
}

type r87watch struct {
	o        *r87obs
	info     stage.Info
	received int
	finished int
	errs     []error // the non-nil errors Finished was given
	lat      []time.Duration
	closed   int
}

func (o *r87obs) Stage(info stage.Info) stage.Watcher {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stages == nil {
		o.stages = map[string]*r87watch{}
	}
	w := &r87watch{o: o, info: info}
	o.stages[info.Name] = w
	return w
}

func (o *r87obs) get(name string) r87watch {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.stages[name]
	if w == nil {
		return r87watch{}
	}
	c := *w
	c.errs = slices.Clone(w.errs)
	c.lat = slices.Clone(w.lat)
	return c
}

func (w *r87watch) Received() {
	w.o.mu.Lock()
	w.received++
	w.o.mu.Unlock()
}

func (w *r87watch) Finished(lat time.Duration, err error) {
	w.o.mu.Lock()
	w.finished++
	w.lat = append(w.lat, lat)
	if err != nil {
		w.errs = append(w.errs, err)
	}
	w.o.mu.Unlock()
}

func (w *r87watch) Closed() {
	w.o.mu.Lock()
	w.closed++
	w.o.mu.Unlock()
}

// r87blockUntilDone waits for ctx and returns its error: a call that a
// Timeout ends whatever the machine's speed.
func r87blockUntilDone(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// r87pair is one pair of sink.All.
type r87pair[T any] struct {
	v   T
	err error
}

func r87all[T any](ctx context.Context, s stage.Stream[T]) []r87pair[T] {
	var out []r87pair[T]
	for v, err := range sink.All(ctx, s) {
		out = append(out, r87pair[T]{v, err})
	}
	return out
}

// ---------------------------------------------------------------------------
// Timeout × Retry

// TestReview87RetryTimeoutEachAttemptOwnDeadline attacks:
//
//	Timeout: "gives each call of the stage's function (each attempt, under
//	Retry) a context that expires d after the call starts ... Only that
//	call's context expires, not the run's"
//	Retry: "Each attempt gets its own Timeout"
//
// The first two attempts of every item block until their ctx is done (the
// Timeout ends them); the third returns at once. Every item must succeed,
// after exactly three calls, across the worker/order/buffer matrix.
func TestReview87RetryTimeoutEachAttemptOwnDeadline(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			const n = 7
			var calls [n]atomic.Int32
			var bad atomic.Value
			f := func(ctx context.Context, x int) (int, error) {
				a := calls[x].Add(1)
				if _, ok := ctx.Deadline(); !ok {
					bad.Store(fmt.Sprintf("item %d attempt %d: its ctx has no deadline", x, a))
				}
				if a <= 2 {
					err := r87blockUntilDone(ctx)
					if !errors.Is(err, context.DeadlineExceeded) {
						bad.Store(fmt.Sprintf("item %d attempt %d: ctx ended with %v, not its deadline", x, a, err))
					}
					return 0, err
				}
				return 10 * x, nil
			}
			var got []int
			var err error
			st := &stage.Stats{}
			runcheck.Run(t, "retry+timeout", func() {
				got, err = sink.Slice(stage.Observe(context.Background(), st), stage.Map(source.Slice(ints(n)), f,
					m.opts(stage.Name("rt"), stage.Timeout(time.Millisecond), stage.Retry(3, 0))...))
			})
			if err != nil {
				t.Fatalf("err = %v, want nil: only each attempt's ctx expires, not the run's", err)
			}
			if v := bad.Load(); v != nil {
				t.Fatal(v)
			}
			if m.ordered || m.workers == 1 {
				want := []int{0, 10, 20, 30, 40, 50, 60}
				if !slices.Equal(got, want) {
					t.Fatalf("got %v, want %v (input order)", got, want)
				}
			} else {
				slices.Sort(got)
				if len(got) != n {
					t.Fatalf("got %v, want %d items", got, n)
				}
			}
			for i := range calls {
				if c := calls[i].Load(); c != 3 {
					t.Errorf("item %d: %d calls, want 3", i, c)
				}
			}
			c, _ := st.Get("rt")
			if c.Received != n || c.Finished != n || c.Failed != 0 || c.InFlight != 0 || c.Running != 0 {
				t.Errorf("Stats = %+v, want received=finished=%d failed=0 inflight=0 running=0 (one Received and Finished per item, not per attempt)", c, n)
			}
		})
	}
}

// TestReview87RetryTimeoutExhaustedForward attacks:
//
//	Retry: "Only the last error reaches the error policy, in an *Error
//	whose Attempts field says how many calls were made."
//	Timeout: "A function that honours its ctx then returns an error for
//	which errors.Is(err, context.DeadlineExceeded) holds, which is
//	retryable by default."
//	Ordered: "(Forward keeps the failure in its place)"
//	Watcher.Finished: "the call (all its attempts under Retry) ended ...
//	the *Error that the stage's ErrorPolicy is about to handle (of that
//	type, not wrapped)"
//	Counts: "Failed int64 // calls that ended in an item error"
func TestReview87RetryTimeoutExhaustedForward(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			const n = 9
			var calls [n]atomic.Int32
			f := func(ctx context.Context, x int) (int, error) {
				calls[x].Add(1)
				if x%3 == 1 {
					return 0, r87blockUntilDone(ctx)
				}
				return x, nil
			}
			obs := &r87obs{}
			st := &stage.Stats{}
			ctx := stage.Observe(stage.Observe(context.Background(), obs), st)
			var pairs []r87pair[int]
			runcheck.Run(t, "forward", func() {
				pairs = r87all(ctx, stage.Map(source.Slice(ints(n)), f,
					m.opts(stage.Name("tf"), stage.Timeout(time.Millisecond), stage.Retry(3, 0), stage.OnError(stage.Forward))...))
			})
			if len(pairs) != n {
				t.Fatalf("got %d pairs, want %d: %v", len(pairs), n, pairs)
			}
			seenErr := map[int]bool{}
			var vals []int
			for i, p := range pairs {
				if p.err == nil {
					vals = append(vals, p.v)
					if m.ordered || m.workers == 1 {
						if p.v != i || i%3 == 1 {
							t.Errorf("pair %d = value %d, want the item of index %d in its place", i, p.v, i)
						}
					}
					continue
				}
				var e *stage.Error
				if !errors.As(p.err, &e) {
					t.Fatalf("pair %d: %v is not an *Error", i, p.err)
				}
				if e.Attempts != 3 || !errors.Is(e, context.DeadlineExceeded) || e.Stage != "tf" || e.Input != e.Index || e.Index%3 != 1 {
					t.Errorf("pair %d: %#v (Err %v), want stage tf, Attempts 3, DeadlineExceeded, Input==Index, Index%%3==1", i, e, e.Err)
				}
				if (m.ordered || m.workers == 1) && e.Index != i {
					t.Errorf("pair %d: the error of index %d is out of its place", i, e.Index)
				}
				seenErr[e.Index] = true
			}
			if len(seenErr) != 3 || len(vals) != 6 {
				t.Errorf("errors %v, values %v: want 3 distinct errors and 6 values", seenErr, vals)
			}
			for i := range calls {
				want := int32(1)
				if i%3 == 1 {
					want = 3
				}
				if c := calls[i].Load(); c != want {
					t.Errorf("item %d: %d calls, want %d", i, c, want)
				}
			}
			w := obs.get("tf")
			if w.received != n || w.finished != n || len(w.errs) != 3 || w.closed != 1 {
				t.Errorf("watcher: received %d finished %d errs %d closed %d, want %d %d 3 1", w.received, w.finished, len(w.errs), w.closed, n, n)
			}
			for _, err := range w.errs {
				e, ok := err.(*stage.Error)
				if !ok || e.Attempts != 3 {
					t.Errorf("watcher's Finished got %T %v, want an *Error (not wrapped) of Attempts 3", err, err)
				}
			}
			c, _ := st.Get("tf")
			if c.Received != n || c.Finished != n || c.Failed != 3 || c.InFlight != 0 || c.Running != 0 || c.Total != n {
				t.Errorf("Stats = %+v, want received=finished=total=%d failed=3", c, n)
			}
		})
	}
}

// TestReview87HandleAfterTimeoutGetsRunContext attacks:
//
//	Handle: "ctx is the run's context."; "Calls of h never overlap within
//	one stage of one run"; "h sees the *Error (stage, index, input,
//	attempts, cause) once the item's retries are spent. If h returns nil,
//	the item is dropped ... and the run goes on"
//
// The item's calls were ended by their Timeout: a handler given the timed
// call's context (rather than the run's) would see it done.
func TestReview87HandleAfterTimeoutGetsRunContext(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			const n = 12
			var inH atomic.Int32
			var mu sync.Mutex
			var seen []int
			var problems []string
			h := func(ctx context.Context, e *stage.Error) error {
				if inH.Add(1) != 1 {
					mu.Lock()
					problems = append(problems, "two calls of h overlap")
					mu.Unlock()
				}
				defer inH.Add(-1)
				runtime.Gosched()
				mu.Lock()
				defer mu.Unlock()
				if ctx.Err() != nil {
					problems = append(problems, fmt.Sprintf("h's ctx is done (%v): not the run's context", ctx.Err()))
				}
				if _, ok := ctx.Deadline(); ok {
					problems = append(problems, "h's ctx has a deadline: the call's Timeout, not the run's context")
				}
				if e.Attempts != 2 || !errors.Is(e, context.DeadlineExceeded) || e.Input != e.Index {
					problems = append(problems, fmt.Sprintf("h got %#v (%v), want Attempts 2, DeadlineExceeded", e, e.Err))
				}
				seen = append(seen, e.Index)
				return nil
			}
			f := func(ctx context.Context, x int) (int, error) {
				if x%2 == 0 {
					return 0, r87blockUntilDone(ctx)
				}
				return x, nil
			}
			var got []int
			var err error
			runcheck.Run(t, "handle", func() {
				got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(n)), f,
					m.opts(stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.OnError(stage.Handle(h)))...))
			})
			if err != nil {
				t.Fatalf("err = %v, want nil (h dropped every failure)", err)
			}
			for _, p := range problems {
				t.Error(p)
			}
			slices.Sort(got)
			slices.Sort(seen)
			if !slices.Equal(got, []int{1, 3, 5, 7, 9, 11}) || !slices.Equal(seen, []int{0, 2, 4, 6, 8, 10}) {
				t.Errorf("values %v, handled %v", got, seen)
			}
		})
	}
}

// TestReview87BudgetRetryTimeout attacks:
//
//	Budget: "the first n failed items of a run are dropped after being
//	passed to h ..., and the (n+1)th, which h does not see, fails the run
//	with an error that wraps both ErrBudget and that item's *Error"
//	Retry: "Only the last error reaches the error policy, in an *Error whose
//	Attempts field says how many calls were made."
func TestReview87BudgetRetryTimeout(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			const n = 10
			var mu sync.Mutex
			var handled []int
			var attempts []int
			h := func(_ context.Context, e *stage.Error) error {
				mu.Lock()
				defer mu.Unlock()
				handled = append(handled, e.Index)
				attempts = append(attempts, e.Attempts)
				return nil
			}
			f := func(ctx context.Context, x int) (int, error) {
				if x%2 == 1 {
					return 0, r87blockUntilDone(ctx)
				}
				return x, nil
			}
			var err error
			runcheck.Run(t, "budget", func() {
				_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(n)), f,
					m.opts(stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.OnError(stage.Budget(2, h)))...))
			})
			var e *stage.Error
			if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &e) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want ErrBudget wrapping the item's *Error", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(handled) != 2 || slices.Contains(handled, e.Index) {
				t.Errorf("h saw %v; the failing item is %d: want 2 items, not the (n+1)th", handled, e.Index)
			}
			if e.Attempts != 2 || !slices.Equal(attempts, []int{2, 2}) {
				t.Errorf("Attempts: failing %d, handled %v; want 2 each", e.Attempts, attempts)
			}
			if m.workers == 1 {
				if !slices.Equal(handled, []int{1, 3}) || e.Index != 5 {
					t.Errorf("one worker: handled %v, failing %d; want [1 3] and 5 (input order)", handled, e.Index)
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Cancellation during a backoff, a timed call, a handler

// TestReview87CancelDuringBackoff attacks:
//
//	Retry: "The wait holds the worker and ends early, without a retry,
//	when the run is cancelled."
//	Run: "when ctx was cancelled, an error for which errors.Is(err,
//	context.Canceled) ... holds"
func TestReview87CancelDuringBackoff(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			var calls atomic.Int32
			failed := make(chan struct{})
			f := func(ctx context.Context, x int) (int, error) {
				if calls.Add(1) == 1 {
					close(failed)
				}
				return 0, errR87Fail
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var err error
			runcheck.Run(t, "cancel in backoff", func() {
				go func() {
					<-failed
					cancel()
				}()
				_, err = sink.Slice(ctx, stage.Map(source.Slice([]int{0}), f, m.opts(stage.Retry(5, time.Hour))...))
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			if c := calls.Load(); c != 1 {
				t.Errorf("%d calls, want 1: the backoff ends early without a retry", c)
			}
		})
	}
}

// TestReview87FailFastElsewhereDuringBackoff attacks the same sentence of
// Retry with the run cancelled by another item's FailFast error, and
//
//	FailFast: "the sink returns the error once every goroutine of the run
//	has exited"
//
// Item 0 fails retryably and waits in an hour's backoff; item 1, once item 0
// is in its backoff, fails with an error the predicate does not retry.
func TestReview87FailFastElsewhereDuringBackoff(t *testing.T) {
	for _, m := range r87modes {
		if m.workers == 1 {
			continue // item 1 would wait for item 0's backoff
		}
		t.Run(m.String(), func(t *testing.T) {
			var calls [2]atomic.Int32
			failed := make(chan struct{})
			f := func(ctx context.Context, x int) (int, error) {
				calls[x].Add(1)
				if x == 0 {
					close(failed)
					return 0, errR87Fail
				}
				select {
				case <-failed:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
				return 0, errR87Permanent
			}
			retryable := func(err error) bool { return errors.Is(err, errR87Fail) }
			var err error
			runcheck.Run(t, "failfast in backoff", func() {
				_, err = sink.Slice(context.Background(), stage.Map(source.Slice([]int{0, 1}), f,
					m.buffered().opts(stage.RetryIf(5, time.Hour, retryable))...))
			})
			var e *stage.Error
			if !errors.As(err, &e) || e.Index != 1 || !errors.Is(err, errR87Permanent) || e.Attempts != 1 {
				t.Errorf("err = %v, want item 1's *Error (permanent, Attempts 1)", err)
			}
			if c := calls[0].Load(); c != 1 {
				t.Errorf("item 0: %d calls, want 1", c)
			}
		})
	}
}

// TestReview87CancelDuringTimedCall attacks:
//
//	Timeout: "Only that call's context expires, not the run's"
//	Watcher.Finished: "when the call returned an error once the run was
//	ending (... the caller's cancellation ...), an error for which
//	errors.Is(err, context.Canceled) holds and that neither is nor wraps an
//	*Error ...: the call neither succeeded nor failed."
//	Cancellation: "Once the run is cancelled, ... no call of a stage's
//	function starts"
//
// The call blocks until its ctx is done, under a minute's Timeout; the
// caller cancels. The sink returns the cancellation, the call is not retried,
// the Handle policy is not given it, and Stats count no failure.
func TestReview87CancelDuringTimedCall(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			var calls atomic.Int32
			var handled atomic.Int32
			started := make(chan struct{})
			f := func(ctx context.Context, x int) (int, error) {
				if calls.Add(1) == 1 {
					close(started)
				}
				return 0, r87blockUntilDone(ctx)
			}
			h := func(ctx context.Context, e *stage.Error) error {
				handled.Add(1)
				return nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			obs := &r87obs{}
			st := &stage.Stats{}
			var err error
			runcheck.Run(t, "cancel in timed call", func() {
				go func() {
					<-started
					cancel()
				}()
				_, err = sink.Slice(stage.Observe(stage.Observe(ctx, obs), st), stage.Map(source.Slice([]int{0}), f,
					m.opts(stage.Name("tc"), stage.Timeout(time.Minute), stage.Retry(3, 0), stage.OnError(stage.Handle(h)))...))
			})
			if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			if c := calls.Load(); c != 1 {
				t.Errorf("%d calls, want 1 (no attempt starts once the run is cancelled)", c)
			}
			if h := handled.Load(); h != 0 {
				t.Errorf("the Handle policy saw %d cut-short calls, want 0", h)
			}
			c, _ := st.Get("tc")
			if c.Failed != 0 || c.Finished != 1 || c.Received != 1 {
				t.Errorf("Stats = %+v, want received 1 finished 1 failed 0", c)
			}
			w := obs.get("tc")
			var e *stage.Error
			if len(w.errs) != 1 || !errors.Is(w.errs[0], context.Canceled) || errors.As(w.errs[0], &e) {
				t.Errorf("watcher errs = %v, want one cut-short error (Canceled, no *Error)", w.errs)
			}
		})
	}
}

// TestReview87CancelInsideHandler attacks:
//
//	Run: "the error that cut the run short before f saw the end of s ...
//	when ctx was cancelled, an error for which errors.Is(err,
//	context.Canceled) ... holds"
//	Handle: "(Once the run is ending, an error of h's that is the context's
//	error or the run's cause means h was cut short: the run's result stays
//	what ended it ...)"
//
// The handler waits for the caller's cancellation, then returns either the
// context's error or an error of its own; the cancellation came first.
func TestReview87CancelInsideHandler(t *testing.T) {
	for _, own := range []bool{false, true} {
		for _, m := range r87modes {
			t.Run(fmt.Sprintf("own=%v/%v", own, m), func(t *testing.T) {
				inH := make(chan struct{})
				var once sync.Once
				h := func(ctx context.Context, e *stage.Error) error {
					once.Do(func() { close(inH) })
					<-ctx.Done()
					if own {
						return errors.New("r87: handler's own error after the cancellation")
					}
					return ctx.Err()
				}
				f := func(ctx context.Context, x int) (int, error) { return 0, errR87Fail }
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var err error
				runcheck.Run(t, "cancel in handler", func() {
					go func() {
						<-inH
						cancel()
					}()
					_, err = sink.Slice(ctx, stage.Map(source.Slice(ints(4)), f,
						m.opts(stage.Retry(2, 0), stage.Timeout(time.Minute), stage.OnError(stage.Handle(h)))...))
				})
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want context.Canceled: the cancellation came before h's error", err)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// Early exits while retries are pending

// TestReview87FirstWhileRetryPending attacks:
//
//	First: "runs s until its first item arrives, then stops the run and
//	returns once every goroutine has exited. It returns (v, true, nil) for
//	a value"
//	Retry: "The wait ... ends early, without a retry, when the run is
//	cancelled."
//
// Unordered: item 0 fails and waits in an hour's backoff; item 1 then
// succeeds and is the first item. Ordered: item 1 fails into its backoff,
// then item 0 succeeds and is the first item.
func TestReview87FirstWhileRetryPending(t *testing.T) {
	for _, m := range r87modes {
		if m.workers == 1 {
			continue
		}
		t.Run(m.String(), func(t *testing.T) {
			var calls [2]atomic.Int32
			inBackoff := make(chan struct{})
			failing := 0
			if m.ordered {
				failing = 1
			}
			f := func(ctx context.Context, x int) (int, error) {
				calls[x].Add(1)
				if x == failing {
					close(inBackoff)
					return 0, errR87Fail
				}
				select {
				case <-inBackoff:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
				return 100 + x, nil
			}
			var v int
			var ok bool
			var err error
			runcheck.Run(t, "first", func() {
				v, ok, err = sink.First(context.Background(), stage.Map(source.Slice([]int{0, 1}), f,
					m.buffered().opts(stage.Retry(3, time.Hour), stage.Timeout(time.Minute))...))
			})
			if err != nil || !ok || v != 100+(1-failing) {
				t.Errorf("First = %d, %v, %v; want %d, true, nil", v, ok, err, 100+(1-failing))
			}
			if c := calls[failing].Load(); c != 1 {
				t.Errorf("item %d: %d calls, want 1", failing, c)
			}
		})
	}
}

// TestReview87ErrStopWhileRetryPending attacks:
//
//	README: "A callback that returns stage.ErrStop ends the run with nil,
//	whatever happened meanwhile"
//	ForEach: "f may return stage.ErrStop ... ForEach then returns nil"
//
// and the same with a break out of sink.All ("Breaking out of the loop
// stops the run"), while another item is in a retry backoff, or in a timed
// call that blocks until its ctx is done.
func TestReview87ErrStopWhileRetryPending(t *testing.T) {
	for _, how := range []string{"foreach", "all"} {
		for _, pending := range []string{"backoff", "timedcall"} {
			for _, m := range r87modes {
				if m.workers == 1 {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/%v", how, pending, m), func(t *testing.T) {
					pendingNow := make(chan struct{})
					var calls [2]atomic.Int32
					failing := 0
					if m.ordered {
						failing = 1
					}
					f := func(ctx context.Context, x int) (int, error) {
						a := calls[x].Add(1)
						if x == failing {
							if pending == "backoff" {
								close(pendingNow)
								return 0, errR87Fail
							}
							if a == 1 {
								close(pendingNow)
							}
							return 0, r87blockUntilDone(ctx)
						}
						select {
						case <-pendingNow:
						case <-ctx.Done():
							return 0, ctx.Err()
						}
						return x, nil
					}
					s := stage.Map(source.Slice([]int{0, 1}), f,
						m.buffered().opts(stage.Retry(3, time.Hour), stage.Timeout(time.Minute))...)
					var err error
					var got []int
					runcheck.Run(t, "stop", func() {
						if how == "foreach" {
							err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
								got = append(got, v)
								return stage.ErrStop
							})
							return
						}
						for v, e := range sink.All(context.Background(), s) {
							if e != nil {
								err = e
							}
							got = append(got, v)
							break
						}
					})
					if err != nil || !slices.Equal(got, []int{1 - failing}) {
						t.Errorf("got %v, err %v; want [%d], nil", got, err, 1-failing)
					}
					if c := calls[failing].Load(); c != 1 {
						t.Errorf("item %d: %d calls, want 1", failing, c)
					}
				})
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Retry predicates, panics, tokens, nil tasks

// TestReview87RetryIfPredicateCalls attacks:
//
//	RetryIf: "it sees the error of each failed attempt that another could
//	follow (not the last allowed one's), a panic included (as a
//	*PanicError, so that a predicate may retry one)."
//	Retry: "unless the error is a *PanicError (a bug is not cured by trying
//	again; see RetryIf to choose)"
func TestReview87RetryIfPredicateCalls(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			const n = 6
			var calls [n]atomic.Int32
			var preds atomic.Int32
			var predPanics atomic.Int32
			pred := func(err error) bool {
				preds.Add(1)
				var pe *stage.PanicError
				if errors.As(err, &pe) {
					predPanics.Add(1)
				}
				return true
			}
			f := func(ctx context.Context, x int) (int, error) {
				calls[x].Add(1)
				if x%2 == 0 {
					panic(fmt.Sprintf("r87 panic %d", x))
				}
				return 0, errR87Fail
			}
			var pairs []r87pair[int]
			runcheck.Run(t, "retryif", func() {
				pairs = r87all(context.Background(), stage.Map(source.Slice(ints(n)), f,
					m.opts(stage.RetryIf(4, 0, pred), stage.Timeout(time.Minute), stage.OnError(stage.Forward))...))
			})
			if len(pairs) != n {
				t.Fatalf("%d pairs, want %d", len(pairs), n)
			}
			for _, p := range pairs {
				var e *stage.Error
				if !errors.As(p.err, &e) || e.Attempts != 4 {
					t.Errorf("pair %v: want an *Error of Attempts 4", p.err)
					continue
				}
				var pe *stage.PanicError
				if isPanic := errors.As(e, &pe); isPanic != (e.Index%2 == 0) {
					t.Errorf("item %d: PanicError %v", e.Index, isPanic)
				}
			}
			for i := range calls {
				if c := calls[i].Load(); c != 4 {
					t.Errorf("item %d: %d calls, want 4", i, c)
				}
			}
			if p := preds.Load(); p != n*3 {
				t.Errorf("the predicate was called %d times, want %d (attempts-1 per item)", p, n*3)
			}
			if p := predPanics.Load(); p != 3*3 {
				t.Errorf("the predicate saw %d *PanicError, want 9", p)
			}
		})
	}
}

// TestReview87RetryIfPredicatePanics attacks:
//
//	RetryIf: "if it panics, the item fails at once with that panic's
//	*PanicError, not retried."
//	and, with a plain Retry, a panic in the function is not retried.
func TestReview87RetryIfPredicatePanics(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			var calls atomic.Int32
			var preds atomic.Int32
			pred := func(err error) bool {
				preds.Add(1)
				panic("r87 predicate panic")
			}
			f := func(ctx context.Context, x int) (int, error) {
				calls.Add(1)
				return 0, errR87Fail
			}
			var pairs []r87pair[int]
			runcheck.Run(t, "predicate panic", func() {
				pairs = r87all(context.Background(), stage.Map(source.Slice([]int{0}), f,
					m.opts(stage.RetryIf(5, 0, pred), stage.Timeout(time.Minute), stage.OnError(stage.Forward))...))
			})
			if len(pairs) != 1 {
				t.Fatalf("pairs %v", pairs)
			}
			var e *stage.Error
			var pe *stage.PanicError
			if !errors.As(pairs[0].err, &e) || !errors.As(pairs[0].err, &pe) || pe.Value != "r87 predicate panic" {
				t.Fatalf("err = %v, want an *Error wrapping the predicate's *PanicError", pairs[0].err)
			}
			if calls.Load() != 1 || preds.Load() != 1 || e.Attempts != 1 {
				t.Errorf("calls %d, predicate calls %d, Attempts %d; want 1, 1, 1", calls.Load(), preds.Load(), e.Attempts)
			}

			// A panic in a timed, retried function is not retried.
			calls.Store(0)
			g := func(ctx context.Context, x int) (int, error) {
				calls.Add(1)
				panic(errR87Fail)
			}
			runcheck.Run(t, "function panic", func() {
				pairs = r87all(context.Background(), stage.Map(source.Slice([]int{0}), g,
					m.opts(stage.Retry(5, 0), stage.Timeout(time.Minute), stage.OnError(stage.Forward))...))
			})
			if len(pairs) != 1 || !errors.As(pairs[0].err, &e) || !errors.As(pairs[0].err, &pe) || !errors.Is(pairs[0].err, errR87Fail) {
				t.Fatalf("pairs %v, want one *Error wrapping a *PanicError whose value is errR87Fail", pairs)
			}
			if calls.Load() != 1 || e.Attempts != 1 {
				t.Errorf("calls %d, Attempts %d; want 1, 1 (a panic is not retried)", calls.Load(), e.Attempts)
			}
		})
	}
}

// TestReview87NoTokenUnderRetry attacks:
//
//	SharedRateLimit: "Each attempt takes a token of l before it starts ...
//	if l can never give one (... its limit is 0 and its burst spent), the
//	attempt fails with ErrNoToken instead of waiting for ever."
//	ErrNoToken: "Under Retry it is an error like any other: each refused
//	attempt counts as one."
//	Error.Attempts: "A try that failed without calling the function (...
//	a limiter's ErrNoToken) counts as one."
//
// A limiter of limit 0 and burst 2 gives two tokens, then none: the item's
// first two attempts call the function, the next three are refused.
func TestReview87NoTokenUnderRetry(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			var calls atomic.Int32
			var predErrs []error
			var mu sync.Mutex
			pred := func(err error) bool {
				mu.Lock()
				predErrs = append(predErrs, err)
				mu.Unlock()
				return true
			}
			f := func(ctx context.Context, x int) (int, error) {
				calls.Add(1)
				return 0, errR87Fail
			}
			lim := rate.NewLimiter(0, 2)
			var pairs []r87pair[int]
			runcheck.Run(t, "no token", func() {
				pairs = r87all(context.Background(), stage.Map(source.Slice([]int{0}), f,
					m.opts(stage.SharedRateLimit(lim), stage.RetryIf(5, 0, pred), stage.Timeout(time.Minute), stage.OnError(stage.Forward))...))
			})
			if len(pairs) != 1 {
				t.Fatalf("pairs %v", pairs)
			}
			var e *stage.Error
			if !errors.As(pairs[0].err, &e) || !errors.Is(e, stage.ErrNoToken) || e.Attempts != 5 {
				t.Fatalf("err = %v (%#v), want ErrNoToken after 5 attempts", pairs[0].err, e)
			}
			if c := calls.Load(); c != 2 {
				t.Errorf("%d calls, want 2 (two tokens)", c)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(predErrs) != 4 || !errors.Is(predErrs[0], errR87Fail) || !errors.Is(predErrs[1], errR87Fail) ||
				!errors.Is(predErrs[2], stage.ErrNoToken) || !errors.Is(predErrs[3], stage.ErrNoToken) {
				t.Errorf("the predicate saw %v, want fail, fail, ErrNoToken, ErrNoToken", predErrs)
			}
		})
	}
}

// TestReview87NilTaskUnderRetry attacks:
//
//	ErrNilTask: "Under Retry it is an error like any other: each try counts
//	as an attempt."
//	Concurrent: "in task order with Ordered"
func TestReview87NilTaskUnderRetry(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			var preds atomic.Int32
			pred := func(err error) bool {
				if errors.Is(err, stage.ErrNilTask) {
					preds.Add(1)
				}
				return true
			}
			tasks := []func(context.Context) (int, error){
				func(context.Context) (int, error) { return 0, nil },
				nil,
				func(context.Context) (int, error) { return 2, nil },
			}
			var pairs []r87pair[int]
			runcheck.Run(t, "nil task", func() {
				pairs = r87all(context.Background(), stage.Concurrent(source.Slice(tasks),
					m.opts(stage.RetryIf(3, 0, pred), stage.Timeout(time.Minute), stage.OnError(stage.Forward))...))
			})
			if len(pairs) != 3 {
				t.Fatalf("pairs %v", pairs)
			}
			nerr := 0
			for i, p := range pairs {
				if p.err == nil {
					continue
				}
				nerr++
				var e *stage.Error
				if !errors.As(p.err, &e) || !errors.Is(e, stage.ErrNilTask) || e.Attempts != 3 || e.Index != 1 {
					t.Errorf("err = %v (%#v), want ErrNilTask at index 1 after 3 attempts", p.err, e)
				}
				if (m.ordered || m.workers == 1) && i != 1 {
					t.Errorf("the nil task's error is pair %d, want 1", i)
				}
			}
			if nerr != 1 || preds.Load() != 2 {
				t.Errorf("%d errors, predicate saw ErrNilTask %d times; want 1, 2", nerr, preds.Load())
			}
		})
	}
}

// TestReview87StageErrStopUnderRetry attacks:
//
//	IsStop: "Those are failures: some run reported them (a stage's
//	function, a source or a Handle function returned ErrStop)"
//	Handle: "one that IsStop would take for a stop, such as ErrStop, comes
//	wrapped in an *Error of the item's stage and index"
func TestReview87StageErrStopUnderRetry(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			var calls atomic.Int32
			f := func(ctx context.Context, x int) (int, error) {
				calls.Add(1)
				return 0, stage.ErrStop
			}
			var err error
			runcheck.Run(t, "stage ErrStop", func() {
				_, err = sink.Slice(context.Background(), stage.Map(source.Slice([]int{0}), f,
					m.opts(stage.Name("es"), stage.Retry(3, 0), stage.Timeout(time.Minute))...))
			})
			var e *stage.Error
			if err == nil || !errors.As(err, &e) || e.Attempts != 3 || !errors.Is(err, stage.ErrStop) || stage.IsStop(err) {
				t.Errorf("err = %v, want a failure: an *Error wrapping ErrStop after 3 attempts", err)
			}
			if calls.Load() != 3 {
				t.Errorf("%d calls, want 3", calls.Load())
			}

			// A handler that returns ErrStop fails the run with an *Error
			// of the item's stage and index.
			h := func(context.Context, *stage.Error) error { return stage.ErrStop }
			g := func(ctx context.Context, x int) (int, error) {
				if x == 2 {
					return 0, errR87Fail
				}
				return x, nil
			}
			runcheck.Run(t, "handler ErrStop", func() {
				err = sink.ForEach(context.Background(), stage.Map(source.Slice(ints(4)), g,
					m.opts(stage.Name("hs"), stage.Retry(2, 0), stage.OnError(stage.Handle(h)))...),
					func(context.Context, int) error { return nil })
			})
			if err == nil || !errors.As(err, &e) || e.Stage != "hs" || e.Index != 2 || stage.IsStop(err) {
				t.Errorf("err = %v, want an *Error of stage hs index 2 wrapping ErrStop", err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// KeyBy × Retry × Timeout

// TestReview87KeyByRetryOneAtATime attacks:
//
//	KeyBy: "items for which key returns the same value are processed one at
//	a time, in the order the stage takes them from its input, while items
//	of different keys run in parallel. The stage's other options hold: at
//	most Workers(n) calls at once"
//	Retry: "The wait holds the worker"
//	Source: "The run calls next ... never concurrently"
//
// Under Retry, an item's attempts must not interleave with another item of
// its key: an item is processed (all its attempts) before the next of its
// key starts. The source is a Func, so the order the stage takes items in is
// the order of next's calls.
func TestReview87KeyByRetryOneAtATime(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			const n, keys = 40, 3
			var next atomic.Int32
			src := source.Func(func(ctx context.Context) (int, error) {
				i := int(next.Add(1)) - 1
				if i >= n {
					return 0, io.EOF
				}
				return i, nil
			})
			var mu sync.Mutex
			var problems []string
			busy := map[int]int{}     // key -> item running (or -1)
			attempts := map[int]int{} // item -> attempts so far
			lastStart := map[int]int{}
			for k := range keys {
				busy[k] = -1
				lastStart[k] = -1
			}
			var running, most atomic.Int32
			f := func(ctx context.Context, x int) (int, error) {
				r := running.Add(1)
				defer running.Add(-1)
				for {
					mm := most.Load()
					if r <= mm || most.CompareAndSwap(mm, r) {
						break
					}
				}
				k := x % keys
				mu.Lock()
				attempts[x]++
				a := attempts[x]
				switch {
				case busy[k] == -1:
					if a != 1 {
						problems = append(problems, fmt.Sprintf("item %d attempt %d began after its key was freed", x, a))
					}
					if x < lastStart[k] {
						problems = append(problems, fmt.Sprintf("key %d: item %d started after item %d", k, x, lastStart[k]))
					}
					lastStart[k] = x
					busy[k] = x
				case busy[k] != x:
					problems = append(problems, fmt.Sprintf("key %d: item %d attempt %d while item %d holds the key", k, x, a, busy[k]))
				}
				mu.Unlock()
				runtime.Gosched()
				fail := x%4 != 0 && a < 3 // most items fail twice
				mu.Lock()
				if !fail {
					busy[k] = -1
				}
				mu.Unlock()
				if fail {
					return 0, errR87Fail
				}
				return x, nil
			}
			var got []int
			var err error
			runcheck.Run(t, "keyby retry", func() {
				got, err = sink.Slice(context.Background(), stage.Map(src, f,
					m.opts(stage.KeyBy(func(x int) int { return x % keys }), stage.Retry(3, 0), stage.Timeout(time.Minute))...))
			})
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range problems {
				t.Error(p)
			}
			if m.ordered || m.workers == 1 {
				if !slices.Equal(got, ints(n)) {
					t.Errorf("got %v, want input order", got)
				}
			} else {
				slices.Sort(got)
				if !slices.Equal(got, ints(n)) {
					t.Errorf("got %v", got)
				}
			}
			if m.workers > 0 && int(most.Load()) > m.workers {
				t.Errorf("%d calls at once, want at most %d", most.Load(), m.workers)
			}
		})
	}
}

// TestReview87KeyPanicUnderRetry attacks:
//
//	KeyBy: "A panic in key fails the item as a panic in the stage's function
//	does: an *Error wrapping a *PanicError goes to the stage's policy (the
//	item's function is not called)."
//	Error.Attempts: "0 when its KeyBy key function panicked, so that it was
//	never tried"
//	Watcher.Received: "(or, when its KeyBy key function panicked, to hand
//	it to the policy without a call: Finished then gets its *Error, of
//	Attempts 0)"
func TestReview87KeyPanicUnderRetry(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			var calls, preds atomic.Int32
			key := func(x int) int {
				if x == 2 {
					panic("r87 key panic")
				}
				return x % 2
			}
			f := func(ctx context.Context, x int) (int, error) {
				calls.Add(1)
				return x, nil
			}
			pred := func(error) bool { preds.Add(1); return true }
			obs := &r87obs{}
			var pairs []r87pair[int]
			runcheck.Run(t, "key panic", func() {
				pairs = r87all(stage.Observe(context.Background(), obs), stage.Map(source.Slice(ints(5)), f,
					m.opts(stage.Name("kp"), stage.KeyBy(key), stage.RetryIf(3, 0, pred), stage.Timeout(time.Minute), stage.OnError(stage.Forward))...))
			})
			if len(pairs) != 5 {
				t.Fatalf("pairs %v", pairs)
			}
			for i, p := range pairs {
				if p.err == nil {
					continue
				}
				var e *stage.Error
				var pe *stage.PanicError
				if !errors.As(p.err, &e) || !errors.As(p.err, &pe) || e.Attempts != 0 || e.Index != 2 || pe.Value != "r87 key panic" {
					t.Errorf("pair %d: %v (%#v), want the key panic of item 2, Attempts 0", i, p.err, e)
				}
				if (m.ordered || m.workers == 1) && i != 2 {
					t.Errorf("the key panic's error is pair %d, want 2", i)
				}
			}
			if calls.Load() != 4 || preds.Load() != 0 {
				t.Errorf("calls %d, predicate calls %d; want 4, 0", calls.Load(), preds.Load())
			}
			w := obs.get("kp")
			if w.received != 5 || w.finished != 5 || len(w.errs) != 1 {
				t.Errorf("watcher received %d finished %d errs %v; want 5 5 one", w.received, w.finished, w.errs)
			} else if e, ok := w.errs[0].(*stage.Error); !ok || e.Attempts != 0 {
				t.Errorf("watcher err %#v, want *Error of Attempts 0", w.errs[0])
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Apply, Batch, Tee, Merge downstream of Ordered + Retry

// TestReview87OrderedApplyRetryOutputsInPlace attacks:
//
//	Retry: "Outputs that a failed attempt emitted stay emitted"
//	Apply: "Outputs emitted before an error still go downstream."; "With
//	Ordered, an item's outputs wait in memory until the items before it
//	have left"
//	Ordered: "(Forward keeps the failure in its place)"
//
// Item i emits "i.a" in each attempt; items with i%3==0 fail every attempt,
// items with i%3==1 fail the first, the rest succeed at once. The exact
// sequence of pairs is known.
func TestReview87OrderedApplyRetryOutputsInPlace(t *testing.T) {
	for _, fan := range []int{1, 9} {
		r87orderedApplyRetry(t, fan)
	}
}

func r87orderedApplyRetry(t *testing.T, fan int) {
	for _, m := range r87modes {
		if !m.ordered && m.workers != 1 {
			continue
		}
		t.Run(fmt.Sprintf("fan=%d/%v", fan, m), func(t *testing.T) {
			const n = 12
			var att [n]atomic.Int32
			f := func(ctx context.Context, x int, emit func(string) bool) error {
				a := att[x].Add(1)
				for j := range fan {
					if !emit(fmt.Sprintf("%d.%d.%d", x, a, j)) {
						return ctx.Err()
					}
				}
				switch {
				case x%3 == 0:
					return errR87Fail
				case x%3 == 1 && a == 1:
					return errR87Fail
				}
				return nil
			}
			var pairs []r87pair[string]
			runcheck.Run(t, "apply", func() {
				pairs = r87all(context.Background(), stage.Apply(source.Slice(ints(n)), f,
					m.opts(stage.Retry(3, 0), stage.Timeout(time.Minute), stage.OnError(stage.Forward))...))
			})
			var want []string
			outs := func(x, a int) {
				for j := range fan {
					want = append(want, fmt.Sprintf("%d.%d.%d", x, a, j))
				}
			}
			for x := range n {
				switch x % 3 {
				case 0:
					outs(x, 1)
					outs(x, 2)
					outs(x, 3)
					want = append(want, fmt.Sprintf("err%d", x))
				case 1:
					outs(x, 1)
					outs(x, 2)
				default:
					outs(x, 1)
				}
			}
			var got []string
			for _, p := range pairs {
				if p.err != nil {
					var e *stage.Error
					if !errors.As(p.err, &e) || e.Attempts != 3 {
						t.Errorf("err %v, want *Error Attempts 3", p.err)
						continue
					}
					got = append(got, fmt.Sprintf("err%d", e.Index))
					continue
				}
				got = append(got, p.v)
			}
			if !slices.Equal(got, want) {
				t.Errorf("got  %v\nwant %v", got, want)
			}
		})
	}
}

// TestReview87BatchAfterOrderedRetryForward attacks:
//
//	Batch: "groups the items of in into slices of up to size items, in input
//	order ... A forwarded error is a batch boundary: the batch before it
//	leaves first, then the error, in order."
//	README: "input order with Ordered() or with Workers(1), kept across
//	stages that all keep it"
func TestReview87BatchAfterOrderedRetryForward(t *testing.T) {
	for _, m := range r87modes {
		if !m.ordered && m.workers != 1 {
			continue
		}
		t.Run(m.String(), func(t *testing.T) {
			const n = 20
			var att [n]atomic.Int32
			f := func(ctx context.Context, x int) (int, error) {
				a := att[x].Add(1)
				if x%5 == 3 {
					return 0, r87blockUntilDone(ctx) // times out every attempt
				}
				if x%2 == 0 && a == 1 {
					return 0, errR87Fail
				}
				return x, nil
			}
			mapped := stage.Map(source.Slice(ints(n)), f,
				m.opts(stage.Retry(2, 0), stage.Timeout(time.Millisecond), stage.OnError(stage.Forward))...)
			var pairs []r87pair[[]int]
			runcheck.Run(t, "batch", func() {
				pairs = r87all(context.Background(), stage.Batch(mapped, 3, 0))
			})
			var got []string
			for _, p := range pairs {
				if p.err != nil {
					var e *stage.Error
					if !errors.As(p.err, &e) || !errors.Is(e, context.DeadlineExceeded) || e.Attempts != 2 {
						t.Errorf("err %v", p.err)
					}
					got = append(got, fmt.Sprintf("err%d", e.Index))
					continue
				}
				got = append(got, fmt.Sprint(p.v))
			}
			// 0..2 | err3 | 4..7 in batches of 3: [4 5 6] [7] | err8 | [9 10 11] [12] | err13 ...
			var want []string
			var cur []int
			flush := func() {
				if len(cur) > 0 {
					want = append(want, fmt.Sprint(cur))
					cur = nil
				}
			}
			for x := range n {
				if x%5 == 3 {
					flush()
					want = append(want, fmt.Sprintf("err%d", x))
					continue
				}
				cur = append(cur, x)
				if len(cur) == 3 {
					flush()
				}
			}
			flush()
			if !slices.Equal(got, want) {
				t.Errorf("got  %v\nwant %v", got, want)
			}
		})
	}
}

// TestReview87TeeMergeAfterRetryForward attacks:
//
//	Tee: "n streams that each see every item of in, in the order of in: the
//	values themselves ... and every forwarded error (so each branch reports
//	it)"
//	ForwardedError: "Count int // forwarded errors the sink received"
//	Stream.Len: "a Filter, FlatMap, Apply, Batch, Merge or Tee makes it
//	unknown"
func TestReview87TeeMergeAfterRetryForward(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			const n = 15
			f := func(ctx context.Context, x int) (int, error) {
				if x%4 == 1 {
					return 0, r87blockUntilDone(ctx)
				}
				return x, nil
			}
			mapped := stage.Map(source.Slice(ints(n)), f,
				m.opts(stage.Retry(2, 0), stage.Timeout(time.Millisecond), stage.OnError(stage.Forward))...)
			b := stage.Tee(mapped, 2)
			var mu sync.Mutex
			var orders [2][]int
			mk := func(i int) stage.Stream[int] {
				return stage.Map(b[i], func(_ context.Context, v int) (int, error) {
					mu.Lock()
					orders[i] = append(orders[i], v)
					mu.Unlock()
					return 1000*i + v, nil
				}, stage.Workers(1))
			}
			merged := stage.Merge(mk(0), mk(1))
			if merged.Len() != -1 || b[0].Len() != -1 {
				t.Errorf("Len: merged %d, branch %d, want -1", merged.Len(), b[0].Len())
			}
			var got []int
			var err error
			runcheck.Run(t, "tee", func() {
				got, err = sink.Slice(context.Background(), merged)
			})
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != 2*4 {
				t.Fatalf("err = %v, want a ForwardedError of count 8 (4 failures, each in both branches)", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v does not wrap DeadlineExceeded", err)
			}
			if len(got) != 2*(n-4) {
				t.Errorf("got %d values, want %d", len(got), 2*(n-4))
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(orders[0], orders[1]) {
				t.Errorf("the branches saw different orders: %v and %v", orders[0], orders[1])
			}
			if m.ordered || m.workers == 1 {
				var want []int
				for x := range n {
					if x%4 != 1 {
						want = append(want, x)
					}
				}
				if !slices.Equal(orders[0], want) {
					t.Errorf("branch 0 saw %v, want input order %v", orders[0], want)
				}
			}
		})
	}
}

// TestReview87ForwardedIndexAcrossOrderedStages attacks:
//
//	Error.Index: "the item's 0-based position in the stage's input ...
//	Forwarded errors count as items."
//	Watcher.Received: "Forwarded errors, which pass through without a call,
//	are not reported."
//	Info.Total: "Forwarded errors count"
//	Map: "forwarded errors pass through without a call"
func TestReview87ForwardedIndexAcrossOrderedStages(t *testing.T) {
	for _, m := range r87modes {
		if !m.ordered && m.workers != 1 {
			continue
		}
		t.Run(m.String(), func(t *testing.T) {
			const n = 18
			var calls2 atomic.Int32
			s1 := stage.Map(source.Slice(ints(n)), func(ctx context.Context, x int) (int, error) {
				if x%3 == 0 {
					return 0, r87blockUntilDone(ctx)
				}
				return x, nil
			}, m.opts(stage.Name("s1"), stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.OnError(stage.Forward))...)
			s2 := stage.Map(s1, func(ctx context.Context, x int) (int, error) {
				calls2.Add(1)
				if x%3 == 0 {
					return 0, fmt.Errorf("s2 got a value of s1's failures: %d", x)
				}
				if x%4 == 1 {
					return 0, errR87Fail
				}
				return x, nil
			}, m.opts(stage.Name("s2"), stage.Retry(3, 0), stage.Timeout(time.Minute), stage.OnError(stage.Forward))...)
			st := &stage.Stats{}
			var pairs []r87pair[int]
			runcheck.Run(t, "two stages", func() {
				pairs = r87all(stage.Observe(context.Background(), st), s2)
			})
			if len(pairs) != n {
				t.Fatalf("%d pairs, want %d", len(pairs), n)
			}
			for i, p := range pairs {
				var e *stage.Error
				switch {
				case i%3 == 0:
					if !errors.As(p.err, &e) || e.Stage != "s1" || e.Index != i || e.Attempts != 2 {
						t.Errorf("pair %d: %v, want s1's error of index %d", i, p.err, i)
					}
				case i%4 == 1:
					if !errors.As(p.err, &e) || e.Stage != "s2" || e.Index != i || e.Input != i || e.Attempts != 3 || !errors.Is(e, errR87Fail) {
						t.Errorf("pair %d: %v (%#v), want s2's error of index %d (forwarded errors count as items)", i, p.err, e, i)
					}
				default:
					if p.err != nil || p.v != i {
						t.Errorf("pair %d: %d, %v; want %d", i, p.v, p.err, i)
					}
				}
			}
			recv, fails := 0, 0
			for i := range n {
				if i%3 != 0 {
					recv++
					if i%4 == 1 {
						fails++
					}
				}
			}
			c2, _ := st.Get("s2")
			if int(c2.Received) != recv || c2.Total != n || int(c2.Failed) != fails {
				t.Errorf("s2 Stats = %+v, want received %d (forwarded errors not received), total %d, failed %d", c2, recv, n, fails)
			}
			if int(calls2.Load()) != (recv-fails)+3*fails {
				t.Errorf("s2 calls %d, want %d", calls2.Load(), (recv-fails)+3*fails)
			}
		})
	}
}

// TestReview87OrderedFailFastTimeoutPrefix attacks:
//
//	Ordered: "Under FailFast a failure ends the run when its call fails,
//	not at its turn: the outputs of earlier items still waiting for their
//	turn, or still being made, are not delivered"
//	FailFast: "how many of the items before the failed one reached the sink
//	depends on timing"
//
// In an Ordered stage no item after the failed one can be delivered, and
// what is delivered is a prefix in input order. The failed call is ended by
// its Timeout after its retries, so the error says DeadlineExceeded.
func TestReview87OrderedFailFastTimeoutPrefix(t *testing.T) {
	for _, m := range r87modes {
		if !m.ordered {
			continue
		}
		for _, k := range []int{0, 3, 7} {
			t.Run(fmt.Sprintf("%v/k=%d", m, k), func(t *testing.T) {
				const n = 12
				f := func(ctx context.Context, x int) (int, error) {
					if x == k {
						return 0, r87blockUntilDone(ctx)
					}
					return x, nil
				}
				var got []int
				var err error
				runcheck.Run(t, "ordered failfast", func() {
					got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(n)), f,
						m.opts(stage.Timeout(time.Millisecond), stage.Retry(2, 0))...))
				})
				var e *stage.Error
				if !errors.As(err, &e) || e.Index != k || e.Attempts != 2 || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want item %d's *Error, DeadlineExceeded, Attempts 2", err, k)
				}
				if len(got) > k || !slices.Equal(got, ints(len(got))) {
					t.Errorf("got %v: want a prefix of 0..%d", got, k-1)
				}
			})
		}
	}
}

// TestReview87FirstOrderedTimedOutForward attacks:
//
//	First: "(zero, false, err) when the first item is a forwarded error"
//	Ordered: "Ordered makes the stage emit its outputs in the order of its
//	input."
func TestReview87FirstOrderedTimedOutForward(t *testing.T) {
	for _, m := range r87modes {
		if !m.ordered {
			continue
		}
		t.Run(m.String(), func(t *testing.T) {
			f := func(ctx context.Context, x int) (int, error) {
				if x == 0 {
					return 0, r87blockUntilDone(ctx)
				}
				return x, nil
			}
			var v int
			var ok bool
			var err error
			runcheck.Run(t, "first forward", func() {
				v, ok, err = sink.First(context.Background(), stage.Map(source.Slice(ints(6)), f,
					m.opts(stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.OnError(stage.Forward))...))
			})
			var e *stage.Error
			if ok || v != 0 || !errors.As(err, &e) || e.Index != 0 || e.Attempts != 2 || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("First = %d, %v, %v; want 0, false, item 0's *Error", v, ok, err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Until: drain during a backoff or a timed call

// TestReview87UntilDrainDuringRetry attacks:
//
//	Until: "Then the sources upstream of Until take no new item ..., while
//	every item they already produced goes on through the stages: calls in
//	flight finish, Batch flushes its partial batch, and the sink returns nil"
//	Source: "[the ctx of next] also ends ... under Until when the stop
//	context is done"
//
// Item 0 fails its first attempt; once the source waits in next for a
// second item, stop is done; item 0's second attempt waits until the source
// has seen the drain. The item must then be delivered, its ctx live, and the
// run end with nil. Until sits before the Map or after it.
func TestReview87UntilDrainDuringRetry(t *testing.T) {
	for _, where := range []string{"before", "after"} {
		for _, m := range r87modes {
			if m.workers == 1 {
				continue // the stage's one worker would wait for its own next
			}
			t.Run(fmt.Sprintf("%s/%v", where, m), func(t *testing.T) {
				stop, drain := context.WithCancel(context.Background())
				defer drain()
				failed := make(chan struct{})
				nextWaits := make(chan struct{})
				srcSawStop := make(chan struct{})
				var handed atomic.Int32
				src := source.Func(func(ctx context.Context) (int, error) {
					if i := handed.Add(1); i == 1 {
						return 0, nil
					}
					if handed.Load() == 2 {
						close(nextWaits)
					}
					<-ctx.Done()
					if handed.Load() == 2 {
						close(srcSawStop)
					}
					return 0, ctx.Err()
				})
				var att atomic.Int32
				var bad atomic.Value
				f := func(ctx context.Context, x int) (int, error) {
					a := att.Add(1)
					if a == 1 {
						close(failed)
						return 0, errR87Fail
					}
					select {
					case <-srcSawStop:
					case <-ctx.Done():
						bad.Store(fmt.Sprintf("attempt %d: ctx ended (%v) during the drain", a, context.Cause(ctx)))
						return 0, ctx.Err()
					}
					if ctx.Err() != nil {
						bad.Store("the call's ctx is done during a drain")
					}
					return 42, nil
				}
				opts := m.opts(stage.Retry(3, 0), stage.Timeout(time.Minute))
				var s stage.Stream[int]
				if where == "before" {
					s = stage.Map(stage.Until(src, stop), f, opts...)
				} else {
					s = stage.Until(stage.Map(src, f, opts...), stop)
				}
				var got [][]int
				var err error
				runcheck.Run(t, "drain", func() {
					go func() {
						<-failed
						<-nextWaits // the source waits for a second item
						drain()
					}()
					got, err = sink.Slice(context.Background(), stage.Batch(s, 10, 0))
				})
				if v := bad.Load(); v != nil {
					t.Error(v)
				}
				if err != nil || len(got) != 1 || !slices.Equal(got[0], []int{42}) {
					t.Errorf("got %v, %v; want [[42]], nil: the item taken before the drain is not lost", got, err)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// Stats, latency, Logger under retries

// TestReview87StatsLatencyCountsBackoff attacks:
//
//	Watcher.Finished: "latency, measured from Received to the end of the
//	last attempt: the waits for RateLimit tokens, the backoff between
//	attempts ... count"
//	Retry: "Before the n-th retry the worker waits a random duration between
//	d/2 and d, where d = backoff·2^(n-1)"
//	Counts.Latency: "the calls' total duration"
//
// Retry(3, 20ms): the two waits last at least 10ms + 20ms, so the item's
// latency is at least 30ms (a lower bound only).
func TestReview87StatsLatencyCountsBackoff(t *testing.T) {
	for _, m := range []r87mode{{1, false, 0}, {3, true, 0}, {2, false, 1}} {
		t.Run(m.String(), func(t *testing.T) {
			var att atomic.Int32
			f := func(ctx context.Context, x int) (int, error) {
				if att.Add(1) < 3 {
					return 0, errR87Fail
				}
				return x, nil
			}
			st := &stage.Stats{}
			obs := &r87obs{}
			var buf strings.Builder
			var bmu sync.Mutex
			lg := slog.New(slog.NewTextHandler(&r87lockedWriter{w: &buf, mu: &bmu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			ctx := stage.Observe(stage.Observe(stage.Observe(context.Background(), st), obs), stage.Logger(lg))
			var err error
			runcheck.Run(t, "latency", func() {
				_, err = sink.Slice(ctx, stage.Map(source.Slice([]int{5}), f, m.opts(stage.Name("lat"), stage.Retry(3, 20*time.Millisecond))...))
			})
			if err != nil {
				t.Fatal(err)
			}
			c, _ := st.Get("lat")
			if c.Received != 1 || c.Finished != 1 || c.Failed != 0 || c.Latency < 30*time.Millisecond {
				t.Errorf("Stats = %+v, want one item, no failure, latency >= 30ms (the backoffs)", c)
			}
			w := obs.get("lat")
			if len(w.lat) != 1 || w.lat[0] < 30*time.Millisecond {
				t.Errorf("watcher latencies %v, want one of at least 30ms", w.lat)
			}
			bmu.Lock()
			out := buf.String()
			bmu.Unlock()
			if strings.Contains(out, "item failed") {
				t.Errorf("Logger logged a failure for an item that succeeded on retry:\n%s", out)
			}
			if !strings.Contains(out, "received=1") || !strings.Contains(out, "finished=1") || !strings.Contains(out, "failed=0") {
				t.Errorf("Logger's close record lacks the counts:\n%s", out)
			}
		})
	}
}

type r87lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *r87lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestReview87LoggerAttemptsOfFailure attacks:
//
//	Logger: "each failed item (Warn, "sluice: item failed", with "index",
//	"attempts" and "err"; a call ended by the run's cancellation is not a
//	failure)"
func TestReview87LoggerAttemptsOfFailure(t *testing.T) {
	var buf strings.Builder
	var bmu sync.Mutex
	lg := slog.New(slog.NewTextHandler(&r87lockedWriter{w: &buf, mu: &bmu}, nil))
	f := func(ctx context.Context, x int) (int, error) {
		if x == 1 {
			return 0, r87blockUntilDone(ctx)
		}
		return x, nil
	}
	var err error
	runcheck.Run(t, "logger", func() {
		_, err = sink.Slice(stage.Observe(context.Background(), stage.Logger(lg)), stage.Map(source.Slice(ints(3)), f,
			stage.Name("lg"), stage.Workers(2), stage.Timeout(time.Millisecond), stage.Retry(4, 0), stage.OnError(stage.Forward)))
	})
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 1 {
		t.Fatalf("err = %v", err)
	}
	bmu.Lock()
	out := buf.String()
	bmu.Unlock()
	if strings.Count(out, "item failed") != 1 || !strings.Contains(out, "index=1") || !strings.Contains(out, "attempts=4") || !strings.Contains(out, "failed=1") {
		t.Errorf("log:\n%s\nwant one failure of index 1 with attempts=4, and failed=1 at close", out)
	}
}

// ---------------------------------------------------------------------------
// Workers bound under Retry

// TestReview87BackoffHoldsWorker attacks:
//
//	Retry: "The wait holds the worker"
//	Workers: "at most n"
//
// Two workers, two items that fail into an hour's backoff: no third call may
// start while they wait; the caller then cancels.
func TestReview87BackoffHoldsWorker(t *testing.T) {
	for _, m := range []r87mode{{2, false, 0}, {2, true, 0}, {2, false, 1}, {2, true, 3}} {
		t.Run(m.String(), func(t *testing.T) {
			var calls [5]atomic.Int32
			var waiting atomic.Int32
			both := make(chan struct{})
			f := func(ctx context.Context, x int) (int, error) {
				calls[x].Add(1)
				if x < 2 {
					if waiting.Add(1) == 2 {
						close(both)
					}
					return 0, errR87Fail
				}
				return x, nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var err error
			runcheck.Run(t, "held", func() {
				go func() {
					<-both
					// Give a wrongly freed worker every chance to start item 2
					// (a regression check: a correct stage passes whatever
					// the scheduling).
					for range 200 {
						runtime.Gosched()
					}
					cancel()
				}()
				_, err = sink.Slice(ctx, stage.Map(source.Slice(ints(5)), f, m.opts(stage.Retry(3, time.Hour))...))
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want Canceled", err)
			}
			for i := 2; i < 5; i++ {
				if c := calls[i].Load(); c != 0 {
					t.Errorf("item %d was called while both workers waited in backoff", i)
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Acknowledgements under Retry, Timeout, KeyBy, Ordered

type r87ack struct {
	mu    *sync.Mutex
	log   map[int][]error
	index int
}

func (a r87ack) Done(err error) {
	a.mu.Lock()
	a.log[a.index] = append(a.log[a.index], err)
	a.mu.Unlock()
}

// TestReview87AckRetryTimeoutKeyBy attacks:
//
//	Ack: "Done is called at most once per item: Done(nil) when the item's
//	way through the pipeline has ended well: the sink committed it ...;
//	or it was dropped on purpose: ... a Handle policy that accepted its
//	failure. ... Done(err) as soon as its way failed, with the first error:
//	a forwarded *Error it led to reached the sink"
func TestReview87AckRetryTimeoutKeyBy(t *testing.T) {
	for _, pol := range []string{"forward", "handle"} {
		for _, m := range r87modes {
			t.Run(fmt.Sprintf("%s/%v", pol, m), func(t *testing.T) {
				const n = 16
				var mu sync.Mutex
				log := map[int][]error{}
				src := stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
					i := 0
					return func(ctx context.Context) (int, stage.Ack, error) {
						if i >= n {
							return 0, nil, io.EOF
						}
						i++
						return i - 1, r87ack{mu: &mu, log: log, index: i - 1}, nil
					}, nil
				})
				var att [n]atomic.Int32
				f := func(ctx context.Context, x int) (int, error) {
					a := att[x].Add(1)
					switch {
					case x%4 == 0:
						return 0, r87blockUntilDone(ctx) // fails every attempt
					case x%4 == 1 && a == 1:
						return 0, errR87Fail // succeeds on retry
					}
					return x, nil
				}
				policy := stage.Forward
				if pol == "handle" {
					policy = stage.Handle(func(context.Context, *stage.Error) error { return nil })
				}
				var got []int
				var err error
				runcheck.Run(t, "acks", func() {
					got, err = sink.Slice(context.Background(), stage.Map(src, f,
						m.opts(stage.KeyBy(func(x int) int { return x % 3 }), stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.OnError(policy))...))
				})
				var fe *sink.ForwardedError
				if pol == "forward" && (!errors.As(err, &fe) || fe.Count != n/4) {
					t.Fatalf("err = %v, want a ForwardedError of %d", err, n/4)
				}
				if pol == "handle" && err != nil {
					t.Fatalf("err = %v", err)
				}
				if len(got) != n-n/4 {
					t.Errorf("got %v", got)
				}
				mu.Lock()
				defer mu.Unlock()
				for i := range n {
					l := log[i]
					if len(l) != 1 {
						t.Errorf("item %d: Done called %d times (%v), want once", i, len(l), l)
						continue
					}
					var e *stage.Error
					switch {
					case i%4 == 0 && pol == "forward":
						if !errors.As(l[0], &e) || e.Index != i || e.Attempts != 2 {
							t.Errorf("item %d: Done(%v), want its forwarded *Error", i, l[0])
						}
					default:
						if l[0] != nil {
							t.Errorf("item %d: Done(%v), want nil", i, l[0])
						}
					}
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// Goexit in retried/timed calls, predicates, key functions, handlers
// (child process: a Goexit that the run mishandles may hang it).

// TestReview87GoexitInRetriedCalls attacks:
//
//	README: "A t.Fatal (runtime.Goexit) in a function that ran on a
//	goroutine of the run fails it with stage.ErrGoexit instead of losing
//	the item (unless it had failed, been cancelled or been stopped before);
//	observers still see that call end, and every source is still stopped."
//	ErrGoexit: "Buffer(1) keeps a stage's calls on goroutines of its own"
//	Handle: "they run in the stage's worker goroutines"
//	RetryIf: "retryable is called from the stage's workers"
//
// Every policy (Forward too) must fail the run with ErrGoexit: the item is
// lost, and the run does not return what it has as if complete.
func TestReview87GoexitInRetriedCalls(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		type where int
		const (
			inFirstAttempt where = iota
			inRetry
			inTimedCall
			inPredicate
			inHandler
			inKey
		)
		names := []string{"first attempt", "retry", "timed call", "predicate", "handler", "key"}
		for w := inFirstAttempt; w <= inKey; w++ {
			for _, pol := range []string{"failfast", "forward", "handle"} {
				if w == inHandler && pol != "handle" {
					continue
				}
				for _, m := range []r87mode{{1, false, 1}, {3, false, 1}, {3, true, 1}, {-1, false, 0}, {-1, true, 1}} {
					t.Run(fmt.Sprintf("%s/%s/%v", names[w], pol, m), func(t *testing.T) {
						var att [4]atomic.Int32
						f := func(ctx context.Context, x int) (int, error) {
							a := att[x].Add(1)
							if x == 1 {
								switch {
								case w == inFirstAttempt:
									runtime.Goexit()
								case w == inRetry && a == 2:
									runtime.Goexit()
								case w == inTimedCall:
									<-ctx.Done()
									runtime.Goexit()
								case w == inPredicate || w == inHandler || w == inRetry:
									return 0, errR87Fail
								}
							}
							return x, nil
						}
						pred := func(err error) bool {
							if w == inPredicate {
								runtime.Goexit()
							}
							return w != inHandler
						}
						key := func(x int) int {
							if w == inKey && x == 1 {
								runtime.Goexit()
							}
							return x
						}
						policy := stage.FailFast
						switch pol {
						case "forward":
							policy = stage.Forward
						case "handle":
							policy = stage.Handle(func(context.Context, *stage.Error) error {
								if w == inHandler {
									runtime.Goexit()
								}
								return nil
							})
						}
						opts := m.opts(stage.Name("gx"), stage.RetryIf(3, 0, pred), stage.OnError(policy))
						if w == inTimedCall {
							opts = append(opts, stage.Timeout(time.Millisecond))
						} else {
							opts = append(opts, stage.Timeout(time.Minute))
						}
						if w == inKey {
							opts = append(opts, stage.KeyBy(key))
						}
						st := &stage.Stats{}
						obs := &r87obs{}
						var stopped atomic.Int32
						src := stage.Source(func(ctx context.Context) (func(ctx context.Context) (int, error), func()) {
							i := 0
							return func(ctx context.Context) (int, error) {
									if i >= 4 {
										return 0, io.EOF
									}
									i++
									return i - 1, nil
								}, func() {
									stopped.Add(1)
								}
						})
						var err error
						runcheck.Run(t, "goexit", func() {
							_, err = sink.Slice(stage.Observe(stage.Observe(context.Background(), st), obs), stage.Map(src, f, opts...))
						})
						if !errors.Is(err, stage.ErrGoexit) {
							t.Errorf("err = %v, want ErrGoexit", err)
						}
						if stopped.Load() != 1 {
							t.Errorf("the source's stop was called %d times, want 1", stopped.Load())
						}
						c, _ := st.Get("gx")
						if c.Received != c.Finished || c.InFlight != 0 || c.Running != 0 {
							t.Errorf("Stats = %+v: observers must see every call end", c)
						}
						// Watcher.Finished: "A call that runtime.Goexit ended
						// (see ErrGoexit) is reported as cut short too, naming
						// ErrGoexit"
						if w <= inPredicate {
							ws := obs.get("gx")
							named := 0
							for _, e := range ws.errs {
								// Other items taken when the run ended may be
								// cut short too (received, never called):
								// their reports name the run's cause as well.
								if errors.Is(e, context.Canceled) && strings.Contains(e.Error(), stage.ErrGoexit.Error()) {
									named++
								} else {
									t.Errorf("the watcher was told %v, want only cut-short reports naming ErrGoexit", e)
								}
								var se *stage.Error
								if errors.As(e, &se) {
									t.Errorf("the watcher was told an item error %v", e)
								}
							}
							if named < 1 {
								t.Errorf("watcher errs %v: want a cut-short error naming ErrGoexit", ws.errs)
							}
						}
					})
				}
			}
		}
	})
}

// TestReview87PanicInTimedRetriedHandler attacks:
//
//	Handle: "A panic in h fails the run with an *Error wrapping a
//	*PanicError."
//	Timeout: "Only that call's context expires, not the run's"
func TestReview87PanicInTimedRetriedHandler(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			h := func(context.Context, *stage.Error) error { panic("r87 handler panic") }
			f := func(ctx context.Context, x int) (int, error) {
				if x == 2 {
					return 0, r87blockUntilDone(ctx)
				}
				return x, nil
			}
			var err error
			runcheck.Run(t, "handler panic", func() {
				_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(5)), f,
					m.opts(stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.OnError(stage.Handle(h)))...))
			})
			var e *stage.Error
			var pe *stage.PanicError
			if !errors.As(err, &e) || !errors.As(err, &pe) || pe.Value != "r87 handler panic" {
				t.Errorf("err = %v, want an *Error wrapping the handler's *PanicError", err)
			}
		})
	}
}

// TestReview87MergeOfRetriedBranchesFailFast attacks:
//
//	Merge: "Forwarded errors pass through. The merged stream ends when every
//	input has ended."
//	sink: "A sink returns the error that ended the run: the first
//	*stage.Error of a stage with the FailFast policy"
//
// One branch forwards timed-out items, the other fails FailFast after its
// retries once the first branch has delivered everything; the sink returns
// the FailFast error, wrapping the forwarded ones.
func TestReview87MergeOfRetriedBranchesFailFast(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			aDone := make(chan struct{})
			var aLeft atomic.Int32
			aLeft.Store(4)
			a := stage.Map(source.Slice(ints(4)), func(ctx context.Context, x int) (int, error) {
				defer func() {
					if aLeft.Add(-1) == 0 {
						close(aDone)
					}
				}()
				if x%2 == 0 {
					return 0, r87blockUntilDone(ctx)
				}
				return x, nil
			}, m.opts(stage.Name("a"), stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.OnError(stage.Forward))...)
			var bCalls atomic.Int32
			b := stage.Map(source.Slice([]int{100}), func(ctx context.Context, x int) (int, error) {
				if bCalls.Add(1) == 1 {
					select {
					case <-aDone:
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				}
				return 0, errR87Permanent
			}, m.opts(stage.Name("b"), stage.Retry(3, 0), stage.Timeout(time.Minute))...)
			var err error
			runcheck.Run(t, "merge", func() {
				_, err = sink.Slice(context.Background(), stage.Merge(a, b))
			})
			e := r87findError(err, "b")
			if e == nil || e.Attempts != 3 || !errors.Is(e, errR87Permanent) {
				t.Errorf("err = %v, want b's FailFast *Error after 3 attempts", err)
			}
		})
	}
}

// r87findError returns the first *stage.Error of the named stage in err's
// tree, or nil.
func r87findError(err error, name string) *stage.Error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*stage.Error); ok && e.Stage == name {
		return e
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, c := range u.Unwrap() {
			if e := r87findError(c, name); e != nil {
				return e
			}
		}
	case interface{ Unwrap() error }:
		return r87findError(u.Unwrap(), name)
	}
	return nil
}

// ---------------------------------------------------------------------------
// A call's deadline is its own: emit, FlatMap's elements, late successes

// TestReview87LateSuccessAfterTimeout attacks:
//
//	Timeout: "what it returns then counts (nil is a success, even after the
//	deadline)"
//	Apply: "emit returns false, and drops the output, once the run is
//	cancelled" (the run, not the call's Timeout)
//	FlatMap: "The returned slice is read after f returns, while its
//	elements wait for room downstream"
//	Watcher.Finished: "A call that returned nil is a success, even once the
//	run was ending (as under Timeout)."
//
// Each call waits until its own deadline has passed, then succeeds: Map
// returns a value, FlatMap a slice of many elements (more than the stage's
// read-ahead, so that they wait for room after the deadline), Apply emits
// after the deadline. Every output must arrive.
func TestReview87LateSuccessAfterTimeout(t *testing.T) {
	const n, fan = 4, 20
	for _, kind := range []string{"map", "flatmap", "apply"} {
		for _, m := range r87modes {
			t.Run(fmt.Sprintf("%s/%v", kind, m), func(t *testing.T) {
				var emitFalse atomic.Int32
				var s stage.Stream[int]
				opts := m.opts(stage.Name("late"), stage.Timeout(time.Millisecond), stage.Retry(3, 0))
				src := source.Slice(ints(n))
				switch kind {
				case "map":
					s = stage.Map(src, func(ctx context.Context, x int) (int, error) {
						<-ctx.Done()
						return x, nil
					}, opts...)
				case "flatmap":
					s = stage.FlatMap(src, func(ctx context.Context, x int) ([]int, error) {
						<-ctx.Done()
						out := make([]int, fan)
						for i := range out {
							out[i] = x*fan + i
						}
						return out, nil
					}, opts...)
				case "apply":
					s = stage.Apply(src, func(ctx context.Context, x int, emit func(int) bool) error {
						<-ctx.Done()
						for i := range fan {
							if !emit(x*fan + i) {
								emitFalse.Add(1)
								return ctx.Err()
							}
						}
						return nil
					}, opts...)
				}
				want := n
				if kind != "map" {
					want = n * fan
				}
				st := &stage.Stats{}
				var got []int
				var err error
				runcheck.Run(t, "late", func() {
					// A consumer that yields between items, so that outputs
					// wait for room.
					err = sink.ForEach(stage.Observe(context.Background(), st), s, func(_ context.Context, v int) error {
						got = append(got, v)
						runtime.Gosched()
						return nil
					})
				})
				if err != nil {
					t.Fatalf("err = %v, want nil: each call succeeded after its own deadline, the run was not cancelled", err)
				}
				if emitFalse.Load() != 0 {
					t.Errorf("emit returned false %d times: the run was not cancelled, only the call's deadline passed", emitFalse.Load())
				}
				if len(got) != want {
					t.Errorf("got %d outputs, want %d", len(got), want)
				}
				if m.ordered || m.workers == 1 {
					if kind == "map" && !slices.Equal(got, ints(n)) || kind != "map" && !slices.Equal(got, ints(n*fan)) {
						t.Errorf("got %v, want input order", got)
					}
				}
				c, _ := st.Get("late")
				if c.Received != n || c.Finished != n || c.Failed != 0 {
					t.Errorf("Stats = %+v, want %d received and finished, none failed", c, n)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// Rate limits: the token wait is outside Timeout and not cut by a deadline

// TestReview87TokenWaitOutsideTimeout attacks:
//
//	SharedRateLimit: "Each attempt takes a token of l before it starts, as
//	under RateLimit (and outside Timeout)"
//	RateLimit: "A worker ... waits for its token as long as it takes"
//
// Tokens come every 50ms and each call has a Timeout of 1ms: a token wait
// bounded by the call's Timeout would fail the items.
func TestReview87TokenWaitOutsideTimeout(t *testing.T) {
	for _, shared := range []bool{false, true} {
		for _, m := range []r87mode{{1, false, 0}, {2, true, 0}, {3, false, 1}} {
			t.Run(fmt.Sprintf("shared=%v/%v", shared, m), func(t *testing.T) {
				limit := stage.RateLimit(20, 1)
				if shared {
					limit = stage.SharedRateLimit(rate.NewLimiter(20, 1))
				}
				var got []int
				var err error
				runcheck.Run(t, "token outside timeout", func() {
					got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(4)), func(ctx context.Context, x int) (int, error) {
						return x, nil
					}, m.opts(limit, stage.Timeout(time.Millisecond), stage.OnError(stage.Forward))...))
				})
				if err != nil || len(got) != 4 {
					t.Errorf("got %v, %v; want 4 items, nil: the token wait is outside the call's Timeout", got, err)
				}
			})
		}
	}
}

// TestReview87TokenWaitNotCutByDeadline attacks:
//
//	RateLimit: "only the end of the run ends the wait (a deadline on the
//	run's context is no reason to fail an item early)"
//	SharedRateLimit: "waiting as long as it takes unless the run ends"
//
// The caller's ctx has a deadline an hour away; the second token comes in
// about three hours. The second item must wait (not fail at once because its
// wait would pass the deadline); the caller then cancels. (A grace before the
// cancellation lets a wrongly failed item show; no verdict depends on it.)
func TestReview87TokenWaitNotCutByDeadline(t *testing.T) {
	for _, shared := range []bool{false, true} {
		for _, m := range []r87mode{{1, false, 0}, {2, true, 0}, {2, false, 1}} {
			t.Run(fmt.Sprintf("shared=%v/%v", shared, m), func(t *testing.T) {
				limit := stage.RateLimit(0.0001, 1)
				if shared {
					limit = stage.SharedRateLimit(rate.NewLimiter(0.0001, 1))
				}
				var handled atomic.Int32
				var handledErr atomic.Value
				h := func(_ context.Context, e *stage.Error) error {
					handled.Add(1)
					handledErr.Store(e.Err)
					return nil
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
				defer cancel()
				first := make(chan struct{})
				var calls atomic.Int32
				var err error
				runcheck.Run(t, "deadline", func() {
					go func() {
						<-first
						time.Sleep(200 * time.Millisecond)
						cancel()
					}()
					// Either item may take the one token: the other waits.
					err = sink.ForEach(ctx, stage.Map(source.Slice(ints(2)), func(ctx context.Context, x int) (int, error) {
						if calls.Add(1) == 1 {
							close(first)
						}
						return x, nil
					}, m.opts(limit, stage.OnError(stage.Handle(h)))...), func(context.Context, int) error {
						return nil
					})
				})
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want Canceled", err)
				}
				if handled.Load() != 0 {
					t.Errorf("an item failed (%v) instead of waiting for its token: the run's deadline is no reason to fail it early", handledErr.Load())
				}
				if calls.Load() != 1 {
					t.Errorf("%d calls, want 1", calls.Load())
				}
			})
		}
	}
}

// TestReview87EachAttemptTakesToken attacks:
//
//	RateLimit: "Each attempt under Retry takes a token."
//
// Two tokens, then one every three hours: the third attempt waits; the
// caller cancels (after a grace that lets a wrong third call show).
func TestReview87EachAttemptTakesToken(t *testing.T) {
	for _, m := range []r87mode{{1, false, 0}, {2, true, 0}, {2, false, 1}} {
		t.Run(m.String(), func(t *testing.T) {
			var calls atomic.Int32
			twice := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var err error
			runcheck.Run(t, "tokens", func() {
				go func() {
					<-twice
					time.Sleep(200 * time.Millisecond)
					cancel()
				}()
				_, err = sink.Slice(ctx, stage.Map(source.Slice([]int{0}), func(ctx context.Context, x int) (int, error) {
					if calls.Add(1) == 2 {
						close(twice)
					}
					return 0, errR87Fail
				}, m.opts(stage.RateLimit(0.0001, 2), stage.Retry(5, 0))...))
			})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want Canceled", err)
			}
			if calls.Load() != 2 {
				t.Errorf("%d calls, want 2 (the third attempt waits for a token)", calls.Load())
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Backoff arithmetic at the edges

// TestReview87HugeBackoffWaits attacks:
//
//	Retry: "Before the n-th retry the worker waits a random duration between
//	d/2 and d, where d = backoff·2^(n-1), capped at 64·backoff and at the
//	longest time.Duration"
//
// With huge backoffs (64·backoff overflows) the first wait is still at least
// backoff/2, years: no retry may come before the caller cancels.
func TestReview87HugeBackoffWaits(t *testing.T) {
	for _, b := range []time.Duration{math.MaxInt64, math.MaxInt64 / 2, math.MaxInt64 / 3, math.MaxInt64 / 63, 1 << 62} {
		t.Run(fmt.Sprint(int64(b)), func(t *testing.T) {
			var calls atomic.Int32
			failed := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var err error
			runcheck.Run(t, "huge backoff", func() {
				go func() {
					<-failed
					time.Sleep(100 * time.Millisecond) // grace for a wrong retry to show
					cancel()
				}()
				_, err = sink.Slice(ctx, stage.Map(source.Slice([]int{0}), func(ctx context.Context, x int) (int, error) {
					if calls.Add(1) == 1 {
						close(failed)
					}
					return 0, errR87Fail
				}, stage.Workers(2), stage.Retry(5, b)))
			})
			if !errors.Is(err, context.Canceled) || calls.Load() != 1 {
				t.Errorf("err = %v, calls %d; want Canceled after 1 call", err, calls.Load())
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Budget per run; Stats during a run

// TestReview87BudgetPerRunWithRetry attacks:
//
//	Budget: "The count is per stage and per run: each run starts with a full
//	budget."
func TestReview87BudgetPerRunWithRetry(t *testing.T) {
	var mu sync.Mutex
	handled := 0
	h := func(context.Context, *stage.Error) error { mu.Lock(); handled++; mu.Unlock(); return nil }
	s := stage.Map(source.Slice(ints(6)), func(ctx context.Context, x int) (int, error) {
		if x%3 == 0 {
			return 0, errR87Fail
		}
		return x, nil
	}, stage.Workers(2), stage.Retry(2, 0), stage.OnError(stage.Budget(2, h)))
	for run := range 3 {
		var got []int
		var err error
		runcheck.Run(t, "budget run", func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil || len(got) != 4 {
			t.Errorf("run %d: %v, %v; want 4 items, nil (2 failures within a budget of 2)", run, got, err)
		}
	}
	if handled != 6 {
		t.Errorf("h saw %d failures, want 6", handled)
	}
}

// TestReview87StatsDuringRetriedCall attacks:
//
//	Stats: "atomic counters that can be read while runs go on"
//	Counts: "InFlight int64 // Received - Finished"; "Running int // runs in
//	which the stage has not closed yet"
//
// Read from inside the second attempt of a call: the item is received, not
// finished, the stage running in one run.
func TestReview87StatsDuringRetriedCall(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			st := &stage.Stats{}
			var att atomic.Int32
			var during stage.Counts
			var err error
			runcheck.Run(t, "stats", func() {
				_, err = sink.Slice(stage.Observe(context.Background(), st), stage.Map(source.Slice([]int{0}), func(ctx context.Context, x int) (int, error) {
					if att.Add(1) == 1 {
						return 0, errR87Fail
					}
					during, _ = st.Get("sd")
					return x, nil
				}, m.opts(stage.Name("sd"), stage.Retry(2, 0), stage.Timeout(time.Minute))...))
			})
			if err != nil {
				t.Fatal(err)
			}
			if during.Received != 1 || during.Finished != 0 || during.InFlight != 1 || during.Running != 1 || during.Failed != 0 {
				t.Errorf("during the retry: %+v, want received 1, finished 0, inflight 1, running 1", during)
			}
			after, _ := st.Get("sd")
			if after.Received != 1 || after.Finished != 1 || after.InFlight != 0 || after.Running != 0 {
				t.Errorf("after: %+v", after)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Ordered windows with dropped items, forwarded errors through KeyBy

// TestReview87OrderedDropsFreeTheWindow attacks:
//
//	Ordered: "the stage takes at most 2×workers+buffer items from upstream
//	that its consumer has not yet taken, and then stops pulling"
//	Handle: "If h returns nil, the item is dropped ... and the run goes on"
//	Budget: "the first n failed items of a run are dropped"
//	Filter: "emits the item when keep returns true"
//	FlatMap/Apply: zero outputs for an item
//
// Most items of an Ordered stage leave no output (dropped by a policy after
// their retries, filtered out, or empty): if they kept their places in the
// window, the stage would stop pulling for ever. The kept ones must arrive,
// in order.
func TestReview87OrderedDropsFreeTheWindow(t *testing.T) {
	const n = 200
	keep := func(x int) bool { return x%17 == 5 }
	for _, kind := range []string{"handle", "budget", "filter", "flatmap", "apply"} {
		for _, m := range []r87mode{{1, true, 0}, {2, true, 0}, {3, true, 1}, {-1, true, 0}} {
			for _, keyed := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%v/keyed=%v", kind, m, keyed), func(t *testing.T) {
					src := source.Slice(ints(n))
					opts := m.opts(stage.Retry(2, 0), stage.Timeout(time.Minute))
					if keyed {
						opts = append(opts, stage.KeyBy(func(x int) int { return x % 3 }))
					}
					var s stage.Stream[int]
					drop := func(context.Context, *stage.Error) error { return nil }
					failUnlessKept := func(ctx context.Context, x int) (int, error) {
						if !keep(x) {
							return 0, errR87Fail
						}
						return x, nil
					}
					switch kind {
					case "handle":
						s = stage.Map(src, failUnlessKept, append(opts, stage.OnError(stage.Handle(drop)))...)
					case "budget":
						s = stage.Map(src, failUnlessKept, append(opts, stage.OnError(stage.Budget(n, nil)))...)
					case "filter":
						s = stage.Filter(src, func(ctx context.Context, x int) (bool, error) { return keep(x), nil }, opts...)
					case "flatmap":
						s = stage.FlatMap(src, func(ctx context.Context, x int) ([]int, error) {
							if keep(x) {
								return []int{x}, nil
							}
							return nil, nil
						}, opts...)
					case "apply":
						s = stage.Apply(src, func(ctx context.Context, x int, emit func(int) bool) error {
							if keep(x) {
								emit(x)
							}
							return nil
						}, opts...)
					}
					var got []int
					var err error
					runcheck.Run(t, "drops", func() { got, err = sink.Slice(context.Background(), s) })
					var want []int
					for x := range n {
						if keep(x) {
							want = append(want, x)
						}
					}
					if err != nil || !slices.Equal(got, want) {
						t.Errorf("got %v, %v; want %v, nil", got, err, want)
					}
				})
			}
		}
	}
}

// TestReview87OrderedWindowDuringRetry attacks:
//
//	Ordered: "the stage takes at most 2×workers+buffer items from upstream
//	that its consumer has not yet taken, and then stops pulling"
//	README: "An Ordered() stage takes at most 2×workers+buffer items that
//	its consumer has not yet taken"
//
// Item 0 fails and its retry waits at a gate: nothing can leave the stage,
// so the source may be asked for at most 2×workers+buffer items (counted
// when the gate opens, after a grace that lets a wrong pull show).
func TestReview87OrderedWindowDuringRetry(t *testing.T) {
	for _, m := range []r87mode{{2, true, 0}, {2, true, 1}, {3, true, 2}, {1, true, 0}, {1, true, 3}} {
		for _, keyed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/keyed=%v", m, keyed), func(t *testing.T) {
				const n = 100
				var taken atomic.Int32
				src := source.Func(func(ctx context.Context) (int, error) {
					i := int(taken.Add(1)) - 1
					if i >= n {
						return 0, io.EOF
					}
					return i, nil
				})
				gate := make(chan struct{})
				failed := make(chan struct{})
				var att atomic.Int32
				var atGate atomic.Int32
				f := func(ctx context.Context, x int) (int, error) {
					if x == 0 {
						if att.Add(1) == 1 {
							close(failed)
							return 0, errR87Fail
						}
						<-gate
					}
					return x, nil
				}
				opts := m.opts(stage.Retry(2, 0), stage.Timeout(time.Minute))
				if keyed {
					opts = append(opts, stage.KeyBy(func(x int) int { return x % 4 }))
				}
				var got []int
				var err error
				bound := 2*m.workers + m.buffer
				runcheck.Run(t, "window", func() {
					go func() {
						<-failed
						time.Sleep(100 * time.Millisecond) // grace for a wrong pull to show
						atGate.Store(taken.Load())
						close(gate)
					}()
					got, err = sink.Slice(context.Background(), stage.Map(src, f, opts...))
				})
				if err != nil || !slices.Equal(got, ints(n)) {
					t.Fatalf("got %v, %v", got, err)
				}
				if int(atGate.Load()) > bound {
					t.Errorf("the source was asked for %d items while item 0 held the window, want at most %d", atGate.Load(), bound)
				}
			})
		}
	}
}

// TestReview87ForwardedThroughKeyedOrdered attacks:
//
//	KeyBy: "Forwarded errors pass through without a key. ... with Ordered,
//	the outputs follow the input order across keys too."
//	Map: "forwarded errors pass through without a call"
//	FailFast applies to the stage's own failures, not forwarded ones.
func TestReview87ForwardedThroughKeyedOrdered(t *testing.T) {
	for _, m := range r87modes {
		if !m.ordered {
			continue
		}
		t.Run(m.String(), func(t *testing.T) {
			const n = 30
			s1 := stage.Map(source.Slice(ints(n)), func(ctx context.Context, x int) (int, error) {
				if x%4 == 2 {
					return 0, r87blockUntilDone(ctx)
				}
				return x, nil
			}, m.opts(stage.Name("k1"), stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.OnError(stage.Forward))...)
			var keyCalls atomic.Int32
			s2 := stage.Map(s1, func(ctx context.Context, x int) (int, error) {
				return 10 * x, nil
			}, m.opts(stage.Name("k2"), stage.KeyBy(func(x int) int { keyCalls.Add(1); return x % 3 }), stage.Retry(2, 0))...)
			var pairs []r87pair[int]
			runcheck.Run(t, "keyed", func() { pairs = r87all(context.Background(), s2) })
			if len(pairs) != n {
				t.Fatalf("%d pairs, want %d", len(pairs), n)
			}
			for i, p := range pairs {
				var e *stage.Error
				if i%4 == 2 {
					if !errors.As(p.err, &e) || e.Stage != "k1" || e.Index != i {
						t.Errorf("pair %d: %v, want k1's error of index %d", i, p.err, i)
					}
				} else if p.err != nil || p.v != 10*i {
					t.Errorf("pair %d: %d, %v; want %d", i, p.v, p.err, 10*i)
				}
			}
			if int(keyCalls.Load()) != n-(n+1)/4 {
				t.Errorf("key called %d times, want %d (not for forwarded errors)", keyCalls.Load(), n-(n+1)/4)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Merge with Until on one branch; a callback error during a backoff

// TestReview87MergeUntilOneBranchRetrying attacks:
//
//	Until: "Until drains only the sources it is built on; in a Merge of an
//	Until branch and another, the other branch runs on."
//	Until: "calls in flight finish ... and the sink returns nil once the
//	last of them has arrived"
func TestReview87MergeUntilOneBranchRetrying(t *testing.T) {
	for _, m := range []r87mode{{2, false, 0}, {2, true, 0}, {3, false, 1}, {-1, true, 0}} {
		t.Run(m.String(), func(t *testing.T) {
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			aWaits := make(chan struct{})
			aSawStop := make(chan struct{})
			var aNext atomic.Int32
			srcA := source.Func(func(ctx context.Context) (int, error) {
				switch aNext.Add(1) {
				case 1:
					return 1, nil
				case 2:
					close(aWaits)
					<-ctx.Done()
					close(aSawStop)
					return 0, ctx.Err()
				}
				return 0, errors.New("r87: next called after the drain")
			})
			var att atomic.Int32
			a := stage.Map(stage.Until(srcA, stop), func(ctx context.Context, x int) (int, error) {
				if att.Add(1) == 1 {
					return 0, errR87Fail
				}
				select {
				case <-aSawStop:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
				return x, nil
			}, m.opts(stage.Retry(3, 0), stage.Timeout(time.Minute))...)
			// B's items come only once A's source saw the drain.
			var bNext atomic.Int32
			srcB := source.Func(func(ctx context.Context) (int, error) {
				select {
				case <-aSawStop:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
				if i := bNext.Add(1); i <= 5 {
					return 100 + int(i), nil
				}
				return 0, io.EOF
			})
			b := stage.Map(srcB, func(ctx context.Context, x int) (int, error) { return x, nil }, m.opts(stage.Retry(2, 0))...)
			var got []int
			var err error
			runcheck.Run(t, "merge until", func() {
				go func() {
					<-aWaits
					drain()
				}()
				got, err = sink.Slice(context.Background(), stage.Merge(a, b))
			})
			slices.Sort(got)
			if err != nil || !slices.Equal(got, []int{1, 101, 102, 103, 104, 105}) {
				t.Errorf("got %v, %v; want [1 101 102 103 104 105], nil", got, err)
			}
		})
	}
}

// TestReview87CallbackErrorDuringBackoff attacks:
//
//	ForEach: "An error returned by f ... ends the run as a FailFast error
//	does: the run's context is cancelled with a *stage.Error (Stage
//	"foreach") as its cause, and ForEach returns that error"
//	Retry: "The wait ... ends early, without a retry, when the run is
//	cancelled."
func TestReview87CallbackErrorDuringBackoff(t *testing.T) {
	for _, m := range r87modes {
		if m.workers == 1 {
			continue
		}
		t.Run(m.String(), func(t *testing.T) {
			inBackoff := make(chan struct{})
			var calls [2]atomic.Int32
			failing := 0
			if m.ordered {
				failing = 1
			}
			f := func(ctx context.Context, x int) (int, error) {
				calls[x].Add(1)
				if x == failing {
					close(inBackoff)
					return 0, errR87Fail
				}
				select {
				case <-inBackoff:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
				return x, nil
			}
			cbErr := errors.New("r87: callback")
			var err error
			runcheck.Run(t, "callback error", func() {
				err = sink.ForEach(context.Background(), stage.Map(source.Slice([]int{0, 1}), f,
					m.buffered().opts(stage.Retry(3, time.Hour))...), func(context.Context, int) error { return cbErr })
			})
			var e *stage.Error
			if !errors.As(err, &e) || e.Stage != "foreach" || !errors.Is(err, cbErr) || e.Index != 0 {
				t.Errorf("err = %v, want the callback's *Error (foreach, index 0)", err)
			}
			if calls[failing].Load() != 1 {
				t.Errorf("item %d: %d calls, want 1", failing, calls[failing].Load())
			}
		})
	}
}

// ---------------------------------------------------------------------------
// The call's context under Timeout: cause and values of the run's

type r87key struct{}

// TestReview87TimedCallSeesRunCause attacks:
//
//	FailFast: "the run's context is cancelled with the *Error as its cause
//	(see context.Cause); calls in flight see ctx.Done()"
//	Timeout: "Only that call's context expires, not the run's"
//	Cancellation: "the user functions see it through their ctx"
//
// Item 0 waits in a call under a minute's Timeout (with KeyBy or not); item 1
// fails FailFast. Item 0's ctx must end with item 1's *Error as its cause
// and carry the caller's values; the retry predicate must not start a new
// attempt.
func TestReview87TimedCallSeesRunCause(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		for _, m := range r87modes {
			if m.workers == 1 {
				continue
			}
			t.Run(fmt.Sprintf("%v/keyed=%v", m, keyed), func(t *testing.T) {
				started := make(chan struct{})
				var cause atomic.Value
				var value atomic.Value
				var calls0 atomic.Int32
				f := func(ctx context.Context, x int) (int, error) {
					if x == 0 {
						calls0.Add(1)
						value.Store(fmt.Sprint(ctx.Value(r87key{})))
						close(started)
						<-ctx.Done()
						cause.Store(fmt.Sprintf("%T %v", context.Cause(ctx), context.Cause(ctx)))
						return 0, ctx.Err()
					}
					select {
					case <-started:
					case <-ctx.Done():
						return 0, ctx.Err()
					}
					return 0, errR87Permanent
				}
				opts := m.buffered().opts(stage.Name("cz"), stage.Timeout(time.Minute), stage.RetryIf(3, 0, func(error) bool { return true }))
				if keyed {
					opts = append(opts, stage.KeyBy(func(x int) int { return x }))
				}
				ctx := context.WithValue(context.Background(), r87key{}, "v87")
				var err error
				runcheck.Run(t, "cause", func() {
					_, err = sink.Slice(ctx, stage.Map(source.Slice([]int{0, 1}), f, opts...))
				})
				var e *stage.Error
				if !errors.As(err, &e) || e.Index != 1 || !errors.Is(err, errR87Permanent) {
					t.Fatalf("err = %v, want item 1's *Error", err)
				}
				if c, _ := cause.Load().(string); !strings.HasPrefix(c, "*stage.Error") || !strings.Contains(c, "r87: permanent") {
					t.Errorf("item 0's ctx ended with cause %q, want item 1's *Error", c)
				}
				if v, _ := value.Load().(string); v != "v87" {
					t.Errorf("item 0's ctx carries %q, want the caller's value", v)
				}
				if calls0.Load() != 1 {
					t.Errorf("item 0: %d calls, want 1", calls0.Load())
				}
			})
		}
	}
}

// TestReview87ReceivedIndexIsAPosition attacks:
//
//	Error.Index: "When the stage's input has no defined order (the output of
//	an unordered stage with more than one worker, or of Merge), Index is the
//	position in which the stage received the item." "Forwarded errors count
//	as items."
//
// Stage 2 (unordered, retrying, forwarding) fails every item it calls: the
// Indexes of its errors are distinct positions in 0..n-1, and none is the
// position at which it received one of stage 1's forwarded errors (which it
// does not call): all of 0..n-1 are accounted for exactly once.
func TestReview87ReceivedIndexIsAPosition(t *testing.T) {
	for _, m := range []r87mode{{3, false, 0}, {4, false, 1}, {-1, false, 0}, {2, true, 0}} {
		t.Run(m.String(), func(t *testing.T) {
			const n = 40
			s1 := stage.Map(source.Slice(ints(n)), func(ctx context.Context, x int) (int, error) {
				if x%5 == 0 {
					return 0, errR87Permanent
				}
				runtime.Gosched()
				return x, nil
			}, stage.Name("p1"), stage.Workers(4), stage.OnError(stage.Forward))
			s2 := stage.Map(s1, func(ctx context.Context, x int) (int, error) {
				return 0, errR87Fail
			}, m.opts(stage.Name("p2"), stage.Retry(2, 0), stage.Timeout(time.Minute), stage.OnError(stage.Forward))...)
			var pairs []r87pair[int]
			runcheck.Run(t, "positions", func() { pairs = r87all(context.Background(), s2) })
			if len(pairs) != n {
				t.Fatalf("%d pairs", len(pairs))
			}
			// The position at which stage 2 received each item is its place in
			// the stream stage 2 emits only if stage 2 keeps order; so check
			// the set: stage 2's indexes are distinct and in range, n-8 of
			// them.
			seen := map[int]bool{}
			for _, p := range pairs {
				var e *stage.Error
				if !errors.As(p.err, &e) {
					t.Fatalf("pair %v is not an *Error", p)
				}
				if e.Stage != "p2" {
					continue
				}
				if e.Index < 0 || e.Index >= n || seen[e.Index] {
					t.Errorf("p2 index %d out of range or repeated", e.Index)
				}
				seen[e.Index] = true
			}
			if len(seen) != n-n/5 {
				t.Errorf("%d p2 errors, want %d", len(seen), n-n/5)
			}
			if m.ordered {
				// Stage 2 keeps the order in which it received its input:
				// the forwarded errors sit at the positions stage 2 skipped.
				for i, p := range pairs {
					var e *stage.Error
					errors.As(p.err, &e)
					if e.Stage == "p2" && e.Index != i {
						t.Errorf("pair %d: p2's index %d, want %d (its receiving position)", i, e.Index, i)
					}
				}
			}
		})
	}
}

// TestReview87HandlerHoldsWorker attacks:
//
//	Handle: "they run in the stage's worker goroutines, so a slow h holds a
//	worker."
//	Workers: "at most n"
//
// While h handles one item, at most n-1 calls of the function run: the
// function's calls plus h's never exceed n.
func TestReview87HandlerHoldsWorker(t *testing.T) {
	for _, m := range []r87mode{{2, false, 0}, {2, true, 0}, {3, false, 1}, {3, true, 2}} {
		t.Run(m.String(), func(t *testing.T) {
			const n = 40
			var busy, most atomic.Int32
			enter := func() {
				b := busy.Add(1)
				for {
					mm := most.Load()
					if b <= mm || most.CompareAndSwap(mm, b) {
						return
					}
				}
			}
			h := func(context.Context, *stage.Error) error {
				enter()
				defer busy.Add(-1)
				for range 50 {
					runtime.Gosched()
				}
				return nil
			}
			f := func(ctx context.Context, x int) (int, error) {
				enter()
				defer busy.Add(-1)
				runtime.Gosched()
				if x%3 == 0 {
					return 0, errR87Fail
				}
				return x, nil
			}
			var err error
			runcheck.Run(t, "h holds", func() {
				_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(n)), f,
					m.opts(stage.Retry(2, 0), stage.Timeout(time.Minute), stage.OnError(stage.Handle(h)))...))
			})
			if err != nil {
				t.Fatal(err)
			}
			if int(most.Load()) > m.workers {
				t.Errorf("%d calls of f and h at once, want at most %d", most.Load(), m.workers)
			}
		})
	}
}

// TestReview87LenAndTotalThroughOptions attacks:
//
//	Stream.Len: "a source.Slice or Indexed source of n items, through stages
//	that give one item per item (Map, Concurrent), carries n"
//	Info.Total: "when its source knows its length ... and the stages between
//	keep one output per input (Map, Concurrent, Until)"
func TestReview87LenAndTotalThroughOptions(t *testing.T) {
	const n = 9
	stop := context.Background()
	id := func(_ context.Context, x int) (int, error) { return x, nil }
	s1 := stage.Map(stage.Until(source.Slice(ints(n)), stop), id, stage.Name("t1"), stage.Workers(3), stage.Ordered(),
		stage.Retry(3, 0), stage.Timeout(time.Minute), stage.KeyBy(func(x int) int { return x % 2 }), stage.Buffer(2), stage.OnError(stage.Forward))
	s2 := stage.Map(stage.Until(s1, stop), id, stage.Name("t2"), stage.RateLimit(1e9, 100))
	if s1.Len() != n || s2.Len() != n {
		t.Errorf("Len %d, %d; want %d", s1.Len(), s2.Len(), n)
	}
	st := &stage.Stats{}
	var err error
	runcheck.Run(t, "totals", func() { _, err = sink.Slice(stage.Observe(context.Background(), st), s2) })
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"t1", "t2"} {
		c, _ := st.Get(name)
		if c.Total != n || c.Received != n {
			t.Errorf("%s: %+v, want total and received %d", name, c, n)
		}
	}
}

// TestReview87TimedOutErrorAfterCancelIsCutShort attacks:
//
//	Watcher.Finished: "when the call returned an error once the run was
//	ending (a failure elsewhere, the caller's cancellation, an early stop),
//	an error for which errors.Is(err, context.Canceled) holds and that
//	neither is nor wraps an *Error, whatever error the function returned:
//	the call neither succeeded nor failed."
//	Logger: "a call ended by the run's cancellation is not a failure"
//	Run: "when ctx was cancelled, an error for which errors.Is(err,
//	context.Canceled) ... holds"
//
// The call's own Timeout expires first; the call holds on until the caller
// has cancelled the run, then returns its DeadlineExceeded. The run was
// ending when it returned: no failure, no retry, no handler, and the sink
// returns the cancellation.
func TestReview87TimedOutErrorAfterCancelIsCutShort(t *testing.T) {
	for _, pol := range []string{"failfast", "forward", "handle"} {
		for _, m := range r87modes {
			t.Run(fmt.Sprintf("%s/%v", pol, m), func(t *testing.T) {
				expired := make(chan struct{})
				var calls, handled atomic.Int32
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				runCtx := make(chan context.Context, 1)
				f := func(callCtx context.Context, x int) (int, error) {
					calls.Add(1)
					<-callCtx.Done() // its own deadline: the run goes on
					err := callCtx.Err()
					close(expired)
					<-(<-runCtx).Done() // until the caller's cancellation reached the run
					return 0, err
				}
				policy := stage.FailFast
				switch pol {
				case "forward":
					policy = stage.Forward
				case "handle":
					policy = stage.Handle(func(context.Context, *stage.Error) error { handled.Add(1); return nil })
				}
				st := &stage.Stats{}
				obs := &r87obs{}
				var err error
				var pairs []r87pair[int]
				runcheck.Run(t, "expired then cancelled", func() {
					go func() {
						<-expired
						cancel()
					}()
					// The sink's callback is not called; the run's ctx reaches
					// f through an observer-free side channel: a Source whose
					// open sees the run's context.
					src := stage.Source(func(rctx context.Context) (func(context.Context) (int, error), func()) {
						runCtx <- rctx
						done := false
						return func(context.Context) (int, error) {
							if done {
								return 0, io.EOF
							}
							done = true
							return 0, nil
						}, nil
					})
					pairs = r87all(stage.Observe(stage.Observe(ctx, st), obs), stage.Map(src, f,
						m.opts(stage.Name("ex"), stage.Timeout(time.Millisecond), stage.Retry(3, 0), stage.OnError(policy))...))
				})
				if len(pairs) > 0 {
					err = pairs[len(pairs)-1].err
				}
				if len(pairs) != 1 || !errors.Is(err, context.Canceled) {
					t.Errorf("pairs %v, want one: the cancellation", pairs)
				}
				var e *stage.Error
				if errors.As(err, &e) {
					t.Errorf("the sink reported the cut-short call as an item error: %v", err)
				}
				if calls.Load() != 1 || handled.Load() != 0 {
					t.Errorf("calls %d, handled %d; want 1, 0", calls.Load(), handled.Load())
				}
				c, _ := st.Get("ex")
				if c.Failed != 0 || c.Finished != 1 {
					t.Errorf("Stats %+v, want finished 1, failed 0", c)
				}
				w := obs.get("ex")
				if len(w.errs) != 1 || !errors.Is(w.errs[0], context.Canceled) || errors.As(w.errs[0], &e) {
					t.Errorf("watcher errs %v, want one cut-short error", w.errs)
				}
			})
		}
	}
}

// TestReview87ContextErrorsOfOwnAreFailures attacks:
//
//	Handle: "if h returns an error, the run fails with it as with FailFast
//	... (Once the run is ending, an error of h's that is the context's error
//	or the run's cause means h was cut short ...)" — only once the run is
//	ending.
//	Run: "one for which f returned an error failed with it, unless the run
//	was ending already when f returned"
//	Watcher.Finished: the cut-short report is for a call that "returned an
//	error once the run was ending"
//
// While the run goes on, a handler, a sink callback or a retried, timed
// stage function returns context.Canceled or DeadlineExceeded of its own (a
// sub-context of its own ended): that is a failure like any other, not a
// cut-short call.
func TestReview87ContextErrorsOfOwnAreFailures(t *testing.T) {
	for _, ce := range []error{context.Canceled, context.DeadlineExceeded} {
		for _, m := range r87modes {
			t.Run(fmt.Sprintf("%v/%v", ce, m), func(t *testing.T) {
				// A stage function.
				var calls atomic.Int32
				st := &stage.Stats{}
				var err error
				runcheck.Run(t, "function", func() {
					_, err = sink.Slice(stage.Observe(context.Background(), st), stage.Map(source.Slice(ints(3)), func(ctx context.Context, x int) (int, error) {
						if x == 1 {
							calls.Add(1)
							return 0, fmt.Errorf("r87: own sub-context: %w", ce)
						}
						return x, nil
					}, m.opts(stage.Name("own"), stage.Retry(2, 0), stage.Timeout(time.Minute))...))
				})
				var e *stage.Error
				if !errors.As(err, &e) || e.Index != 1 || e.Attempts != 2 || !errors.Is(err, ce) {
					t.Errorf("function: err = %v, want item 1's *Error after 2 attempts", err)
				}
				if c, _ := st.Get("own"); c.Failed != 1 {
					t.Errorf("function: Stats %+v, want failed 1", c)
				}

				// A handler.
				runcheck.Run(t, "handler", func() {
					_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(3)), func(ctx context.Context, x int) (int, error) {
						if x == 1 {
							return 0, errR87Fail
						}
						return x, nil
					}, m.opts(stage.Retry(2, 0), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
						return fmt.Errorf("r87: handler's own: %w", ce)
					})))...))
				})
				if err == nil || !errors.Is(err, ce) {
					t.Errorf("handler: err = %v, want the handler's error: the run was not ending", err)
				}

				// A sink callback.
				runcheck.Run(t, "callback", func() {
					err = sink.ForEach(context.Background(), stage.Map(source.Slice(ints(3)), double,
						m.opts(stage.Retry(2, 0), stage.Timeout(time.Minute))...), func(context.Context, int) error {
						return fmt.Errorf("r87: callback's own: %w", ce)
					})
				})
				if !errors.As(err, &e) || e.Stage != "foreach" || !errors.Is(err, ce) {
					t.Errorf("callback: err = %v, want the callback's *Error", err)
				}
			})
		}
	}
}

// TestReview87StatsRunningAcrossRuns attacks:
//
//	Stats: "stages of the same name, in one run or in several, share one
//	entry, whose counts add up"
//	Counts: "Running int // runs in which the stage has not closed yet"
func TestReview87StatsRunningAcrossRuns(t *testing.T) {
	st := &stage.Stats{}
	var inside sync.WaitGroup
	inside.Add(2)
	release := make(chan struct{})
	s := stage.Map(source.Slice([]int{0}), func(ctx context.Context, x int) (int, error) {
		inside.Done()
		<-release
		return x, nil
	}, stage.Name("rr"), stage.Retry(2, 0), stage.Timeout(time.Minute), stage.Buffer(1))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	var during stage.Counts
	runcheck.Run(t, "two runs", func() {
		for i := range 2 {
			wg.Go(func() { _, errs[i] = sink.Slice(stage.Observe(context.Background(), st), s) })
		}
		inside.Wait()
		during, _ = st.Get("rr")
		close(release)
		wg.Wait()
	})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if during.Running != 2 || during.Received != 2 || during.InFlight != 2 {
		t.Errorf("during: %+v, want running 2, received 2, inflight 2", during)
	}
	after, _ := st.Get("rr")
	if after.Running != 0 || after.Finished != 2 || after.InFlight != 0 {
		t.Errorf("after: %+v", after)
	}
}

// TestReview87OrderedFailureEndsRunBeforeItsTurn attacks:
//
//	Ordered: "Under FailFast a failure ends the run when its call fails, not
//	at its turn"
//	FailFast: "calls in flight see ctx.Done()"
//
// Item 0 blocks until its ctx is done (under a minute's Timeout, so only the
// run's end can end it); item 2 fails after its retries. The run must end at
// item 2's failure, although item 2's turn never comes.
func TestReview87OrderedFailureEndsRunBeforeItsTurn(t *testing.T) {
	for _, m := range r87modes {
		if !m.ordered || m.workers == 1 {
			continue
		}
		for _, keyed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/keyed=%v", m, keyed), func(t *testing.T) {
				var calls2 atomic.Int32
				f := func(ctx context.Context, x int) (int, error) {
					switch x {
					case 0:
						return 0, r87blockUntilDone(ctx)
					case 2:
						calls2.Add(1)
						return 0, errR87Permanent
					}
					return x, nil
				}
				opts := m.opts(stage.Timeout(time.Minute), stage.Retry(3, 0))
				if keyed {
					opts = append(opts, stage.KeyBy(func(x int) int { return x }))
				}
				var got []int
				var err error
				runcheck.Run(t, "before its turn", func() {
					got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(5)), f, opts...))
				})
				var e *stage.Error
				if !errors.As(err, &e) || e.Index != 2 || e.Attempts != 3 || len(got) != 0 {
					t.Errorf("got %v, %v; want nothing and item 2's *Error after 3 attempts", got, err)
				}
				if calls2.Load() != 3 {
					t.Errorf("item 2: %d calls, want 3", calls2.Load())
				}
			})
		}
	}
}

// TestReview87FirstOrderedItemRetried attacks:
//
//	First: "always the first pair of `for v, err := range All(ctx, s) {
//	...; break }`"
//	Ordered: "emit its outputs in the order of its input"
//
// Item 0 succeeds only on its third attempt while the others succeed at
// once: First of an Ordered stage is still item 0's value.
func TestReview87FirstOrderedItemRetried(t *testing.T) {
	for _, m := range r87modes {
		if !m.ordered {
			continue
		}
		t.Run(m.String(), func(t *testing.T) {
			var att atomic.Int32
			f := func(ctx context.Context, x int) (int, error) {
				if x == 0 && att.Add(1) < 3 {
					return 0, errR87Fail
				}
				return 100 + x, nil
			}
			var v int
			var ok bool
			var err error
			runcheck.Run(t, "first", func() {
				v, ok, err = sink.First(context.Background(), stage.Map(source.Slice(ints(8)), f,
					m.opts(stage.Retry(3, 0), stage.Timeout(time.Minute))...))
			})
			if v != 100 || !ok || err != nil {
				t.Errorf("First = %d, %v, %v; want 100, true, nil", v, ok, err)
			}
		})
	}
}

// TestReview87UntilStoppedBeforeRun attacks:
//
//	Until: "Once stop is done, no source upstream is asked for another
//	item."; "the sink returns nil once the last of them has arrived, as at
//	the end of the input"
//	Batch: "the last, partial batch is never lost" (there is none)
func TestReview87UntilStoppedBeforeRun(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	drain()
	var nexts, calls atomic.Int32
	src := source.Func(func(ctx context.Context) (int, error) { nexts.Add(1); return 0, nil })
	for _, m := range r87modes {
		s := stage.Batch(stage.Map(stage.Until(src, stop), func(ctx context.Context, x int) (int, error) {
			calls.Add(1)
			return x, nil
		}, m.opts(stage.Retry(3, 0), stage.Timeout(time.Minute))...), 4, 0)
		var got [][]int
		var err error
		runcheck.Run(t, "stopped", func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil || got != nil {
			t.Errorf("%v: got %v, %v; want nil, nil", m, got, err)
		}
	}
	if nexts.Load() != 0 || calls.Load() != 0 {
		t.Errorf("next called %d times, f %d times; want 0", nexts.Load(), calls.Load())
	}
}

// TestReview87TimedOutCallIgnoringCtxIsWaitedFor attacks:
//
//	Timeout: "Timeout cannot stop a function that ignores its ctx: the stage
//	waits for it to return, however long that takes; what it returns then
//	counts"
//	Workers: "at most n"
//	Retry: the next attempt is a call of the same worker, after this one
//
// Each call ignores its ctx past its deadline (it holds on a while after
// the deadline, giving a wrongly started retry or next item every chance to
// show: no verdict depends on how long), then returns DeadlineExceeded on
// its first attempt and succeeds on its second. No two calls may overlap
// with one worker; no attempt of an item may overlap another of the same.
func TestReview87TimedOutCallIgnoringCtxIsWaitedFor(t *testing.T) {
	for _, m := range []r87mode{{1, false, 0}, {1, true, 0}, {1, false, 1}, {2, false, 0}, {2, true, 1}} {
		t.Run(m.String(), func(t *testing.T) {
			const n = 4
			var running, most atomic.Int32
			var perItem [n]atomic.Int32
			var overlapItem atomic.Int32
			var att [n]atomic.Int32
			f := func(ctx context.Context, x int) (int, error) {
				r := running.Add(1)
				defer running.Add(-1)
				for {
					mm := most.Load()
					if r <= mm || most.CompareAndSwap(mm, r) {
						break
					}
				}
				if perItem[x].Add(1) > 1 {
					overlapItem.Add(1)
				}
				defer perItem[x].Add(-1)
				a := att[x].Add(1)
				<-ctx.Done()
				time.Sleep(20 * time.Millisecond) // ignores its ctx a while
				if a == 1 {
					return 0, context.DeadlineExceeded
				}
				return x, nil
			}
			var got []int
			var err error
			runcheck.Run(t, "ignores ctx", func() {
				got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(n)), f,
					m.opts(stage.Timeout(time.Millisecond), stage.Retry(2, 0))...))
			})
			if err != nil || len(got) != n {
				t.Fatalf("got %v, %v", got, err)
			}
			if int(most.Load()) > m.workers || overlapItem.Load() != 0 {
				t.Errorf("%d calls at once (want at most %d), %d overlapping attempts of one item", most.Load(), m.workers, overlapItem.Load())
			}
		})
	}
}

// TestReview87RetryIfStopsAtPermanent attacks:
//
//	RetryIf: "Retry for the errors for which retryable returns true"
//	README: "Under Retry the policy sees the last attempt's error, and
//	Error.Attempts says how many calls were made."
func TestReview87RetryIfStopsAtPermanent(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			var att, preds atomic.Int32
			var seen *stage.Error
			h := func(_ context.Context, e *stage.Error) error { seen = e; return nil }
			var err error
			runcheck.Run(t, "permanent", func() {
				_, err = sink.Slice(context.Background(), stage.Map(source.Slice([]int{7}), func(ctx context.Context, x int) (int, error) {
					if att.Add(1) == 1 {
						return 0, errR87Fail
					}
					return 0, errR87Permanent
				}, m.opts(stage.Timeout(time.Minute), stage.RetryIf(5, 0, func(err error) bool {
					preds.Add(1)
					return errors.Is(err, errR87Fail)
				}), stage.OnError(stage.Handle(h)))...))
			})
			if err != nil || seen == nil || seen.Attempts != 2 || !errors.Is(seen, errR87Permanent) || seen.Input != 7 {
				t.Errorf("err %v, h saw %#v; want Attempts 2 with the permanent error", err, seen)
			}
			if preds.Load() != 2 || att.Load() != 2 {
				t.Errorf("predicate %d, calls %d; want 2, 2", preds.Load(), att.Load())
			}
		})
	}
}

// TestReview87OrderedPolicyErrorEndsRunBeforeItsTurn attacks:
//
//	Handle: "if h returns an error, the run fails with it as with FailFast"
//	Budget: "fails the run at the (n+1)th failed item"
//	Ordered: "Under FailFast a failure ends the run when its call fails, not
//	at its turn"
//
// Item 0 of an Ordered stage blocks until the run ends (its Timeout is a
// minute); item 2 fails after its retries and its policy fails the run.
func TestReview87OrderedPolicyErrorEndsRunBeforeItsTurn(t *testing.T) {
	hErr := errors.New("r87: handler fails the run")
	for _, pol := range []string{"handle", "budget0", "budget1"} {
		for _, m := range r87modes {
			if !m.ordered || m.workers == 1 {
				continue
			}
			for _, keyed := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%v/keyed=%v", pol, m, keyed), func(t *testing.T) {
					var policy stage.ErrorPolicy
					switch pol {
					case "handle":
						policy = stage.Handle(func(context.Context, *stage.Error) error { return hErr })
					case "budget0":
						policy = stage.Budget(0, nil)
					case "budget1":
						policy = stage.Budget(1, nil)
					}
					f := func(ctx context.Context, x int) (int, error) {
						switch x {
						case 0:
							return 0, r87blockUntilDone(ctx)
						case 1, 2:
							return 0, errR87Fail
						}
						return x, nil
					}
					opts := m.opts(stage.Timeout(time.Minute), stage.Retry(2, 0), stage.OnError(policy))
					if keyed {
						opts = append(opts, stage.KeyBy(func(x int) int { return x }))
					}
					var got []int
					var err error
					runcheck.Run(t, "policy before turn", func() {
						got, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(4)), f, opts...))
					})
					switch pol {
					case "handle":
						if !errors.Is(err, hErr) {
							t.Errorf("err = %v, want the handler's", err)
						}
					default:
						var e *stage.Error
						if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &e) || e.Attempts != 2 {
							t.Errorf("err = %v, want ErrBudget with the item's *Error", err)
						}
					}
					if len(got) != 0 {
						t.Errorf("got %v, want nothing (item 0 never finished)", got)
					}
				})
			}
		}
	}
}

// r87actAck is an Ack whose Done runs act.
type r87actAck struct{ act func(err error) }

func (a r87actAck) Done(err error) { a.act(err) }

// TestReview87AckDoneMisbehavesAfterHandledRetries attacks:
//
//	Ack: "Done(nil) when ... it was dropped on purpose: ... a Handle policy
//	that accepted its failure"; "Done is called from the goroutine that
//	settled the item (a worker, or the sink's) ... A panic in Done ends the
//	run with a *SourceError, which the sink returns unless its own result
//	was decided first"
//	README: "A t.Fatal (runtime.Goexit) in a function that ran on a
//	goroutine of the run fails it with stage.ErrGoexit"
//
// Item 1 fails every retry and a Handle policy drops it: its Done(nil) runs
// on a worker of the stage (Buffer keeps the workers the stage's own), and
// panics or calls runtime.Goexit.
func TestReview87AckDoneMisbehavesAfterHandledRetries(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, how := range []string{"panic", "goexit"} {
			for _, m := range []r87mode{{1, false, 1}, {3, false, 1}, {3, true, 1}, {-1, true, 1}, {-1, false, 0}} {
				t.Run(fmt.Sprintf("%s/%v", how, m), func(t *testing.T) {
					var done1 atomic.Int32
					var stopped atomic.Int32
					src := stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
						i := 0
						return func(ctx context.Context) (int, stage.Ack, error) {
								if i >= 3 {
									return 0, nil, io.EOF
								}
								i++
								x := i - 1
								return x, r87actAck{act: func(err error) {
									if x != 1 {
										return
									}
									done1.Add(1)
									if err != nil {
										return
									}
									if how == "panic" {
										panic("r87 Done panic")
									}
									runtime.Goexit()
								}}, nil
							}, func() {
								stopped.Add(1)
							}
					})
					var handled atomic.Int32
					var err error
					runcheck.Run(t, "ack done", func() {
						_, err = sink.Slice(context.Background(), stage.Map(src, func(ctx context.Context, x int) (int, error) {
							if x == 1 {
								return 0, errR87Fail
							}
							return x, nil
						}, m.opts(stage.Retry(3, 0), stage.Timeout(time.Minute), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
							handled.Add(1)
							return nil
						})))...))
					})
					if handled.Load() != 1 || done1.Load() != 1 {
						t.Fatalf("handled %d, item 1's Done called %d times; want 1, 1", handled.Load(), done1.Load())
					}
					switch how {
					case "panic":
						var se *stage.SourceError
						var pe *stage.PanicError
						if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "r87 Done panic" {
							t.Errorf("err = %v, want a *SourceError wrapping Done's panic", err)
						}
					case "goexit":
						if !errors.Is(err, stage.ErrGoexit) {
							t.Errorf("err = %v, want ErrGoexit", err)
						}
					}
					if stopped.Load() != 1 {
						t.Errorf("stop called %d times, want 1", stopped.Load())
					}
				})
			}
		}
	})
}

// TestReview87CancelWhileOrderedEmitWaits attacks:
//
//	Apply: "Each further output waits while the stage's queue holds as many
//	outputs as its read-ahead bound ... emit returns false, and drops the
//	output, once the run is cancelled; f should then return." "With Ordered,
//	... a further output waits while the window holds 2×workers + buffer
//	outputs waiting so"
//	Cancellation: "Every blocking step of a run ... can be abandoned"
//
// Item 0 blocks until the run ends; item 1 emits far more than the window
// holds, so its emit waits; the caller cancels once item 1 has emitted a
// window's worth. For FlatMap, item 1 returns a large slice.
func TestReview87CancelWhileOrderedEmitWaits(t *testing.T) {
	for _, kind := range []string{"apply", "flatmap"} {
		for _, m := range []r87mode{{2, true, 0}, {3, true, 2}, {-1, true, 0}, {2, true, 0}} {
			t.Run(fmt.Sprintf("%s/%v", kind, m), func(t *testing.T) {
				const many = 200
				window := 2*m.workers + m.buffer
				if m.workers < 0 {
					window = 4 // Workers(-1): unbounded; cancel after a few
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				enough := make(chan struct{})
				var emitted, refused atomic.Int32
				src := source.Slice(ints(3))
				opts := m.opts(stage.Timeout(time.Minute), stage.Retry(2, 0))
				var s stage.Stream[int]
				switch kind {
				case "apply":
					s = stage.Apply(src, func(ctx context.Context, x int, emit func(int) bool) error {
						if x == 0 {
							return r87blockUntilDone(ctx)
						}
						if x == 2 {
							return nil
						}
						for j := range many {
							if emitted.Add(1) == int32(window) {
								close(enough)
							}
							if !emit(j) {
								refused.Add(1)
								return ctx.Err()
							}
						}
						return nil
					}, opts...)
				case "flatmap":
					s = stage.FlatMap(src, func(ctx context.Context, x int) ([]int, error) {
						if x == 0 {
							return nil, r87blockUntilDone(ctx)
						}
						if x == 1 {
							close(enough)
							return make([]int, many), nil
						}
						return nil, nil
					}, opts...)
				}
				var err error
				runcheck.Run(t, "emit waits", func() {
					go func() {
						<-enough
						cancel()
					}()
					_, err = sink.Slice(ctx, s)
				})
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want Canceled", err)
				}
			})
		}
	}
}

// TestReview87BudgetCountsKeyPanics attacks:
//
//	KeyBy: "A panic in key fails the item as a panic in the stage's
//	function does: an *Error wrapping a *PanicError goes to the stage's
//	policy"
//	Budget: "the (n+1)th, which h does not see, fails the run with an error
//	that wraps both ErrBudget and that item's *Error"
func TestReview87BudgetCountsKeyPanics(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			var seen []*stage.Error
			var mu sync.Mutex
			h := func(_ context.Context, e *stage.Error) error {
				mu.Lock()
				seen = append(seen, e)
				mu.Unlock()
				return nil
			}
			key := func(x int) int {
				if x%2 == 1 {
					panic(fmt.Sprintf("r87 key %d", x))
				}
				return x
			}
			var err error
			runcheck.Run(t, "budget keys", func() {
				_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(6)), double,
					m.opts(stage.KeyBy(key), stage.Retry(3, 0), stage.Timeout(time.Minute), stage.OnError(stage.Budget(2, h)))...))
			})
			var e *stage.Error
			var pe *stage.PanicError
			if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &e) || !errors.As(err, &pe) || e.Attempts != 0 {
				t.Fatalf("err = %v, want ErrBudget wrapping the third key panic's *Error (Attempts 0)", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 2 || seen[0].Attempts != 0 || seen[1].Attempts != 0 || seen[0].Index == e.Index || seen[1].Index == e.Index {
				t.Errorf("h saw %v; want the two other key panics", seen)
			}
		})
	}
}

// TestReview87UntilTeeRetryDrain attacks:
//
//	Until: "Put Until before a Tee"; "every item they already produced goes
//	on through the stages: calls in flight finish ... and the sink returns
//	nil"
//	Tee: "n streams that each see every item of in"
//
// The drain comes while item 0 is being retried upstream of a Tee: both
// branches still get it.
func TestReview87UntilTeeRetryDrain(t *testing.T) {
	for _, m := range []r87mode{{2, false, 0}, {2, true, 0}, {3, false, 1}, {-1, true, 0}} {
		t.Run(m.String(), func(t *testing.T) {
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			failed := make(chan struct{})
			nextWaits := make(chan struct{})
			srcSawStop := make(chan struct{})
			var handed atomic.Int32
			src := source.Func(func(ctx context.Context) (int, error) {
				switch handed.Add(1) {
				case 1:
					return 7, nil
				case 2:
					close(nextWaits)
					<-ctx.Done()
					close(srcSawStop)
					return 0, ctx.Err()
				}
				return 0, errors.New("r87: next after the drain")
			})
			var att atomic.Int32
			up := stage.Map(stage.Until(src, stop), func(ctx context.Context, x int) (int, error) {
				if att.Add(1) == 1 {
					close(failed)
					return 0, errR87Fail
				}
				select {
				case <-srcSawStop:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
				return x, nil
			}, m.opts(stage.Retry(3, time.Millisecond), stage.Timeout(time.Minute))...)
			b := stage.Tee(up, 2)
			br := func(i int) stage.Stream[int] {
				return stage.Map(b[i], func(_ context.Context, v int) (int, error) { return 10*i + v, nil }, stage.Retry(2, 0))
			}
			var got []int
			var err error
			runcheck.Run(t, "tee drain", func() {
				go func() {
					<-failed
					<-nextWaits
					drain()
				}()
				got, err = sink.Slice(context.Background(), stage.Merge(br(0), br(1)))
			})
			slices.Sort(got)
			if err != nil || !slices.Equal(got, []int{7, 17}) {
				t.Errorf("got %v, %v; want [7 17], nil", got, err)
			}
		})
	}
}

// TestReview87IndexOnFastPathsWithRetry attacks:
//
//	Error.Index: "the item's 0-based position in the stage's input"
//	Error.Attempts: "how many times the stage tried the item"
//	Workers: "the goroutines of its consumer ... may take workers' places:
//	once calls prove cheap ... a consumer goroutine ... calls the function
//	itself"
//
// Cheap calls over sources that let a stage run in its consumer's goroutines
// (a slice, a NeverWaits generator, a channel, an iterator), with retries,
// a Timeout and KeyBy or not: every forwarded error's Index is its item's
// position (the items are 0..n-1, so Index == Input), its Attempts the
// retry count, and every item is accounted for once.
func TestReview87IndexOnFastPathsWithRetry(t *testing.T) {
	const n = 600
	sources := map[string]func() stage.Stream[int]{
		"slice": func() stage.Stream[int] { return source.Slice(ints(n)) },
		"neverwaits": func() stage.Stream[int] {
			return stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				i := 0
				return func(context.Context) (int, error) {
					if i >= n {
						return 0, io.EOF
					}
					i++
					return i - 1, nil
				}, nil
			}))
		},
		"chan": func() stage.Stream[int] {
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			close(ch)
			return source.Chan(ch)
		},
		"seq": func() stage.Stream[int] { return source.Seq(slices.Values(ints(n))) },
	}
	for name, mk := range sources {
		for _, m := range []r87mode{{1, false, 0}, {4, false, 0}, {4, true, 0}, {2, false, 0}} {
			for _, keyed := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%v/keyed=%v", name, m, keyed), func(t *testing.T) {
					opts := m.opts(stage.Retry(3, 0), stage.OnError(stage.Forward))
					if keyed {
						opts = append(opts, stage.KeyBy(func(x int) int { return x % 5 }))
					}
					var calls [n]atomic.Int32
					s := stage.Map(mk(), func(ctx context.Context, x int) (int, error) {
						calls[x].Add(1)
						if x%7 == 0 {
							return 0, errR87Fail
						}
						return x, nil
					}, opts...)
					var pairs []r87pair[int]
					runcheck.Run(t, "fast", func() { pairs = r87all(context.Background(), s) })
					if len(pairs) != n {
						t.Fatalf("%d pairs, want %d", len(pairs), n)
					}
					seen := make([]int, n)
					for i, p := range pairs {
						if p.err != nil {
							var e *stage.Error
							if !errors.As(p.err, &e) || e.Index != e.Input || e.Attempts != 3 || e.Index%7 != 0 {
								t.Fatalf("pair %d: %v (%#v): want Index == Input, Attempts 3", i, p.err, e)
							}
							seen[e.Index]++
							if (m.ordered || m.workers == 1) && e.Index != i {
								t.Errorf("pair %d: error of index %d out of order", i, e.Index)
							}
							continue
						}
						seen[p.v]++
						if (m.ordered || m.workers == 1) && p.v != i {
							t.Errorf("pair %d: value %d out of order", i, p.v)
						}
					}
					for x := range n {
						want := int32(1)
						if x%7 == 0 {
							want = 3
						}
						if seen[x] != 1 || calls[x].Load() != want {
							t.Fatalf("item %d: seen %d times, called %d; want 1, %d", x, seen[x], calls[x].Load(), want)
						}
					}
				})
			}
		}
	}
}

// TestReview87InvalidOptionsPanicAtBuild attacks:
//
//	Option: "Options are checked when they are made and when the stage is
//	built: an invalid one panics there, never during a run. The zero Option
//	is not an option: building a stage with one panics."
//	KeyBy: "The stage panics when it is built if its input type is not T"
//	Retry/RetryIf/Timeout/Buffer/Workers/RateLimit/SharedRateLimit/Budget/
//	Name: "... panics if ..."
func TestReview87InvalidOptionsPanicAtBuild(t *testing.T) {
	id := func(_ context.Context, x int) (int, error) { return x, nil }
	src := source.Slice(ints(3))
	cases := map[string]func(){
		"zero option": func() { stage.Map(src, id, stage.Retry(2, 0), stage.Option{}) },
		"keyby type":  func() { stage.Map(src, id, stage.Retry(2, 0), stage.KeyBy(func(s string) string { return s })) },
		"keyby type ordered": func() {
			stage.Filter(src, func(context.Context, int) (bool, error) { return true, nil }, stage.Ordered(), stage.KeyBy(func(s int64) int64 { return s }))
		},
		"keyby on concurrent": func() {
			stage.Concurrent(source.Slice([]func(context.Context) (int, error){}), stage.KeyBy(func(x int) int { return x }))
		},
		"retry 0":           func() { stage.Retry(0, 0) },
		"retry neg backoff": func() { stage.Retry(2, -1) },
		"retryif nil":       func() { stage.RetryIf(2, 0, nil) },
		"retryif 0":         func() { stage.RetryIf(0, 0, func(error) bool { return true }) },
		"timeout 0":         func() { stage.Timeout(0) },
		"timeout neg":       func() { stage.Timeout(-time.Second) },
		"buffer neg":        func() { stage.Buffer(-1) },
		"workers -2":        func() { stage.Workers(-2) },
		"ratelimit nan":     func() { stage.RateLimit(math.NaN(), 1) },
		"ratelimit 0":       func() { stage.RateLimit(0, 1) },
		"ratelimit burst 0": func() { stage.RateLimit(1, 0) },
		"shared nil":        func() { stage.SharedRateLimit(nil) },
		"budget neg":        func() { stage.Budget(-1, nil) },
		"handle nil":        func() { stage.Handle(nil) },
		"name empty":        func() { stage.Name("") },
		"keyby nil":         func() { stage.KeyBy[int, int](nil) },
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic when built", name)
				}
			}()
			build()
		})
	}
}

// TestReview87CancelDuringLastCallback attacks:
//
//	Run: "f saw the end of s when Run, asking for the next item after f
//	returned for the last one, found none: a cancellation of ctx while f
//	works on the last item comes before the end"; "when ctx was cancelled,
//	an error for which errors.Is(err, context.Canceled) ... holds"
//	All: "If the run fails, the last pair is (zero, err) with the error that
//	ended it."
//
// The callback (or loop body) cancels the caller's ctx while it handles the
// last item of a retried, timed stage, and returns normally.
func TestReview87CancelDuringLastCallback(t *testing.T) {
	for _, how := range []string{"foreach", "all"} {
		for _, m := range r87modes {
			t.Run(fmt.Sprintf("%s/%v", how, m), func(t *testing.T) {
				const n = 3
				var att [n]atomic.Int32
				s := stage.Map(source.Slice(ints(n)), func(ctx context.Context, x int) (int, error) {
					if att[x].Add(1) == 1 && x == 1 {
						return 0, errR87Fail
					}
					return x, nil
				}, m.opts(stage.Retry(2, 0), stage.Timeout(time.Minute))...)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				seen := 0
				var err error
				var pairs []r87pair[int]
				runcheck.Run(t, "last", func() {
					if how == "foreach" {
						err = sink.ForEach(ctx, s, func(context.Context, int) error {
							seen++
							if seen == n {
								cancel()
							}
							return nil
						})
						return
					}
					for v, e := range sink.All(ctx, s) {
						pairs = append(pairs, r87pair[int]{v, e})
						if e == nil {
							seen++
							if seen == n {
								cancel()
							}
						}
					}
					if len(pairs) > 0 {
						err = pairs[len(pairs)-1].err
					}
				})
				if seen != n || !errors.Is(err, context.Canceled) {
					t.Errorf("saw %d items, err %v; want %d and Canceled (the cancellation came before the end)", seen, err, n)
				}
				if how == "all" && len(pairs) != n+1 {
					t.Errorf("pairs %v, want %d values then the cancellation", pairs, n)
				}
			})
		}
	}
}

// TestReview87AlreadyCancelledRunsNothing attacks:
//
//	Cancellation: "Once the run is cancelled, no source's next (or Indexed's
//	at) is called, no call of a stage's function starts and the sink
//	delivers nothing more"
//	First: "(zero, false, err) when ... the run failed before any item"
func TestReview87AlreadyCancelledRunsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var ats, calls, handled atomic.Int32
	for _, m := range r87modes {
		s := stage.Map(stage.Indexed(5, func(i int) int { ats.Add(1); return i }), func(ctx context.Context, x int) (int, error) {
			calls.Add(1)
			return 0, errR87Fail
		}, m.opts(stage.Retry(3, 0), stage.Timeout(time.Minute), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
			handled.Add(1)
			return nil
		})))...)
		var v int
		var ok bool
		var err error
		runcheck.Run(t, "cancelled", func() { v, ok, err = sink.First(ctx, s) })
		if v != 0 || ok || !errors.Is(err, context.Canceled) {
			t.Errorf("%v: First = %d, %v, %v; want 0, false, Canceled", m, v, ok, err)
		}
		var got []int
		runcheck.Run(t, "cancelled slice", func() { got, err = sink.Slice(ctx, s) })
		if got != nil || !errors.Is(err, context.Canceled) {
			t.Errorf("%v: Slice = %v, %v; want nil, Canceled", m, got, err)
		}
	}
	if ats.Load() != 0 || calls.Load() != 0 || handled.Load() != 0 {
		t.Errorf("at %d, calls %d, handled %d; want none", ats.Load(), calls.Load(), handled.Load())
	}
}

// TestReview87CallerDeadlineDuringTimedCall attacks:
//
//	Run: "when ctx was cancelled, an error for which errors.Is(err,
//	context.Canceled) (or context.DeadlineExceeded) holds"
//	Watcher.Finished: a call that "returned an error once the run was ending
//	(... the caller's cancellation ...)" is cut short, "whatever error the
//	function returned: the call neither succeeded nor failed"
//	Timeout: "Only that call's context expires, not the run's" (and here
//	the run's ends first)
//
// The caller's ctx has a deadline (50ms: it only has to pass, no verdict
// depends on it); each call blocks until its ctx is done under a minute's
// Timeout. The caller's deadline ends the call: the sink returns the
// caller's DeadlineExceeded, not an item error; no retry, no handler.
func TestReview87CallerDeadlineDuringTimedCall(t *testing.T) {
	for _, pol := range []string{"failfast", "forward", "handle"} {
		for _, m := range r87modes {
			t.Run(fmt.Sprintf("%s/%v", pol, m), func(t *testing.T) {
				var calls, handled atomic.Int32
				policy := stage.FailFast
				switch pol {
				case "forward":
					policy = stage.Forward
				case "handle":
					policy = stage.Handle(func(context.Context, *stage.Error) error { handled.Add(1); return nil })
				}
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				st := &stage.Stats{}
				var got []int
				var err error
				runcheck.Run(t, "caller deadline", func() {
					got, err = sink.Slice(stage.Observe(ctx, st), stage.Map(source.Slice(ints(2)), func(ctx context.Context, x int) (int, error) {
						calls.Add(1)
						return 0, r87blockUntilDone(ctx)
					}, m.opts(stage.Name("cd"), stage.Timeout(time.Minute), stage.Retry(3, 0), stage.OnError(policy))...))
				})
				var e *stage.Error
				var fe *sink.ForwardedError
				if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &e) || errors.As(err, &fe) || got != nil {
					t.Errorf("got %v, err = %v; want the caller's DeadlineExceeded alone", got, err)
				}
				if int(calls.Load()) > 2 || handled.Load() != 0 {
					t.Errorf("calls %d (want at most one per item), handled %d (want 0)", calls.Load(), handled.Load())
				}
				if c, _ := st.Get("cd"); c.Failed != 0 {
					t.Errorf("Stats %+v, want no failure", c)
				}
			})
		}
	}
}

// TestReview87UntilNextErrorAfterStopIsQuiet attacks:
//
//	Source: "an error next returns once stop is done ends the stream
//	quietly, whether or not its context has ended yet"
//	Until: "the sink returns nil once the last of them has arrived"
//
// next waits on the stop context itself (not its ctx) and returns an error
// of its own once stop is done; the item taken before, still being retried,
// goes through.
func TestReview87UntilNextErrorAfterStopIsQuiet(t *testing.T) {
	for _, ack := range []bool{false, true} {
		for _, m := range []r87mode{{2, false, 0}, {2, true, 0}, {3, false, 1}, {-1, false, 0}} {
			t.Run(fmt.Sprintf("ack=%v/%v", ack, m), func(t *testing.T) {
				stop, drain := context.WithCancel(context.Background())
				defer drain()
				nextWaits := make(chan struct{})
				nextReturned := make(chan struct{})
				var handed atomic.Int32
				next := func(ctx context.Context) (int, error) {
					switch handed.Add(1) {
					case 1:
						return 5, nil
					case 2:
						close(nextWaits)
						<-stop.Done()
						close(nextReturned)
						return 0, errors.New("r87: connection closed by the drain")
					}
					return 0, errors.New("r87: next after the drain")
				}
				var src stage.Stream[int]
				var acks atomic.Int32
				if ack {
					src = stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
						return func(ctx context.Context) (int, stage.Ack, error) {
							v, err := next(ctx)
							return v, r87actAck{act: func(err error) {
								if err == nil {
									acks.Add(1)
								}
							}}, err
						}, nil
					})
				} else {
					src = source.Func(next)
				}
				var att atomic.Int32
				s := stage.Map(stage.Until(src, stop), func(ctx context.Context, x int) (int, error) {
					if att.Add(1) == 1 {
						return 0, errR87Fail
					}
					select {
					case <-nextReturned:
					case <-ctx.Done():
						return 0, ctx.Err()
					}
					return x, nil
				}, m.opts(stage.Retry(3, 0), stage.Timeout(time.Minute))...)
				var got []int
				var err error
				runcheck.Run(t, "quiet", func() {
					go func() {
						<-nextWaits
						drain()
					}()
					got, err = sink.Slice(context.Background(), s)
				})
				if err != nil || !slices.Equal(got, []int{5}) {
					t.Errorf("got %v, %v; want [5], nil: next's error after the drain ends the stream quietly", got, err)
				}
				if ack && acks.Load() != 1 {
					t.Errorf("%d items acknowledged, want 1", acks.Load())
				}
			})
		}
	}
}

// TestReview87SourceStopPanicAfterRetries attacks:
//
//	Source: "A source that finds a failure after its last item ... reports
//	it by panicking in stop with a *SourceError: the run fails with that
//	error as it is, unless its result was decided first (a failure, a
//	cancellation, an early stop)." "(or a panic in open, next or stop)
//	becomes a *SourceError that ends the run"
func TestReview87SourceStopPanicAfterRetries(t *testing.T) {
	late := &stage.SourceError{Err: errors.New("r87: acks failed during the drain")}
	for _, kind := range []string{"sourceerror", "other"} {
		for _, fail := range []bool{false, true} {
			for _, m := range []r87mode{{1, false, 0}, {3, true, 0}, {3, false, 1}} {
				t.Run(fmt.Sprintf("%s/fail=%v/%v", kind, fail, m), func(t *testing.T) {
					src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
						i := 0
						return func(context.Context) (int, error) {
								if i >= 4 {
									return 0, io.EOF
								}
								i++
								return i - 1, nil
							}, func() {
								if kind == "sourceerror" {
									panic(late)
								}
								panic("r87 stop panic")
							}
					})
					var att [4]atomic.Int32
					var err error
					runcheck.Run(t, "stop panic", func() {
						_, err = sink.Slice(context.Background(), stage.Map(src, func(ctx context.Context, x int) (int, error) {
							if fail && x == 2 {
								return 0, errR87Permanent
							}
							if att[x].Add(1) == 1 {
								return 0, errR87Fail
							}
							return x, nil
						}, m.opts(stage.RetryIf(2, 0, func(err error) bool { return errors.Is(err, errR87Fail) }), stage.Timeout(time.Minute))...))
					})
					var se *stage.SourceError
					switch {
					case fail:
						var e *stage.Error
						if !errors.As(err, &e) || e.Index != 2 || errors.As(err, &se) {
							t.Errorf("err = %v, want item 2's *Error (decided first)", err)
						}
					case kind == "sourceerror":
						if !errors.As(err, &se) || se != late {
							t.Errorf("err = %v (%T), want stop's *SourceError as it is", err, err)
						}
					default:
						var pe *stage.PanicError
						if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "r87 stop panic" {
							t.Errorf("err = %v, want a *SourceError wrapping stop's panic", err)
						}
					}
				})
			}
		}
	}
}

// TestReview87OwnContextFailureAfterDone attacks:
//
//	Cancellation: "A caller's ctx of a context type the context package
//	cannot see into ... is watched from a goroutine of the run, so the
//	functions' ctx ends a moment after it ...; but from the moment its Done
//	channel is closed the run takes no new step, as with a standard
//	context, and a failure that comes after (a stage's, ...; not an error
//	the sink's callback returns ...) is not the run's: the sink returns the
//	caller's cancellation."
//
// The caller's ctx is a type of its own; a retried, timed call waits on
// that ctx's Done channel itself (not its own ctx), then fails with an error
// the predicate does not retry (or a handler that fails the run): the
// failure came after the Done channel closed, so the sink returns the
// cancellation.
func TestReview87OwnContextFailureAfterDone(t *testing.T) {
	hErr := errors.New("r87: handler error after the caller's cancellation")
	for _, pol := range []string{"failfast", "handle", "budget"} {
		for _, m := range r87modes {
			t.Run(fmt.Sprintf("%s/%v", pol, m), func(t *testing.T) {
				caller := ctxtest.NewDoneCtx()
				started := make(chan struct{})
				var once sync.Once
				var policy stage.ErrorPolicy
				switch pol {
				case "handle":
					policy = stage.Handle(func(context.Context, *stage.Error) error { return hErr })
				case "budget":
					policy = stage.Budget(0, nil)
				}
				var calls atomic.Int32
				var err error
				runcheck.Run(t, "own ctx", func() {
					go func() {
						<-started
						caller.Cancel()
					}()
					_, err = sink.Slice(caller, stage.Map(source.Slice([]int{0}), func(ctx context.Context, x int) (int, error) {
						calls.Add(1)
						once.Do(func() { close(started) })
						<-caller.Done()
						return 0, errR87Permanent
					}, m.opts(stage.Timeout(time.Minute), stage.RetryIf(3, 0, func(err error) bool { return errors.Is(err, errR87Fail) }), stage.OnError(policy))...))
				})
				var e *stage.Error
				if !errors.Is(err, context.Canceled) || errors.As(err, &e) || errors.Is(err, hErr) || errors.Is(err, stage.ErrBudget) {
					t.Errorf("err = %v, want the caller's cancellation alone", err)
				}
				if calls.Load() != 1 {
					t.Errorf("%d calls, want 1", calls.Load())
				}
			})
		}
	}
}

type r87attemptErr struct{ attempt int32 }

func (e *r87attemptErr) Error() string { return fmt.Sprintf("r87 attempt %d", e.attempt) }

// TestReview87LastAttemptErrorUnchanged attacks:
//
//	Error: "The user's error is Err, unchanged"
//	Retry: "Only the last error reaches the error policy"
//	Error.Error: "reports the stage, the item's index and the cause"
//
// Each attempt returns an error value of its own; the *Error the policy
// sees holds the last one itself.
func TestReview87LastAttemptErrorUnchanged(t *testing.T) {
	for _, pol := range []string{"failfast", "forward", "handle"} {
		for _, m := range r87modes {
			t.Run(fmt.Sprintf("%s/%v", pol, m), func(t *testing.T) {
				var mu sync.Mutex
				var last error
				var att atomic.Int32
				var handled *stage.Error
				policy := stage.FailFast
				switch pol {
				case "forward":
					policy = stage.Forward
				case "handle":
					policy = stage.Handle(func(_ context.Context, e *stage.Error) error { handled = e; return nil })
				}
				f := func(ctx context.Context, x int) (int, error) {
					if x != 3 {
						return x, nil
					}
					e := &r87attemptErr{att.Add(1)}
					mu.Lock()
					last = e
					mu.Unlock()
					return 0, e
				}
				var err error
				runcheck.Run(t, "unchanged", func() {
					_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(5)), f,
						m.opts(stage.Name("uc"), stage.Retry(3, 0), stage.Timeout(time.Minute), stage.OnError(policy))...))
				})
				var e *stage.Error
				if pol == "handle" {
					e = handled
				} else if !errors.As(err, &e) {
					t.Fatalf("err = %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				if e == nil || e.Err != last || e.Attempts != 3 || e.Index != 3 || e.Input != 3 {
					t.Fatalf("the policy saw %#v, want Err == the last attempt's error %p (attempt 3)", e, last)
				}
				if msg := e.Error(); !strings.Contains(msg, "uc") || !strings.Contains(msg, "3") || !strings.Contains(msg, "r87 attempt 3") {
					t.Errorf("Error() = %q, want the stage, the index and the cause", msg)
				}
			})
		}
	}
}

// TestReview87KeyByWaitingHoldsPlaceDuringRetry attacks:
//
//	KeyBy: "an item waiting for its key holds one of the stage's read-ahead
//	places, so the stage still takes at most workers+buffer items ahead of
//	its consumer (2×workers+buffer when it is Ordered ...; memory stays
//	bounded even if every item has the same key"
//
// Every item has one key; item 0 fails and its retry waits at a gate, so
// nothing leaves the stage: the source may be asked for at most the bound
// (counted when the gate opens, after a grace that lets a wrong pull show).
func TestReview87KeyByWaitingHoldsPlaceDuringRetry(t *testing.T) {
	for _, m := range []r87mode{{3, false, 0}, {3, false, 2}, {2, true, 0}, {2, true, 1}, {1, false, 0}, {1, false, 2}} {
		t.Run(m.String(), func(t *testing.T) {
			const n = 100
			var taken atomic.Int32
			src := source.Func(func(ctx context.Context) (int, error) {
				i := int(taken.Add(1)) - 1
				if i >= n {
					return 0, io.EOF
				}
				return i, nil
			})
			gate := make(chan struct{})
			failed := make(chan struct{})
			var att, atGate atomic.Int32
			f := func(ctx context.Context, x int) (int, error) {
				if x == 0 {
					if att.Add(1) == 1 {
						close(failed)
						return 0, errR87Fail
					}
					<-gate
				}
				return x, nil
			}
			bound := m.workers + m.buffer
			if m.ordered {
				bound = 2*m.workers + m.buffer
			}
			var got []int
			var err error
			runcheck.Run(t, "one key", func() {
				go func() {
					<-failed
					time.Sleep(100 * time.Millisecond) // grace for a wrong pull to show
					atGate.Store(taken.Load())
					close(gate)
				}()
				got, err = sink.Slice(context.Background(), stage.Map(src, f,
					m.opts(stage.KeyBy(func(int) string { return "k" }), stage.Retry(2, 0), stage.Timeout(time.Minute))...))
			})
			if err != nil || !slices.Equal(got, ints(n)) {
				t.Fatalf("got %v, %v; want 0..%d in order (one key)", got, err, n-1)
			}
			if int(atGate.Load()) > bound {
				t.Errorf("the source was asked for %d items while item 0 held the key, want at most %d", atGate.Load(), bound)
			}
		})
	}
}

// TestReview87FirstOverChanTakesLittle attacks:
//
//	First: "Only the items the stages were already working on are computed"
//	README: "no stage is more than its workers plus its buffer ahead of its
//	consumer (at the sink, one item more ...)"; "A channel source never
//	closes or drains the caller's channel"
//
// The first item needs a retry; First stops the run. The stage may have
// taken at most workers+buffer+1 values from the channel (Ordered:
// 2×workers+buffer+1): the rest stay in it.
func TestReview87FirstOverChanTakesLittle(t *testing.T) {
	for _, m := range []r87mode{{1, false, 0}, {1, true, 0}, {2, false, 0}, {2, true, 1}, {3, false, 2}} {
		t.Run(m.String(), func(t *testing.T) {
			const n = 30
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			var att atomic.Int32
			var v int
			var ok bool
			var err error
			runcheck.Run(t, "first chan", func() {
				v, ok, err = sink.First(context.Background(), stage.Map(source.Chan(ch), func(ctx context.Context, x int) (int, error) {
					if x == 0 && att.Add(1) == 1 {
						return 0, errR87Fail
					}
					return x, nil
				}, m.opts(stage.Retry(2, 0), stage.Timeout(time.Minute))...))
			})
			if err != nil || !ok || (m.ordered || m.workers == 1) && v != 0 {
				t.Errorf("First = %d, %v, %v", v, ok, err)
			}
			bound := m.workers + m.buffer + 1
			if m.ordered {
				bound = 2*m.workers + m.buffer + 1
			}
			if taken := n - len(ch); taken > bound {
				t.Errorf("the run took %d values from the channel, want at most %d", taken, bound)
			}
		})
	}
}

// TestReview87UnconsumedBranchBeforeAnyCall attacks:
//
//	Tee: "A run that does not consume every branch fails before any
//	goroutine of it that calls a function of the pipeline starts ... and
//	before any item is taken, with an error that wraps ErrUnconsumedBranch"
func TestReview87UnconsumedBranchBeforeAnyCall(t *testing.T) {
	for _, m := range r87modes {
		var nexts, calls, opens atomic.Int32
		src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			opens.Add(1)
			return func(context.Context) (int, error) { nexts.Add(1); return 0, nil }, nil
		})
		up := stage.Map(src, func(ctx context.Context, x int) (int, error) { calls.Add(1); return x, nil },
			m.opts(stage.Retry(3, time.Hour), stage.Timeout(time.Minute), stage.KeyBy(func(x int) int { return x }))...)
		b := stage.Tee(up, 3)
		var err error
		runcheck.Run(t, "unconsumed", func() {
			_, err = sink.Slice(context.Background(), stage.Merge(b[0], stage.Map(b[2], double, stage.Retry(2, 0))))
		})
		if !errors.Is(err, stage.ErrUnconsumedBranch) {
			t.Errorf("%v: err = %v, want ErrUnconsumedBranch", m, err)
		}
		if nexts.Load() != 0 || calls.Load() != 0 {
			t.Errorf("%v: next %d, calls %d; want none", m, nexts.Load(), calls.Load())
		}
	}
}

// TestReview87OrderedApplyHandledKeepsEmitted attacks:
//
//	Handle: "If h returns nil, the item is dropped (outputs it emitted
//	before failing stay emitted) and the run goes on"
//	Retry: "Outputs that a failed attempt emitted stay emitted"
//	Apply: "With Ordered, an item's outputs wait in memory until the items
//	before it have left"
func TestReview87OrderedApplyHandledKeepsEmitted(t *testing.T) {
	for _, pol := range []string{"handle", "budget"} {
		for _, m := range r87modes {
			if !m.ordered && m.workers != 1 {
				continue
			}
			t.Run(fmt.Sprintf("%s/%v", pol, m), func(t *testing.T) {
				const n = 10
				var att [n]atomic.Int32
				policy := stage.Handle(func(context.Context, *stage.Error) error { return nil })
				if pol == "budget" {
					policy = stage.Budget(n, nil)
				}
				var got []string
				var err error
				runcheck.Run(t, "handled emits", func() {
					got, err = sink.Slice(context.Background(), stage.Apply(source.Slice(ints(n)), func(ctx context.Context, x int, emit func(string) bool) error {
						a := att[x].Add(1)
						emit(fmt.Sprintf("%d.%d", x, a))
						if x%2 == 0 {
							return errR87Fail
						}
						return nil
					}, m.opts(stage.Retry(3, 0), stage.Timeout(time.Minute), stage.OnError(policy))...))
				})
				var want []string
				for x := range n {
					if x%2 == 0 {
						want = append(want, fmt.Sprintf("%d.1", x), fmt.Sprintf("%d.2", x), fmt.Sprintf("%d.3", x))
					} else {
						want = append(want, fmt.Sprintf("%d.1", x))
					}
				}
				if err != nil || !slices.Equal(got, want) {
					t.Errorf("got  %v, %v\nwant %v", got, err, want)
				}
			})
		}
	}
}

// TestReview87BudgetPerStageConcurrentTimed attacks:
//
//	Budget: "The count is per stage and per run"
//	Concurrent: "A task's error is handled by the stage's ErrorPolicy"
//	Timeout: "gives each call of the stage's function (each attempt, under
//	Retry) a context that expires d after the call starts"
//
// Two stages with Budget(2) each fail twice: neither exceeds its own
// budget, although together they fail four times. The second stage runs
// tasks whose first attempt blocks until its Timeout.
func TestReview87BudgetPerStageConcurrentTimed(t *testing.T) {
	for _, m := range r87modes {
		t.Run(m.String(), func(t *testing.T) {
			const n = 8
			s1 := stage.Map(source.Slice(ints(n)), func(ctx context.Context, x int) (int, error) {
				if x == 1 || x == 4 {
					return 0, errR87Fail
				}
				return x, nil
			}, m.opts(stage.Retry(2, 0), stage.OnError(stage.Budget(2, nil)))...)
			var att [n]atomic.Int32
			tasks := stage.Map(s1, func(_ context.Context, x int) (func(context.Context) (int, error), error) {
				return func(ctx context.Context) (int, error) {
					if att[x].Add(1) == 1 {
						return 0, r87blockUntilDone(ctx) // each attempt its own deadline
					}
					if x == 2 || x == 6 {
						return 0, errR87Permanent
					}
					return x, nil
				}, nil
			}, stage.Workers(1))
			s2 := stage.Concurrent(tasks, m.opts(stage.Retry(2, 0), stage.Timeout(time.Millisecond), stage.OnError(stage.Budget(2, nil)))...)
			var got []int
			var err error
			runcheck.Run(t, "budgets", func() { got, err = sink.Slice(context.Background(), s2) })
			slices.Sort(got)
			if err != nil || !slices.Equal(got, []int{0, 3, 5, 7}) {
				t.Errorf("got %v, %v; want [0 3 5 7], nil", got, err)
			}
		})
	}
}
