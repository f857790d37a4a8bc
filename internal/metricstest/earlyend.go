package metricstest

// Runs that end early: what an adapter's series say of the calls a run's
// end cut short.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errEarly = errors.New("metricstest: early end")

// take takes k values from c, or reports false after the Watchdog (for a
// stage's or a sink's goroutine, where the test cannot fail).
func take[T any](c <-chan T, k int) bool {
	deadline := time.After(Watchdog)
	for range k {
		select {
		case <-c:
		case <-deadline:
			return false
		}
	}
	return true
}

// EarlyEndLeavesNothingInFlight: runs that end early (cancelled while calls wait; a FailFast error while
// others are in flight): every received call is finished in some outcome,
// nothing stays in flight, every call's duration is counted.
func EarlyEndLeavesNothingInFlight(t *testing.T, newEnv func(testing.TB) Env) {
	for _, how := range []string{"cancel", "failfast"} {
		t.Run(how, func(t *testing.T) {
			env := newEnv(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const workers = 4
			entered := make(chan int, 100)
			s := stage.Map(source.Slice(Ints(100)), func(ctx context.Context, i int) (int, error) {
				entered <- i
				if how == "failfast" && i == 0 {
					if !take(entered, workers) { // its own entry and the 3 others': all in their calls
						return 0, errors.New("watchdog: the calls did not come")
					}
					return 0, errEarly
				}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Name("w"), stage.Workers(workers), stage.Buffer(1))
			s2 := stage.Map(s, func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name("after"))
			errc := make(chan error, 1)
			go func() {
				_, err := sink.Count(stage.Observe(ctx, env.Obs), s2)
				errc <- err
			}()
			if how == "cancel" {
				for k := range workers {
					Recv(t, fmt.Sprintf("call %d", k), entered)
				}
				cancel()
			}
			err := Recv(t, "the run", errc)
			if err == nil {
				t.Fatal("the run ended without an error")
			}
			all := MustRead(t, env.Read)
			rec := Val(all, Received, "w", "")
			fin := Val(all, Finished, "w", "ok") + Val(all, Finished, "w", "error")
			if rec < workers || fin != rec || Val(all, InFlight, "w", "") != 0 || Val(all, Duration, "w", "") != rec {
				t.Fatalf("after the run (%v): received %v, finished %v (ok %v, error %v), in flight %v, durations %v",
					err, rec, fin, Val(all, Finished, "w", "ok"), Val(all, Finished, "w", "error"),
					Val(all, InFlight, "w", ""), Val(all, Duration, "w", ""))
			}
			if how == "failfast" && Val(all, Finished, "w", "error") < 1 {
				t.Fatal("the failing call is not counted as an error")
			}
			if Val(all, InFlight, "after", "") != 0 {
				t.Fatal("a later stage left calls in flight")
			}
		})
	}
}

// CutShortCallsAreNotErrors: a call that a run's end cut short did not fail: a stage whose
// function never fails, whose calls are in flight when the sink's callback
// fails (or when the caller cancels), counts no "error" outcome, as the
// library's own Stats (Failed: "calls that ended in an item error") and
// Logger ("a call ended by the run's cancellation is not a failure") see
// it; and the outcome of such a call does not depend on what ended the run.
func CutShortCallsAreNotErrors(t *testing.T, newEnv func(testing.TB) Env) {
	for _, how := range []string{"sink error", "cancel", "failfast upstream", "failfast upstream, returns the cause"} {
		t.Run(how, func(t *testing.T) {
			env := newEnv(t)
			var stats stage.Stats
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx = stage.Observe(stage.Observe(ctx, env.Obs), &stats)
			entered := make(chan int, 100)
			in := stage.Map(source.Slice(Ints(100)), func(_ context.Context, i int) (int, error) {
				if strings.HasPrefix(how, "failfast upstream") && i == 2 {
					if !take(entered, 2) { // no t.Fatal in a stage's goroutine
						return 0, errors.New("watchdog: the calls did not come")
					}
					return 0, errEarly // FailFast: the run's cause is this *stage.Error
				}
				return i, nil
			}, stage.Name("upstream"), stage.Workers(1), stage.Buffer(1))
			s := stage.Map(in, func(ctx context.Context, i int) (int, error) {
				if i == 0 && !strings.HasPrefix(how, "failfast upstream") {
					return 0, nil
				}
				entered <- i
				<-ctx.Done() // cut short by the run's end
				if strings.HasSuffix(how, "returns the cause") {
					return 0, context.Cause(ctx) // the idiom: the reason the run ended
				}
				return 0, ctx.Err()
			}, stage.Name("innocent"), stage.Workers(2), stage.Buffer(1))
			err := sink.ForEach(ctx, s, func(context.Context, int) error {
				Recv(t, "a call in flight", entered)
				Recv(t, "a second call in flight", entered)
				if how == "cancel" {
					cancel()
					return nil
				}
				return errEarly
			})
			if err == nil {
				t.Fatal("the run ended without an error")
			}
			c, _ := stats.Get("innocent")
			all := MustRead(t, env.Read)
			if rec := Val(all, Received, "innocent", ""); rec < 2 || Val(all, Finished, "innocent", "ok")+Val(all, Finished, "innocent", "error") != rec {
				t.Fatalf("innocent stage: received %v, finished %v + %v: want every call (at least the 2 held) finished", rec,
					Val(all, Finished, "innocent", "ok"), Val(all, Finished, "innocent", "error"))
			}
			if got := Val(all, Finished, "innocent", "error"); got != float64(c.Failed) || got != 0 {
				t.Fatalf("innocent stage: %v calls with outcome error (ok %v, received %v); Stats counts %d failed of %d finished; the stage's function never failed (run: %v)",
					got, Val(all, Finished, "innocent", "ok"), Val(all, Received, "innocent", ""), c.Failed, c.Finished, err)
			}
		})
	}
}

// EarlyEndsAgreeWithStats: runs that end early (cancelled while calls wait; a FailFast error
// while others are in flight): every received call is finished, nothing
// stays in flight, every duration is counted; a call cut short by the run's
// end (the sink failed, the caller cancelled, another stage failed) is not
// an "error" of its stage, as Stats sees it.
func EarlyEndsAgreeWithStats(t *testing.T, newEnv func(testing.TB) Env) {
	for _, how := range []string{"cancel", "failfast", "sink error", "failfast upstream", "failfast upstream, returns the cause"} {
		t.Run(how, func(t *testing.T) {
			env := newEnv(t)
			var stats stage.Stats
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx = stage.Observe(stage.Observe(ctx, env.Obs), &stats)
			const workers = 4
			entered := make(chan int, 100)
			errWatchdog := errors.New("watchdog: the calls did not come")
			in := stage.Map(source.Slice(Ints(100)), func(_ context.Context, i int) (int, error) {
				if strings.HasPrefix(how, "failfast upstream") && i == workers {
					if !take(entered, workers) {
						return 0, errWatchdog
					}
					return 0, errEarly // FailFast: the run's cause is this *stage.Error
				}
				return i, nil
			}, stage.Name("upstream"), stage.Workers(1), stage.Buffer(1))
			s := stage.Map(in, func(ctx context.Context, i int) (int, error) {
				entered <- i
				if i == 0 && how == "failfast" {
					if !take(entered, workers) { // its own entry and the 3 others': all in their calls
						return 0, errWatchdog
					}
					return 0, errEarly
				}
				if i == 0 && how == "sink error" {
					return i, nil
				}
				<-ctx.Done() // cut short by the run's end
				if strings.HasSuffix(how, "returns the cause") {
					return 0, context.Cause(ctx) // the idiom: the reason the run ended
				}
				return 0, ctx.Err()
			}, stage.Name("w"), stage.Workers(workers), stage.Buffer(1))
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, s, func(context.Context, int) error {
					if !take(entered, workers) { // item 0's entry and 3 calls held
						return errWatchdog
					}
					return errEarly
				})
			}()
			if how == "cancel" {
				if !take(entered, workers) {
					t.Fatal(errWatchdog)
				}
				cancel()
			}
			err := Recv(t, "the run", errc)
			if err == nil || errors.Is(err, errWatchdog) {
				t.Fatalf("the run: %v", err)
			}
			all := MustRead(t, env.Read)
			rec := Val(all, Received, "w", "")
			okN, errN := Val(all, Finished, "w", "ok"), Val(all, Finished, "w", "error")
			if rec < workers || okN+errN != rec || Val(all, InFlight, "w", "") != 0 || Val(all, Duration, "w", "") != rec {
				t.Fatalf("after the run (%v): received %v, finished ok %v error %v, in flight %v, durations %v",
					err, rec, okN, errN, Val(all, InFlight, "w", ""), Val(all, Duration, "w", ""))
			}
			c, _ := stats.Get("w")
			if how != "failfast" && errN != 0 {
				t.Fatalf("w: %v calls with outcome error (Stats: %d failed of %d); its function failed none", errN, c.Failed, c.Finished)
			}
			if errN != float64(c.Failed) {
				t.Fatalf("w: %v calls with outcome error, Stats counts %d failed (of %d)", errN, c.Failed, c.Finished)
			}
			if how == "failfast" && errN != 1 {
				t.Fatalf("w: %v errors, want the 1 call that failed", errN)
			}
		})
	}
}
