package sink_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Run (every sink is written with it): "Its result depends only on what f
// saw and returned, never on timing": "nil when f returned ErrStop, whatever
// else happened meanwhile"; "the error f returned, or the error that had cut
// the run short before"; "(unless a FailFast error had cut the run short
// already: the first error wins)"; ForEach: "f may return stage.ErrStop ...
// ForEach then returns nil".
//
// While f works on item 0, the run is cut short (a stage's FailFast failure
// at item 1, which f waits to see through its ctx; or f cancels the caller's
// ctx itself). Then f returns ErrStop (ForEach must return nil), nil (the
// failure, or the cancellation), or an error of its own (the stage's failure,
// which came first).
func TestReview85ForEachResultAfterTheRunWasCutShort(t *testing.T) {
	for _, cut := range []string{"failfast", "cancel"} {
		for _, ret := range []string{"stop", "nil", "own"} {
			t.Run(cut+"/"+ret, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				// Item 1 fails once the callback, holding item 0, opens the
				// gate; the callback then waits for the run's ctx to end.
				gate := make(chan struct{})
				s := stage.Map(source.Slice(r85Ints(2)), func(_ context.Context, v int) (int, error) {
					if v == 1 && cut == "failfast" {
						r85Wait(t, "gate", gate)
						return 0, errR85Boom
					}
					return v, nil
				}, stage.Workers(2), stage.Buffer(1), stage.Name("m"))
				calls := 0
				var err error
				runcheck.Run(t, "foreach", func() {
					err = sink.ForEach(ctx, s, func(fctx context.Context, v int) error {
						calls++
						if cut == "cancel" {
							cancel()
						} else {
							close(gate)
						}
						r85Wait(t, "the run's end", fctx.Done())
						switch ret {
						case "stop":
							return stage.ErrStop
						case "own":
							return errR85Own
						}
						return nil
					})
				})
				if calls != 1 {
					t.Errorf("f called %d times", calls)
				}
				var se *stage.Error
				switch {
				case ret == "stop":
					if err != nil {
						t.Fatalf("ForEach = %v, want nil: f returned ErrStop", err)
					}
				case cut == "failfast":
					if !errors.As(err, &se) || se.Stage != "m" || !errors.Is(err, errR85Boom) {
						t.Fatalf("ForEach = %v, want the stage's failure, which came first", err)
					}
				case ret == "nil":
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("ForEach = %v, want the cancellation", err)
					}
				}
			})
		}
	}
}

var errR85Own = errors.New("review85: f's own")
