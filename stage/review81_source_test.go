package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// A source that fails under an Ordered stage whose calls (and the source's
// next, or Indexed's at) may run in the consumer's goroutine. Source: "any
// other error (or a panic in open, next or stop) becomes a *SourceError
// that ends the run: items produced before it still go through, then the
// sink returns it". Indexed: "A panic in at ends the run with a
// *SourceError once the items made have gone through: those of later
// positions whose at was called too (under Ordered in order, without the
// lost one)".

var errR81src = errors.New("review81: source failed")

func TestReview81SourceError(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range r81failKinds {
			for _, w := range []int{2, 4, 16} {
				for _, m := range []int{0, 1, 2, 150, 299} {
					for _, how := range []string{"error", "panic"} {
						for _, sk := range r81sinks {
							if sk.first {
								continue
							}
							n := 300
							label := fmt.Sprintf("%s/w=%d/m=%d/%s/%s", kind, w, m, how, sk.name)
							src := stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
								i := 0
								return func(context.Context) (int, error) {
									if i >= n {
										return 0, io.EOF
									}
									if i == m {
										if how == "panic" {
											panic(errR81src)
										}
										return 0, errR81src
									}
									i++
									return i - 1, nil
								}, nil
							}))
							s, outs := r81failPipe(kind, src, w, map[int]bool{}, false, func(int) {})
							var want []int
							for i := range m {
								want = append(want, outs(i)...)
							}
							var got []int
							var err error
							r81guard(t, label, func() { got, err = sk.run(t, context.Background(), s) })
							var se *stage.SourceError
							if !errors.As(err, &se) || !errors.Is(err, errR81src) {
								t.Fatalf("%s: err %v, want a *SourceError wrapping the source's error", label, err)
							}
							if how == "panic" {
								var pe *stage.PanicError
								if !errors.As(err, &pe) {
									t.Fatalf("%s: err %v, want a *PanicError inside", label, err)
								}
							}
							if e := r81equal(got, want); e != nil {
								t.Fatalf("%s: the items produced before the failure did not all go through in order: %v", label, e)
							}
						}
					}
				}
			}
		}
	})
}

func TestReview81IndexedAtPanic(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range []string{"Map", "Concurrent"} {
			for _, w := range []int{2, 4, 16} {
				for _, p := range []int{0, 1, 2, 150, 299} {
					n := 300
					label := fmt.Sprintf("%s/w=%d/p=%d", kind, w, p)
					src := stage.Indexed(n, func(i int) int {
						if i == p {
							panic(errR81src)
						}
						return i
					})
					s, outs := r81failPipe(kind, src, w, map[int]bool{}, false, func(int) {})
					var got []int
					var err error
					r81guard(t, label, func() { got, err = sink.Slice(context.Background(), s) })
					var se *stage.SourceError
					var pe *stage.PanicError
					if !errors.As(err, &se) || !errors.As(err, &pe) || !errors.Is(err, errR81src) {
						t.Fatalf("%s: err %v, want a *SourceError of a *PanicError", label, err)
					}
					// Items 0..p-1, then later positions in order without p.
					var want []int
					for i := range p {
						want = append(want, outs(i)...)
					}
					if len(got) < len(want) || r81equal(got[:len(want)], want) != nil {
						t.Fatalf("%s: got %v, want it to start with the outputs of positions 0..%d", label, r81short(got), p-1)
					}
					rest := got[len(want):]
					for j, v := range rest {
						if exp := outs(p + 1 + j); len(exp) != 1 || v != exp[0] {
							t.Fatalf("%s: after position %d's loss, got %v, want later positions in order (p+1, p+2, ...)", label, p, rest)
						}
					}
				}
			}
		}
	})
}
