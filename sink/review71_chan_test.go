package sink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review71Closed reports whether ch is closed, taking one value if it holds
// one (ok true).
func review71Closed(ch chan int) bool {
	select {
	case _, ok := <-ch:
		return !ok
	default:
		return false
	}
}

// "Chan runs s and sends its values on out, in arrival order ... It never
// closes out: the caller owns it. ... Forwarded errors are not sent; they
// are returned in a *ForwardedError."
//
// Pipeline A feeds out with sink.Chan while pipeline B reads out through
// source.Chan; the caller closes out once A returned, which ends B. B sees
// every value of A in order (A's last stage has one worker), forwarded errors
// excluded.
func TestReview71ChanFeedsAnotherPipeline(t *testing.T) {
	for _, capacity := range []int{0, 1, 64} {
		t.Run(fmt.Sprint(capacity), func(t *testing.T) {
			const n = 200
			out := make(chan int, capacity)
			a := stage.Map(source.Slice(review71Ints(n)), func(_ context.Context, v int) (int, error) {
				if v%10 == 9 {
					return 0, errReview71Boom
				}
				return v, nil
			}, stage.Workers(1), stage.OnError(stage.Forward))
			b := stage.Map(source.Chan(out), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1))
			bDone := make(chan struct{})
			var got []int
			var bErr error
			go func() {
				defer close(bDone)
				got, bErr = sink.Slice(context.Background(), b)
			}()
			var aErr error
			review71Run(t, "chan", func() { aErr = sink.Chan(context.Background(), a, out) })
			var fe *sink.ForwardedError
			if !errors.As(aErr, &fe) || fe.Count != n/10 {
				t.Fatalf("Chan = %v, want a *ForwardedError of %d", aErr, n/10)
			}
			close(out) // ours to close: Chan must not have closed it
			if !review71Wait(t, "pipeline B", bDone) {
				return
			}
			if bErr != nil || len(got) != n-n/10 {
				t.Fatalf("B got %d values, %v; want %d", len(got), bErr, n-n/10)
			}
			j := 0
			for i := range n {
				if i%10 == 9 {
					continue
				}
				if got[j] != i {
					t.Fatalf("B got %v, not A's values in order", got)
				}
				j++
			}
		})
	}
}

// "Chan runs s and sends its values on out ..., blocking while out is full.
// It never closes out" and the package's "when ctx was cancelled, an error
// for which errors.Is(err, context.Canceled) ... holds".
//
// out fills up and nobody reads it: the caller's ctx is cancelled once the
// value that will not fit was computed, and Chan returns the cancellation
// without closing out. (Cancelled from another goroutine: the sink's batch may
// hold the stage's whole read-ahead, see stage.Run.)
func TestReview71ChanCancelWhileOutFull(t *testing.T) {
	for _, kind := range review71Kinds {
		for _, capacity := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("%s/%d", kind, capacity), func(t *testing.T) {
				ctx, cancel := ctxtest.New(kind)
				defer cancel()
				out := make(chan int, capacity)
				reached := make(chan struct{})
				s := stage.Map(source.Slice(review71Ints(100)), func(_ context.Context, v int) (int, error) {
					if v == capacity {
						close(reached) // the value that will not fit in out
					}
					return v, nil
				}, stage.Workers(1), stage.Buffer(1))
				go func() {
					<-reached
					cancel()
				}()
				var err error
				review71Run(t, "chan", func() { err = sink.Chan(ctx, s, out) })
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Chan = %v, want context.Canceled", err)
				}
				for i := range len(out) {
					if v := <-out; v != i {
						t.Fatalf("out holds %d at %d", v, i)
					}
				}
				if review71Closed(out) {
					t.Fatalf("Chan closed out")
				}
			})
		}
	}
}

// "If the run fails while Chan waits on out, Chan stops waiting and returns
// the error that ended the run."
//
// Nobody reads out (unbuffered); item 1 fails FailFast once item 0 has been
// computed (so the sink holds item 0 or is about to wait with it): Chan must
// return item 1's *stage.Error.
func TestReview71ChanFailureWhileWaiting(t *testing.T) {
	for round := range 20 {
		out := make(chan int)
		done0 := make(chan struct{})
		s := stage.Map(source.Slice([]int{0, 1}), func(_ context.Context, v int) (int, error) {
			if v == 0 {
				close(done0)
				return 0, nil
			}
			select {
			case <-done0:
			case <-time.After(runcheck.Watchdog):
			}
			return 0, errReview71Boom
		}, stage.Workers(2), stage.Buffer(1))
		var err error
		review71Run(t, "chan", func() { err = sink.Chan(context.Background(), s, out) })
		var se *stage.Error
		if !errors.As(err, &se) || se.Index != 1 || !errors.Is(err, errReview71Boom) {
			t.Fatalf("round %d: Chan = %v, want item 1's *stage.Error", round, err)
		}
	}
}
