package sink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Workers: "Such a stage (or one of one worker) whose input is known to hold
// a single item (its Stream.Len is 1) calls the function in its consumer's
// goroutine from the start". PanicError: "It reaches the caller wrapped in an
// *Error ..., so the process never crashes because a user function
// panicked." Error: Stage, Index ("the item's 0-based position"), Attempts.
// A chain of three stages over a single item all run in the sink's
// goroutine; the middle one fails (error or panic) under each policy, and its
// Handle/Budget handler itself runs a one-item pipeline of its own.
func TestReview61BBCOneItemChains(t *testing.T) {
	for _, how := range []string{"error", "panic"} {
		for _, pol := range []string{"failfast", "forward", "handle-drop", "handle-inner-fail", "budget0", "budget1"} {
			for _, w := range []int{0, 1, 5, -1} {
				t.Run(fmt.Sprintf("%s/%s/w%d", how, pol, w), func(t *testing.T) {
					var handled []*stage.Error
					var innerErr error
					opts := []stage.Option{stage.Name("mid"), stage.Workers(w), stage.Retry(2, 0)}
					switch pol {
					case "forward":
						opts = append(opts, stage.OnError(stage.Forward))
					case "handle-drop":
						opts = append(opts, stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error {
							handled = append(handled, e)
							_, innerErr = sink.Slice(ctx, stage.Map(source.Slice([]int{7}), c61id))
							return innerErr
						})))
					case "handle-inner-fail":
						opts = append(opts, stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error {
							handled = append(handled, e)
							_, innerErr = sink.Slice(ctx, stage.Map(source.Slice([]int{7}), func(context.Context, int) (int, error) { panic("inner") }, stage.Name("inner")))
							return innerErr
						})))
					case "budget0":
						opts = append(opts, stage.OnError(stage.Budget(0, nil)))
					case "budget1":
						opts = append(opts, stage.OnError(stage.Budget(1, func(_ context.Context, e *stage.Error) error { handled = append(handled, e); return nil })))
					}
					calls := 0
					s := stage.Map(source.Slice([]int{5}), c61id, stage.Workers(w), stage.Name("first"))
					s = stage.Map(s, func(_ context.Context, v int) (int, error) {
						calls++
						if how == "panic" {
							panic(errC61)
						}
						return 0, errC61
					}, opts...)
					s = stage.Map(s, c61id, stage.Workers(w), stage.Name("last"))
					var got []int
					var err error
					runcheck.Run(t, "run", func() { got, err = sink.Slice(context.Background(), s) })
					wantCalls := 2
					if how == "panic" {
						wantCalls = 1
					}
					if calls != wantCalls {
						t.Errorf("%d calls; want %d (Retry(2): a *PanicError is not retried)", calls, wantCalls)
					}
					checkE := func(e *stage.Error) {
						t.Helper()
						if e.Stage != "mid" || e.Index != 0 || e.Input != 5 || e.Attempts != wantCalls || !errors.Is(e, errC61) {
							t.Fatalf("*Error %+v; want mid, 0, 5, Attempts %d, errC61", e, wantCalls)
						}
						if how == "panic" {
							var pe *stage.PanicError
							if !errors.As(e, &pe) {
								t.Fatalf("*Error %v: no PanicError", e)
							}
						}
					}
					var e *stage.Error
					switch pol {
					case "failfast", "budget0":
						if got != nil || !errors.As(err, &e) {
							t.Fatalf("Slice = %v, %v", got, err)
						}
						checkE(e)
						if pol == "budget0" && !errors.Is(err, stage.ErrBudget) {
							t.Fatalf("%v: not ErrBudget", err)
						}
					case "forward":
						var fe *sink.ForwardedError
						if got != nil || !errors.As(err, &fe) || fe.Count != 1 || !errors.As(fe.Sample[0], &e) {
							t.Fatalf("Slice = %v, %v", got, err)
						}
						checkE(e)
					case "handle-drop", "budget1":
						if got != nil || err != nil || len(handled) != 1 || innerErr != nil {
							t.Fatalf("Slice = %v, %v, %d handled, inner %v", got, err, len(handled), innerErr)
						}
						checkE(handled[0])
					case "handle-inner-fail":
						var ie *stage.Error
						if !errors.As(innerErr, &ie) || ie.Stage != "inner" {
							t.Fatalf("inner %v", innerErr)
						}
						if got != nil || !errors.Is(err, innerErr) || len(handled) != 1 {
							t.Fatalf("Slice = %v, %v; want h's error %v", got, err, innerErr)
						}
						checkE(handled[0])
					}
				})
			}
		}
	}
}
