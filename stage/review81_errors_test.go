package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

var errR81 = errors.New("review81: item failed")

// r81failPipe builds an Ordered stage of kind whose function returns
// errR81 (or panics, if panicky) for the items in fail, after cost; out(v)
// lists the outputs of a good item.
func r81failPipe(kind string, src stage.Stream[int], w int, fail map[int]bool, panicky bool, cost func(int), opts ...stage.Option) (stage.Stream[int], func(v int) []int) {
	opts = append([]stage.Option{stage.Workers(w), stage.Ordered()}, opts...)
	bad := func(v int) error {
		cost(v)
		if fail[v] {
			if panicky {
				switch v % 3 {
				case 0:
					var idx []int
					_ = idx[v] // a runtime.Error (index out of range)
				case 1:
					panic(errR81)
				default:
					panic(fmt.Sprint("review81 panic ", v))
				}
			}
			return errR81
		}
		return nil
	}
	switch kind {
	case "Map":
		return stage.Map(src, func(_ context.Context, v int) (int, error) { return 7 * v, bad(v) }, opts...),
			func(v int) []int { return []int{7 * v} }
	case "Filter":
		return stage.Filter(src, func(_ context.Context, v int) (bool, error) { return v%2 == 0, bad(v) }, opts...),
			func(v int) []int {
				if v%2 == 0 {
					return []int{v}
				}
				return nil
			}
	case "FlatMap":
		outs := func(v int) []int {
			o := make([]int, v%3)
			for j := range o {
				o[j] = v*100 + j
			}
			return o
		}
		return stage.FlatMap(src, func(_ context.Context, v int) ([]int, error) {
				if err := bad(v); err != nil {
					return nil, err
				}
				return outs(v), nil
			}, opts...),
			outs
	case "Concurrent":
		tasks := stage.Map(src, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
			return func(context.Context) (int, error) { return -v, bad(v) }, nil
		}, stage.Workers(1))
		return stage.Concurrent(tasks, opts...), func(v int) []int { return []int{-v} }
	}
	panic(kind)
}

var r81failKinds = []string{"Map", "Filter", "FlatMap", "Concurrent"}

// r81costs: cheap, slow, cheap with a slow failing item, alternating.
var r81costs = map[string]func(fail map[int]bool) func(int){
	"cheap": func(map[int]bool) func(int) { return func(int) {} },
	"slowFailing": func(fail map[int]bool) func(int) {
		return func(v int) {
			if fail[v] {
				r81spin(500 * r81slow / 60)
			}
		}
	},
	"alternate": func(map[int]bool) func(int) {
		return func(v int) {
			if v%2 == 1 {
				r81spin(r81slow)
			}
		}
	},
}

// FailFast: "the first failure ends the run; the error is a *stage.Error
// with the item's Index and Input"; Ordered: "the outputs of earlier items
// still waiting for their turn, or still being made, are not delivered".
// So the sink returns a prefix of the outputs of the items before the
// failure (in order, none after it) and the failed item's *Error.
func TestReview81FailFast(t *testing.T) {
	for _, kind := range r81failKinds {
		for cname, mk := range r81costs {
			for _, n := range []int{1, 2, 5, 300} {
				for _, k := range []int{0, 1, n / 2, n - 1} {
					if k >= n || (k == 1 && n == 1) {
						continue
					}
					for _, w := range []int{2, 4, 16} {
						for _, sk := range r81sinks {
							label := fmt.Sprintf("%s/%s/n=%d/k=%d/w=%d/%s", kind, cname, n, k, w, sk.name)
							fail := map[int]bool{k: true}
							s, outs := r81failPipe(kind, r81sources[(n+k+w)%3].make(n), w, fail, false, mk(fail))
							var want []int
							for i := range k {
								want = append(want, outs(i)...)
							}
							var got []int
							var err error
							r81guard(t, label, func() { got, err = sk.run(t, context.Background(), s) })
							if sk.first && len(want) > 0 && err == nil {
								// The first item came before the failure
								// (which may also come first: a FailFast
								// failure ends the run when its call fails).
								if r81equal(got, want[:1]) != nil {
									t.Fatalf("%s: First = %v, %v; want %v", label, got, err, want[:1])
								}
								continue
							}
							r81checkItemErr(t, label, err, kind, map[int]bool{k: true}, errR81)
							if e := r81prefix(got, want); e != nil {
								t.Fatalf("%s: values before the failure: %v", label, e)
							}
						}
					}
				}
			}
		}
	}
}

// r81checkItemErr checks that err is an *Error of one of the items in idx
// (Index, and Input for all but Concurrent), wrapping cause.
func r81checkItemErr(t *testing.T, label string, err error, kind string, idx map[int]bool, cause error) {
	t.Helper()
	var e *stage.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: err %v (%T), want a *stage.Error", label, err, err)
	}
	if !idx[e.Index] {
		t.Fatalf("%s: *Error of Index %d, want one of %v (%v)", label, e.Index, idx, err)
	}
	if kind != "Concurrent" {
		if in, ok := e.Input.(int); !ok || in != e.Index {
			t.Fatalf("%s: *Error Input %v, want %d", label, e.Input, e.Index)
		}
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Fatalf("%s: err %v does not wrap %v", label, err, cause)
	}
}

// Several failing items under FailFast: the run ends with the *Error of
// one of them, and the values are a prefix of the outputs before the
// first failing item.
func TestReview81FailFastMany(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 3, 8} {
			for rep := range 10 {
				n := 200
				fail := map[int]bool{}
				for i := 50 + rep; i < n; i += 7 + rep {
					fail[i] = true
				}
				first := 50 + rep
				label := fmt.Sprintf("%s/w=%d/rep=%d", kind, w, rep)
				s, outs := r81failPipe(kind, r81counter(n, nil), w, fail, false, r81costs["alternate"](fail))
				var want []int
				for i := range first {
					want = append(want, outs(i)...)
				}
				var got []int
				var err error
				r81guard(t, label, func() { got, err = sink.Slice(context.Background(), s) })
				r81checkItemErr(t, label, err, kind, fail, errR81)
				if e := r81prefix(got, want); e != nil {
					t.Fatalf("%s: %v", label, e)
				}
			}
		}
	}
}

// Forward: "the *Error takes the item's place downstream"; sink.All
// "yields each one in its place"; the other sinks return what succeeded
// with a *ForwardedError of the count.
func TestReview81Forward(t *testing.T) {
	for _, kind := range r81failKinds {
		for cname, mk := range r81costs {
			for _, n := range []int{1, 3, 40, 300} {
				for _, w := range []int{2, 5, 16} {
					fail := map[int]bool{}
					for i := range n {
						if i%5 == 2 || i == n-1 {
							fail[i] = true
						}
					}
					label := fmt.Sprintf("%s/%s/n=%d/w=%d", kind, cname, n, w)
					// All: values and errors, each in its place.
					s, outs := r81failPipe(kind, r81sources[n%3].make(n), w, fail, false, mk(fail), stage.OnError(stage.Forward))
					type ev struct {
						v   int
						idx int // -1 for a value
					}
					var want []ev
					var wantVals []int
					for i := range n {
						if fail[i] {
							want = append(want, ev{0, i})
							continue
						}
						for _, o := range outs(i) {
							want = append(want, ev{o, -1})
							wantVals = append(wantVals, o)
						}
					}
					var got []ev
					r81guard(t, label, func() {
						for v, err := range sink.All(context.Background(), s) {
							if err != nil {
								var e *stage.Error
								if !errors.As(err, &e) || !errors.Is(err, errR81) {
									t.Errorf("%s: forwarded %v, want an *Error wrapping errR81", label, err)
									got = append(got, ev{0, -2})
									continue
								}
								got = append(got, ev{0, e.Index})
								continue
							}
							got = append(got, ev{v, -1})
						}
					})
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("%s: All yielded\n%v\nwant\n%v", label, got, want)
					}
					// Slice: values, and the count of forwarded errors.
					var vals []int
					var err error
					r81guard(t, label, func() { vals, err = sink.Slice(context.Background(), s) })
					var fe *sink.ForwardedError
					if !errors.As(err, &fe) || fe.Count != len(fail) || !errors.Is(err, errR81) {
						t.Fatalf("%s: Slice err %v, want a *ForwardedError of %d", label, err, len(fail))
					}
					if e := r81equal(vals, wantVals); e != nil {
						t.Fatalf("%s: Slice: %v", label, e)
					}
					// Run: f(ctx, zero, err) in place.
					var got2 []ev
					r81guard(t, label, func() {
						err = stage.Run(context.Background(), s, func(_ context.Context, v int, err error) error {
							var e *stage.Error
							if err != nil {
								if !errors.As(err, &e) {
									return fmt.Errorf("not an *Error: %w", err)
								}
								got2 = append(got2, ev{0, e.Index})
								return nil
							}
							got2 = append(got2, ev{v, -1})
							return nil
						})
					})
					if err != nil {
						t.Fatalf("%s: Run: %v", label, err)
					}
					if fmt.Sprint(got2) != fmt.Sprint(want) {
						t.Fatalf("%s: Run saw\n%v\nwant\n%v", label, got2, want)
					}
				}
			}
		}
	}
}

// Handle: failed items are dropped after h sees each once; "Calls of h
// never overlap within one stage of one run". Budget(n): the (n+1)th
// failure fails the run with an error wrapping ErrBudget and that item's
// *Error; up to n, the run goes on.
func TestReview81HandleBudget(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 4, 16} {
			n := 300
			fail := map[int]bool{}
			for i := 0; i < n; i += 9 {
				fail[i] = true
			}
			label := fmt.Sprintf("%s/w=%d", kind, w)
			var in, overlap atomic.Int32
			seenIdx := make([]atomic.Int32, n)
			h := func(_ context.Context, e *stage.Error) error {
				if in.Add(1) != 1 {
					overlap.Add(1)
				}
				defer in.Add(-1)
				if !errors.Is(e, errR81) || e.Index < 0 || e.Index >= n {
					overlap.Add(100)
					return nil
				}
				seenIdx[e.Index].Add(1)
				r81spin(5 * r81slow / 60)
				return nil
			}
			s, outs := r81failPipe(kind, r81sources[w%3].make(n), w, fail, false, r81costs["cheap"](fail), stage.OnError(stage.Handle(h)))
			var want []int
			for i := range n {
				if !fail[i] {
					want = append(want, outs(i)...)
				}
			}
			var got []int
			var err error
			r81guard(t, label, func() { got, err = sink.Slice(context.Background(), s) })
			if err != nil {
				t.Fatalf("%s: Handle: %v", label, err)
			}
			if e := r81equal(got, want); e != nil {
				t.Fatalf("%s: Handle: %v", label, e)
			}
			if o := overlap.Load(); o != 0 {
				t.Fatalf("%s: Handle: h calls overlapped or saw a bad *Error (%d)", label, o)
			}
			for i := range n {
				if c := seenIdx[i].Load(); (c == 1) != fail[i] || c > 1 {
					t.Fatalf("%s: Handle: h saw item %d %d times", label, i, c)
				}
			}
			// Budget(len(fail)): every failure within budget.
			s, _ = r81failPipe(kind, r81sources[w%3].make(n), w, fail, false, r81costs["cheap"](fail), stage.OnError(stage.Budget(len(fail), nil)))
			r81guard(t, label, func() { got, err = sink.Slice(context.Background(), s) })
			if err != nil || r81equal(got, want) != nil {
				t.Fatalf("%s: Budget(%d) of %d failures: %v, %v", label, len(fail), len(fail), err, r81equal(got, want))
			}
			// Budget(len(fail)-1): fails with ErrBudget and an item's *Error.
			s, _ = r81failPipe(kind, r81sources[w%3].make(n), w, fail, false, r81costs["cheap"](fail), stage.OnError(stage.Budget(len(fail)-1, nil)))
			r81guard(t, label, func() { got, err = sink.Slice(context.Background(), s) })
			if !errors.Is(err, stage.ErrBudget) {
				t.Fatalf("%s: Budget(%d) of %d failures: err %v, want ErrBudget", label, len(fail)-1, len(fail), err)
			}
			r81checkItemErr(t, label, err, kind, fail, errR81)
			if e := r81prefix(got, want); e != nil {
				t.Fatalf("%s: Budget: %v", label, e)
			}
		}
	}
}

// Panics in the function, which may run on the sink's goroutine: "a panic
// becomes a *PanicError inside" the *Error, "so the process never crashes
// because a user function panicked". In a child process.
func TestReview81Panics(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range r81failKinds {
			for _, w := range []int{2, 3, 8} {
				for _, k := range []int{0, 1, 2, 150, 151, 152, 299} {
					for _, sk := range r81sinks {
						if sk.first {
							continue
						}
						n := 300
						fail := map[int]bool{k: true}
						label := fmt.Sprintf("%s/w=%d/k=%d/%s", kind, w, k, sk.name)
						s, outs := r81failPipe(kind, r81sources[(k+w)%3].make(n), w, fail, true, func(int) {})
						var want []int
						for i := range k {
							want = append(want, outs(i)...)
						}
						var got []int
						var err error
						r81guard(t, label, func() { got, err = sk.run(t, context.Background(), s) })
						r81checkItemErr(t, label, err, kind, fail, nil)
						var pe *stage.PanicError
						if !errors.As(err, &pe) {
							t.Fatalf("%s: err %v, want a *PanicError inside", label, err)
						}
						switch k % 3 {
						case 0:
							var re runtime.Error
							if !errors.As(err, &re) {
								t.Fatalf("%s: err %v: errors.As finds no runtime.Error", label, err)
							}
						case 1:
							if !errors.Is(err, errR81) {
								t.Fatalf("%s: err %v: errors.Is finds no panic value", label, err)
							}
						}
						if e := r81prefix(got, want); e != nil {
							t.Fatalf("%s: %v", label, e)
						}
						// Forward: the panic takes the item's place.
						s, _ = r81failPipe(kind, r81sources[(k+w)%3].make(n), w, fail, true, func(int) {}, stage.OnError(stage.Forward))
						var all []int
						for i := range n {
							if i != k {
								all = append(all, outs(i)...)
							}
						}
						r81guard(t, label, func() { got, err = sink.Slice(context.Background(), s) })
						var fe *sink.ForwardedError
						if !errors.As(err, &fe) || fe.Count != 1 || !errors.As(err, &pe) {
							t.Fatalf("%s: Forward: err %v, want a *ForwardedError of one *PanicError", label, err)
						}
						if e := r81equal(got, all); e != nil {
							t.Fatalf("%s: Forward: %v", label, e)
						}
					}
				}
			}
		}
	})
}
