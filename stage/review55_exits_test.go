package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview55_FirstTakesOne attacks (sink.First) "over a bare source,
// exactly one item is taken" and (Backpressure) "sink.First(ctx,
// source.Chan(ch)) receives exactly one value and leaves the rest in ch",
// run after run of one built stream.
func TestReview55_FirstTakesOne(t *testing.T) {
	ctx := context.Background()
	for n := 1; n <= 5; n++ {
		var calls atomic.Int64
		fn := source.Func(func(context.Context) (int, error) { return int(calls.Add(1)), nil })
		idx := stage.Indexed(n, func(i int) int { calls.Add(1); return i })
		var nexts, stops atomic.Int64
		nw := stage.NeverWaits(stage.Source(r55Counter(n, &nexts, &stops)))
		var steps atomic.Int64
		seq := source.Seq(func(yield func(int) bool) {
			for i := range n {
				steps.Add(1)
				if !yield(i) {
					return
				}
			}
		})
		ch := make(chan int, 100)
		chs := source.Chan(ch)
		for run := range 20 {
			calls.Store(0)
			if v, ok, err := sink.First(ctx, fn); !ok || err != nil || v != 1 || calls.Load() != 1 {
				t.Fatalf("Func n=%d run %d: %v %v %v, next called %d times", n, run, v, ok, err, calls.Load())
			}
			calls.Store(0)
			if v, ok, err := sink.First(ctx, idx); !ok || err != nil || v != 0 || calls.Load() != 1 {
				t.Fatalf("Indexed n=%d run %d: %v %v %v, at called %d times", n, run, v, ok, err, calls.Load())
			}
			nexts.Store(0)
			stops.Store(0)
			if v, ok, err := sink.First(ctx, nw); !ok || err != nil || v != 0 || nexts.Load() != 1 || stops.Load() != 1 {
				t.Fatalf("NeverWaits n=%d run %d: %v %v %v, %d taken, %d stops", n, run, v, ok, err, nexts.Load(), stops.Load())
			}
			steps.Store(0)
			if v, ok, err := sink.First(ctx, seq); !ok || err != nil || v != 0 || steps.Load() != 1 {
				t.Fatalf("Seq n=%d run %d: %v %v %v, %d steps", n, run, v, ok, err, steps.Load())
			}
			for i := range n {
				ch <- i
			}
			if v, ok, err := sink.First(ctx, chs); !ok || err != nil || v != 0 || len(ch) != n-1 {
				t.Fatalf("Chan n=%d run %d: %v %v %v, %d left, want %d", n, run, v, ok, err, len(ch), n-1)
			}
			for len(ch) > 0 {
				<-ch
			}
		}
	}
}

// TestReview55_ErrStopWinsOverLateFailure attacks "A callback that returns
// stage.ErrStop ends the run with nil, whatever happened meanwhile (a failure
// elsewhere, a cancellation of ctx while it ran)": the callback of item 0 lets
// another item fail (FailFast) or cancels ctx, sees the run's context end,
// and returns ErrStop.
func TestReview55_ErrStopWinsOverLateFailure(t *testing.T) {
	for _, how := range []string{"failfast", "cancel", "handle-error", "budget"} {
		for n := 2; n <= 5; n++ {
			for _, w := range []int{2, 3, 8, -1} {
				for _, ordered := range []bool{false, true} {
					label := fmt.Sprintf("%s/n=%d/w=%d/ordered=%v", how, n, w, ordered)
					ctx, cancel := context.WithCancel(context.Background())
					gate := make(chan struct{})
					errBoom := errors.New("boom")
					policy := stage.FailFast
					switch how {
					case "handle-error":
						policy = stage.Handle(func(context.Context, *stage.Error) error { return errBoom })
					case "budget":
						policy = stage.Budget(0, nil)
					}
					s := stage.Map(source.Slice(r55Ints(n)), func(ctx context.Context, x int) (int, error) {
						if x == 0 {
							return 0, nil
						}
						select {
						case <-gate:
						case <-ctx.Done():
							return 0, ctx.Err()
						}
						if x == 1 && how != "cancel" {
							return 0, errBoom
						}
						<-ctx.Done()
						return 0, ctx.Err()
					}, r55Opts(w, ordered, 1, stage.OnError(policy))...)
					var err error
					calls := 0
					runcheck.NoHang(t, label, func() {
						err = sink.ForEach(ctx, s, func(rctx context.Context, v int) error {
							calls++
							if how == "cancel" {
								cancel()
							}
							close(gate)
							<-rctx.Done()
							return stage.ErrStop
						})
					})
					cancel()
					if err != nil || calls != 1 {
						t.Fatalf("%s: err %v after %d calls, want nil after 1", label, err, calls)
					}
				}
			}
		}
	}
}

// TestReview55_CancelAtEachPoint attacks "Cancelling ctx makes the sink return
// an error for which errors.Is(err, context.Canceled) holds", (Run) "the error
// that cut the run short before f saw the end of s: ... when ctx was
// cancelled, ... context.Canceled", and (Abort) "nothing more is delivered":
// ctx is cancelled before the run, in the source's open or next, in the stage
// function, in an observer, or in the sink's callback, at each item of tiny
// runs.
func TestReview55_CancelAtEachPoint(t *testing.T) {
	points := []string{"before", "open", "next", "fn", "received", "callback"}
	for _, point := range points {
		for _, srcName := range []string{"neverwaits", "waiting", "interruptible"} {
			for n := 1; n <= 5; n++ {
				for _, w := range []int{1, 2, 4, 8, -1} {
					for _, ordered := range []bool{false, true} {
						for k := range n {
							if (point == "before" || point == "open") && k > 0 {
								continue
							}
							label := fmt.Sprintf("%s@%d/%s/n=%d/w=%d/ordered=%v", point, k, srcName, n, w, ordered)
							ctx, cancel := context.WithCancel(context.Background())
							var stops atomic.Int64
							i := 0
							open := func(octx context.Context) (func(context.Context) (int, error), func()) {
								if point == "open" {
									cancel()
								}
								return func(context.Context) (int, error) {
										if i >= n {
											return 0, io.EOF
										}
										if point == "next" && i == k {
											cancel()
										}
										i++
										return i - 1, nil
									}, func() {
										stops.Add(1)
									}
							}
							src := stage.Source(open)
							switch srcName {
							case "neverwaits":
								src = stage.NeverWaits(src)
							case "interruptible":
								src = stage.Interruptible(src)
							}
							s := stage.Map(src, func(ctx context.Context, x int) (int, error) {
								if point == "fn" && x == k {
									cancel()
								}
								return x, nil
							}, r55Opts(w, ordered, 0)...)
							rctx := ctx
							if point == "received" {
								var seen atomic.Int64
								rctx = stage.Observe(ctx, r55ReceivedHook(func() {
									if seen.Add(1)-1 == int64(k) {
										cancel()
									}
								}))
							}
							if point == "before" {
								cancel()
							}
							calls, after := 0, 0
							cancelled := false
							var err error
							runcheck.NoHang(t, label, func() {
								err = sink.ForEach(rctx, s, func(_ context.Context, v int) error {
									if cancelled {
										after++
									}
									calls++
									if point == "callback" && calls-1 == k {
										cancel()
										cancelled = true
									}
									return nil
								})
							})
							cancel()
							if !errors.Is(err, context.Canceled) {
								t.Fatalf("%s: err %v after %d calls, want context.Canceled", label, err, calls)
							}
							if after != 0 {
								t.Fatalf("%s: %d items delivered after the callback cancelled ctx", label, after)
							}
							if stops.Load() != 1 {
								t.Fatalf("%s: stop called %d times", label, stops.Load())
							}
						}
					}
				}
			}
		}
	}
}

// r55ReceivedHook is an observer whose watchers call f on Received.
type r55ReceivedHook func()

func (h r55ReceivedHook) Stage(stage.Info) stage.Watcher    { return h }
func (h r55ReceivedHook) Received()                         { h() }
func (h r55ReceivedHook) Finished(_ time.Duration, _ error) {}
func (h r55ReceivedHook) Closed()                           {}
