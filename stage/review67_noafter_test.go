package stage_test

// No call starts once the run has ended: under RateLimit and
// SharedRateLimit with Workers(-1), and over a channel source that still
// offers items after a FailFast error.

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// RateLimit: "lets the stage start at most perSecond calls of its function
// per second on average, with bursts of up to burst calls, across all its
// workers"; "only the end of the run ends the wait"; FailFast: "no new item
// starts". At a rate that gives no new token for ages, a run can start
// exactly burst calls. The run is ended after them, by the caller's cancel
// (from the sink's callback, after burst items) or by a FailFast error (the
// burst-th call fails). Buffer(1) keeps every call on the stage's own
// goroutines, so the sink is never the one waiting for a token.
//
// The black-box round's finding, fixed: with Workers(-1), once the run had
// ended, calls still started with a done ctx beyond the bucket (4 to 13
// for a burst of 3): the waits the end cancelled gave their tokens back,
// and goroutines that had taken items before the end took them. A token
// that comes once the run's context is done is given back now, and no
// call starts once the run is ending (TestReview67NoCallStartsAfterEnd
// holds both by order). The extra calls need tokens given back, which
// only the end's cancellation does: with the fix the count is exact,
// whatever the timing.
func TestReview67RateLimitNoCallAfterEnd(t *testing.T) {
	for _, w := range []int{8, -1} {
		runs := 40
		if w == -1 {
			runs = 200
		}
		for _, shared := range []bool{false, true} {
			for _, end := range []string{"cancel", "failfast"} {
				name := fmt.Sprintf("w=%d/shared=%v/%s", w, shared, end)
				const burst = 3
				bad := 0
				var example string
				for range runs {
					rl := r67RateLimit(shared, 1e-9, burst)
					var calls, doneAtStart atomic.Int64
					m := stage.Map(source.Slice(r67Ints(40)), func(fctx context.Context, v int) (int, error) {
						if fctx.Err() != nil {
							doneAtStart.Add(1)
						}
						if calls.Add(1) == burst && end == "failfast" {
							return 0, r67Err
						}
						return v, nil
					}, rl, stage.Workers(w), stage.Buffer(1))
					err := r67CancelAtItem(t, name, m, burst)
					switch end {
					case "cancel":
						if !errors.Is(err, context.Canceled) {
							t.Fatalf("%s: %v; want context.Canceled", name, err)
						}
					case "failfast":
						if !errors.Is(err, r67Err) {
							t.Fatalf("%s: %v; want the *Error", name, err)
						}
					}
					if calls.Load() != burst {
						bad++
						example = fmt.Sprintf("%d calls, %d of them with a done ctx", calls.Load(), doneAtStart.Load())
					}
				}
				if bad > 0 {
					t.Errorf("%s: in %d of %d runs more than burst=%d calls started (e.g. %s)", name, bad, runs, burst, example)
				}
			}
		}
	}
}

// FailFast: "no new item starts"; Source: "The run calls next ... never
// once the run is cancelled"; the Cancellation section: an item a waiting
// next takes as the run ends is dropped. A channel source keeps offering
// items after item 1 failed (the test sends them only once a call in
// flight saw its ctx end): the function is never called for them.
func TestReview67NoCallAfterFailFastChan(t *testing.T) {
	for _, w := range []int{2, 4, -1} {
		for range 20 {
			ch := make(chan int)
			ended := make(chan struct{})
			var afterEnd, calls atomic.Int64
			var over atomic.Bool
			m := stage.Map(source.Chan(ch), func(fctx context.Context, v int) (int, error) {
				calls.Add(1)
				if over.Load() {
					afterEnd.Add(1)
				}
				switch v {
				case 0:
					<-fctx.Done()
					over.Store(true)
					close(ended)
					return 0, fctx.Err()
				case 1:
					return 0, r67Err
				}
				return v, nil
			}, stage.Workers(w), stage.Buffer(1))
			var err error
			done := make(chan struct{})
			// The producer is the test's, not the run's: it is started
			// before and waited for after the run's leak check. Item 0's
			// call may never start (the run drops an item taken before
			// item 1 failed whose call had not begun), so it also stops
			// waiting for that call once the sink returned.
			producer := make(chan struct{})
			go func() {
				defer close(producer)
				ch <- 0
				ch <- 1
				select {
				case <-ended:
				case <-done:
					return
				}
				for i := 2; ; i++ {
					select {
					case ch <- i:
					case <-done:
						return
					}
				}
			}()
			r67Guard(t, "chan", func() { _, err = sink.Slice(context.Background(), m) })
			close(done)
			<-producer
			var se *stage.Error
			if !errors.As(err, &se) || se.Input != 1 {
				t.Errorf("w=%d: %v; want item 1's *Error", w, err)
			}
			if afterEnd.Load() != 0 {
				t.Errorf("w=%d: %d calls started after the failure had cancelled the run", w, afterEnd.Load())
			}
		}
	}
}

// Retry: "The wait holds the worker and ends early, without a retry, when
// the run is cancelled." Every item's first attempt fails and waits an
// hour before its retry; the caller cancels once 5 first attempts were
// made: no second attempt ever starts, with any number of workers.
func TestReview67RetryNoRetryAfterCancel(t *testing.T) {
	for _, w := range []int{8, -1} {
		for _, kind := range r67CtxKinds {
			for range 20 {
				ctx, cancel := r67Parent(kind)
				var tries r67Tries
				var first atomic.Int64
				var second atomic.Int64
				m := stage.Map(source.Slice(r67Ints(100)), func(_ context.Context, v int) (int, error) {
					if tries.add(v) > 1 {
						second.Add(1)
						return v, nil
					}
					if first.Add(1) == 5 {
						cancel()
					}
					return 0, r67Err
				}, stage.Retry(3, time.Hour), stage.Workers(w), stage.Buffer(1))
				var err error
				r67Guard(t, "retry", func() { _, err = sink.Slice(ctx, m) })
				if !errors.Is(err, context.Canceled) || second.Load() != 0 {
					t.Fatalf("w=%d/%s: %v with %d retries; want context.Canceled and none", w, kind, err, second.Load())
				}
			}
		}
	}
}
