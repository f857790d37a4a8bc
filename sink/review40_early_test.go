package sink_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview40EarlyExitAcks attacks the early exits of sink.First and a break
// out of sink.All over every composition shape: "the item sink.First returns,
// or the one before a break out of sink.All, counts" as committed, while "an
// item that fans out (FlatMap, Tee) is done when all its outputs are" and
// Done is not called for an item whose fate the run did not know ("a sink
// that stopped early"). So after an early exit, an item is told Done(nil)
// only if every output it led to was committed (reached the sink before the
// break), and nobody is told an error. No goroutine and no user function is
// left running.
func TestReview40EarlyExitAcks(t *testing.T) {
	for shname, sh := range r40Shapes() {
		for _, k := range []int{1, 2, 5} {
			for _, how := range []string{"first", "break", "errstop"} {
				if how == "first" && k != 1 {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/%d", shname, how, k), func(t *testing.T) {
					for range 10 {
						w := newR40World(false)
						s := sh.build(w, w.source(), w.fn("none", -1))
						counts := map[int]int{}
						var err error
						runcheck.Run(t, how, func() {
							switch how {
							case "first":
								v, ok, e := sink.First(context.Background(), s)
								if ok {
									counts[v]++
								}
								err = e
							case "break":
								n := 0
								for v, e := range sink.All(context.Background(), s) {
									if e != nil {
										err = e
										break
									}
									counts[v]++
									if n++; n == k {
										break
									}
								}
							case "errstop":
								n := 0
								err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
									counts[v]++
									if n++; n == k {
										return fmt.Errorf("enough: %w", stage.ErrStop)
									}
									return nil
								})
							}
							if a := w.active.Load(); a != 0 {
								t.Errorf("%d user functions running when the sink returned", a)
							}
						})
						if err != nil {
							t.Fatalf("early exit returned %v, want nil", err)
						}
						w.mu.Lock()
						for v, errs := range w.done {
							if len(errs) != 1 || errs[0] != nil {
								t.Errorf("item %d: Done %v after an early exit, want at most one Done(nil)", v, errs)
								continue
							}
							if counts[v] < sh.fanout {
								t.Errorf("item %d: Done(nil) after an early exit although only %d of its %d outputs were committed (the rest never reached the sink)", v, counts[v], sh.fanout)
							}
						}
						for v, c := range counts {
							if c == sh.fanout && len(w.done[v]) != 1 {
								t.Errorf("item %d: all %d outputs committed before the early exit, but Done called %d times, want Done(nil) once", v, c, len(w.done[v]))
							}
						}
						w.mu.Unlock()
					}
				})
			}
		}
	}
}

// TestReview40AllLoopBodyPanicAndGoexit: "A panic in the loop body stops the
// run the same way and then continues; its item is not committed, and its
// acknowledgement is not told". The same for runtime.Goexit in the loop body
// (the caller's goroutine ends; the run's goroutines must still exit) and in
// the callbacks of ForEach and Reduce, which run on the sink's goroutine.
func TestReview40AllLoopBodyPanicAndGoexit(t *testing.T) {
	for shname, sh := range r40Shapes() {
		for _, how := range []string{"all-panic", "all-goexit", "foreach-goexit", "reduce-goexit", "foreach-panic", "reduce-panic"} {
			t.Run(shname+"/"+how, func(t *testing.T) {
				w := newR40World(false)
				s := sh.build(w, w.source(), w.fn("none", -1))
				var recovered any
				returned := false
				var err error
				const at = 3 // the value whose delivery panics or exits
				runcheck.Run(t, how, func() {
					ended := make(chan struct{})
					go func() {
						defer close(ended)
						defer func() { recovered = recover() }()
						hit := func(v int) {
							if v != at {
								return
							}
							if how == "all-goexit" || how == "foreach-goexit" || how == "reduce-goexit" {
								runtime.Goexit()
							}
							panic(errR40)
						}
						switch how {
						case "all-panic", "all-goexit":
							for v, e := range sink.All(context.Background(), s) {
								if e == nil {
									hit(v)
								}
							}
						case "foreach-goexit", "foreach-panic":
							err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
								hit(v)
								return nil
							})
						case "reduce-goexit", "reduce-panic":
							_, err = sink.Reduce(context.Background(), s, 0, func(acc, v int) int {
								hit(v)
								return acc + v
							})
						}
						returned = true
					}()
					<-ended
					if a := w.active.Load(); a != 0 {
						t.Errorf("%d user functions running when the sink's goroutine ended", a)
					}
				})
				switch how {
				case "all-panic":
					if e, ok := recovered.(error); !ok || !errors.Is(e, errR40) {
						t.Fatalf("a panic in All's loop body: recovered %v, want the panic to continue", recovered)
					}
				case "all-goexit", "foreach-goexit", "reduce-goexit":
					if returned || recovered != nil {
						t.Fatalf("Goexit on the sink's goroutine: returned %v, recovered %v; the goroutine should just end", returned, recovered)
					}
				case "foreach-panic", "reduce-panic":
					var se *stage.Error
					var pe *stage.PanicError
					if !returned || !errors.As(err, &se) || !errors.As(err, &pe) || !errors.Is(err, errR40) {
						t.Fatalf("a panic in the callback: returned %v, err %v; want a *stage.Error wrapping a *stage.PanicError", returned, err)
					}
					if want := map[string]string{"foreach-panic": "foreach", "reduce-panic": "reduce"}[how]; se.Stage != want {
						t.Errorf("*stage.Error.Stage = %q, want %q", se.Stage, want)
					}
				}
				w.mu.Lock()
				defer w.mu.Unlock()
				if errs := w.done[at]; len(errs) > 0 && (errs[0] == nil || how == "all-panic" || how == "all-goexit" || how == "foreach-goexit" || how == "reduce-goexit") {
					t.Errorf("item %d, whose delivery %s: Done %v; want it not told nil (not committed)", at, how, errs)
				}
			})
		}
	}
}
