package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// runtime.Goexit in the function of an Ordered stage whose calls may run
// in its consumer's goroutine. ErrGoexit's doc: the run "fails with
// ErrGoexit rather than return what it has as if complete"; "A function
// that calls Goexit on the sink's own goroutine ends that goroutine: the
// sink does not return, as with any function, and the run's goroutines
// exit. The functions that run on the sink's goroutine: ... the calls a
// stage makes in its consumer's goroutines, which a cheap stage or one
// whose input holds a single item may do (see Workers; Buffer(1) keeps a
// stage's calls on goroutines of its own)".
//
// So the sink either returns an error that is ErrGoexit, or its goroutine
// ends without the sink returning; either way no goroutine of the run is
// left. With Buffer(1), the sink returns ErrGoexit. In a child process.

// r81goexitOutcome runs sk over s in a goroutine of its own and reports
// whether the sink returned (and with what) or its goroutine was ended; it
// fails t if a goroutine of the run is left behind.
func r81goexitOutcome(t *testing.T, label string, sk r81sink, s stage.Stream[int]) (returned bool, got []int, err error) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	done := make(chan struct{})
	go func() {
		defer close(done)
		got, err = sk.run(t, context.Background(), s)
		returned = true
	}()
	select {
	case <-done:
	case <-time.After(r81watchdog):
		t.Fatalf("%s: hung", label)
	}
	if leaked := goleak.Find(before); leaked != nil {
		t.Fatalf("%s: returned=%v: goroutines left behind: %v", label, returned, leaked)
	}
	return returned, got, err
}

func r81goexitPipe(kind string, n, w, k int, opts ...stage.Option) (stage.Stream[int], func(int) []int) {
	fail := map[int]bool{k: true}
	return r81failPipe(kind, r81sources[(n+k+w)%3].make(n), w, map[int]bool{}, false, func(v int) {
		if fail[v] {
			runtime.Goexit()
		}
	}, opts...)
}

func TestReview81Goexit(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		ended := 0
		for _, kind := range r81failKinds {
			for _, w := range []int{2, 4} {
				for _, nk := range [][2]int{{1, 0}, {2, 0}, {2, 1}, {300, 0}, {300, 1}, {300, 150}, {300, 299}} {
					n, k := nk[0], nk[1]
					for _, sk := range r81sinks {
						label := fmt.Sprintf("%s/w=%d/n=%d/k=%d/%s", kind, w, n, k, sk.name)
						s, outs := r81goexitPipe(kind, n, w, k)
						var want []int
						for i := range k {
							want = append(want, outs(i)...)
						}
						returned, got, err := r81goexitOutcome(t, label, sk, s)
						if !returned {
							ended++
							continue
						}
						if sk.first && err == nil && len(want) > 0 {
							if r81equal(got, want[:1]) != nil {
								t.Fatalf("%s: First = %v, want %v", label, got, want[:1])
							}
							continue
						}
						if !errors.Is(err, stage.ErrGoexit) {
							t.Fatalf("%s: the sink returned %v (values %v), want ErrGoexit", label, err, r81short(got))
						}
						if e := r81prefix(got, want); e != nil {
							t.Fatalf("%s: %v", label, e)
						}
					}
				}
			}
		}
		t.Logf("sink goroutines ended by Goexit: %d", ended)
	})
}

// Buffer(1) keeps the calls on the stage's own goroutines: the sink
// returns, with ErrGoexit.
func TestReview81GoexitBuffer(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range r81failKinds {
			for _, w := range []int{2, 4} {
				for _, nk := range [][2]int{{1, 0}, {2, 1}, {300, 0}, {300, 150}, {300, 299}} {
					n, k := nk[0], nk[1]
					for _, sk := range r81sinks {
						label := fmt.Sprintf("%s/w=%d/n=%d/k=%d/%s", kind, w, n, k, sk.name)
						s, outs := r81goexitPipe(kind, n, w, k, stage.Buffer(1))
						var want []int
						for i := range k {
							want = append(want, outs(i)...)
						}
						returned, got, err := r81goexitOutcome(t, label, sk, s)
						if !returned {
							t.Fatalf("%s: with Buffer(1), the sink's goroutine was ended", label)
						}
						if sk.first && err == nil && len(want) > 0 {
							if r81equal(got, want[:1]) != nil {
								t.Fatalf("%s: First = %v, want %v", label, got, want[:1])
							}
							continue
						}
						if !errors.Is(err, stage.ErrGoexit) {
							t.Fatalf("%s: the sink returned %v (values %v), want ErrGoexit", label, err, r81short(got))
						}
						if e := r81prefix(got, want); e != nil {
							t.Fatalf("%s: %v", label, e)
						}
					}
				}
			}
		}
	})
}

// An input known to hold one item: the stage "calls the function in its
// consumer's goroutine from the start ... and starts no goroutine of its
// own", so a Goexit there ends the sink's goroutine.
func TestReview81GoexitSingleItem(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		// Each stage's input has Len 1: the source, or (Concurrent) the
		// task-making Map over it, which keeps Len.
		for _, kind := range r81failKinds {
			for _, w := range []int{2, 8} {
				for _, sk := range r81sinks {
					label := fmt.Sprintf("%s/w=%d/%s", kind, w, sk.name)
					s, _ := r81failPipe(kind, r81sources[0].make(1), w, map[int]bool{}, false, func(int) { runtime.Goexit() })
					returned, _, err := r81goexitOutcome(t, label, sk, s)
					if returned {
						t.Fatalf("%s: the sink returned %v: the single item's call was not on the sink's goroutine", label, err)
					}
				}
			}
		}
	})
}

// Ordered -> Workers(1) Map -> sink: the Workers(1) stage is the Ordered
// stage's one consumer goroutine, and may itself run on the sink's
// goroutine (the sequential path). A Goexit in the Ordered stage's
// function: the sink returns ErrGoexit, or its goroutine is ended; no
// goroutine of the run is left.
func TestReview81GoexitChain(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range r81failKinds {
			for _, w := range []int{2, 4} {
				for _, k := range []int{0, 1, 150, 299} {
					for _, sk := range r81sinks {
						n := 300
						label := fmt.Sprintf("%s/w=%d/k=%d/%s", kind, w, k, sk.name)
						s, outs := r81goexitPipe(kind, n, w, k)
						s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1))
						var want []int
						for i := range k {
							want = append(want, outs(i)...)
						}
						returned, got, err := r81goexitOutcome(t, label, sk, s)
						if !returned {
							continue
						}
						if sk.first && err == nil && len(want) > 0 {
							if r81equal(got, want[:1]) != nil {
								t.Fatalf("%s: First = %v, want %v", label, got, want[:1])
							}
							continue
						}
						if !errors.Is(err, stage.ErrGoexit) {
							t.Fatalf("%s: the sink returned %v (values %v), want ErrGoexit", label, err, r81short(got))
						}
						if e := r81prefix(got, want); e != nil {
							t.Fatalf("%s: %v", label, e)
						}
					}
				}
			}
		}
	})
}
