package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Panics in the sink's own callbacks over an Ordered stage whose calls may
// run on the sink's goroutine. ForEach: "An error returned by f (or a
// panic in f) ends the run as a FailFast error does ... a *stage.Error
// (Stage "foreach")"; All: "A panic in the loop body stops the run the
// same way and then continues"; Run: "A panic in f is not recovered: Run
// cancels the run, waits for it, and lets the panic continue". In each
// case no goroutine of the run is left once the panic reaches the caller.
func TestReview81SinkPanics(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range r81failKinds {
			for _, w := range []int{2, 4} {
				n := 300
				s, outs := r81failPipe(kind, r81sources[w%3].make(n), w, map[int]bool{}, false, func(int) {})
				var want []int
				for i := range n {
					want = append(want, outs(i)...)
				}
				for _, k := range []int{0, 1, 100, len(want) - 1} {
					label := fmt.Sprintf("%s/w=%d/k=%d", kind, w, k)
					// ForEach.
					var got []int
					var err error
					r81guard(t, label, func() {
						err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
							got = append(got, v)
							if len(got) == k+1 {
								panic("review81 callback panic")
							}
							return nil
						})
					})
					var e *stage.Error
					var pe *stage.PanicError
					if !errors.As(err, &e) || e.Stage != "foreach" || e.Index != k || !errors.As(err, &pe) {
						t.Fatalf("%s: ForEach: err %v, want a foreach *Error of item %d with a *PanicError", label, err, k)
					}
					if e := r81equal(got, want[:k+1]); e != nil {
						t.Fatalf("%s: ForEach: %v", label, e)
					}
					// All and Run: the panic continues to the caller.
					for _, which := range []string{"All", "Run"} {
						var rec any
						got = nil
						r81guard(t, label+"/"+which, func() {
							defer func() { rec = recover() }()
							body := func(v int) {
								got = append(got, v)
								if len(got) == k+1 {
									panic("review81 body panic")
								}
							}
							if which == "All" {
								for v, err := range sink.All(context.Background(), s) {
									if err != nil {
										t.Errorf("%s: %v", label, err)
										return
									}
									body(v)
								}
								return
							}
							_ = stage.Run(context.Background(), s, func(_ context.Context, v int, err error) error {
								body(v)
								return nil
							})
						})
						if rec != "review81 body panic" {
							t.Fatalf("%s/%s: recovered %v, want the body's panic", label, which, rec)
						}
						if e := r81equal(got, want[:k+1]); e != nil {
							t.Fatalf("%s/%s: %v", label, which, e)
						}
					}
				}
			}
		}
	})
}
