package stage_test

import (
	"context"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestNothingRunsAfterTheSinkReturns ends runs in every way a run can end and
// checks that no user function is called after the sink returned and that no
// goroutine is left.
func TestNothingRunsAfterTheSinkReturns(t *testing.T) {
	exits := map[string]func(ctx context.Context, s stage.Stream[int]){
		"success": func(ctx context.Context, s stage.Stream[int]) { _, _ = sink.Slice(ctx, s) },
		"failfast": func(ctx context.Context, s stage.Stream[int]) {
			_, _ = sink.Count(ctx, stage.Map(s, func(_ context.Context, x int) (int, error) {
				if x == 50 {
					return 0, errBoom
				}
				return x, nil
			}))
		},
		"cancel": func(ctx context.Context, s stage.Stream[int]) {
			ctx, cancel := context.WithCancel(ctx)
			n := 0
			_ = sink.ForEach(ctx, s, func(context.Context, int) error {
				if n++; n == 10 {
					cancel()
				}
				return nil
			})
			cancel()
		},
		"first": func(ctx context.Context, s stage.Stream[int]) { _, _, _ = sink.First(ctx, s) },
		"break": func(ctx context.Context, s stage.Stream[int]) {
			for v := range sink.All(ctx, s) {
				if v > 20 {
					break
				}
			}
		},
		"callback error": func(ctx context.Context, s stage.Stream[int]) {
			_ = sink.ForEach(ctx, s, func(context.Context, int) error { return errBoom })
		},
		"callback panic": func(ctx context.Context, s stage.Stream[int]) {
			_, _ = sink.Reduce(ctx, s, 0, func(int, int) int { panic("reduce") })
		},
		"chan sink blocked": func(ctx context.Context, s stage.Stream[int]) {
			ctx, cancel := context.WithCancel(ctx)
			out := make(chan int)
			go func() { <-out; cancel() }()
			_ = sink.Chan(ctx, s, out)
			cancel()
		},
	}
	for name, exit := range exits {
		for _, m := range modes {
			t.Run(name+"/"+m.String(), func(t *testing.T) {
				var returned atomic.Bool
				check := func() {
					if returned.Load() {
						t.Error("a user function ran after the sink returned")
					}
				}
				i := 0
				src := source.Func(func(context.Context) (int, error) {
					check()
					if i == 500 {
						return 0, errEOF
					}
					i++
					return i, nil
				})
				s := stage.Map(src, func(_ context.Context, x int) (int, error) { check(); return x, nil }, m.opts()...)
				s = stage.Filter(s, func(context.Context, int) (bool, error) { check(); return true, nil }, m.opts()...)
				exit(context.Background(), s)
				returned.Store(true)
				goleak.VerifyNone(t)
			})
		}
	}
}

func TestSinkChanNeverClosesOut(t *testing.T) {
	out := make(chan int, 10)
	if err := sink.Chan(context.Background(), source.Slice(ints(3)), out); err != nil {
		t.Fatal(err)
	}
	out <- 99 // would panic if Chan had closed out
	if len(out) != 4 {
		t.Fatalf("len(out) = %d, want 4", len(out))
	}
}
