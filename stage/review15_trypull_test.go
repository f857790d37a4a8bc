package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review 15 (white-box), the end-to-end side of
// TestReview15TryPullErrorMethodPanicIsContained: over an Interruptible
// source, a consumer goroutine holding a cheap stage's place asks next for
// a ready item with a done context. A next that then returns a typed nil of
// an error type whose Unwrap reads its receiver crashes the run: the engine
// classifies the error with errors.Is outside its panic guard. Run must
// return (a *SourceError, or success if no try happened), never panic.

type review15NilErrX struct{ cause error }

func (e *review15NilErrX) Error() string { return "review15: " + e.cause.Error() }
func (e *review15NilErrX) Unwrap() error { return e.cause }

func TestReview15InterruptibleTypedNilErrorInATry(t *testing.T) {
	out, ok := runcheck.InChild(t, func() (res string) {
		const items = 20000
		tried := 0
		for range 20 {
			ch := make(chan int, items)
			for i := range items {
				ch <- i
			}
			close(ch)
			var tries atomic.Int64
			src := stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				return func(ctx context.Context) (int, error) {
					if ctx.Err() != nil {
						tries.Add(1)
						var err *review15NilErrX // the source's bug: a typed nil
						return 0, err
					}
					select {
					case v, ok := <-ch:
						if !ok {
							return 0, io.EOF
						}
						return v, nil
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				}, nil
			}))
			var n int
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						res = fmt.Sprintf("Run panicked (after %d tries): %v", tries.Load(), p)
					}
				}()
				n, err = sink.Count(context.Background(), stage.Map(src, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4)))
			}()
			if res != "" {
				return res
			}
			var se *stage.SourceError
			switch {
			case tries.Load() == 0 && (err != nil || n != items):
				return fmt.Sprintf("no try: got %d items, err %v", n, err)
			case tries.Load() > 0 && !errors.As(err, &se):
				return fmt.Sprintf("a try returned a typed-nil error: got %d items, err %v; want a *SourceError", n, err)
			case tries.Load() > 0:
				tried++
			}
		}
		return fmt.Sprintf("ok: %d runs of 20 tried", tried)
	})
	if !ok {
		return
	}
	if len(out) < 3 || out[:3] != "ok:" {
		t.Fatal(out)
	}
	t.Log(out)
}
