package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Cancellation, early exits and Until over Ordered stages whose calls may
// run in the consumer's goroutine. Docs (Cancellation): "Once the run is
// cancelled, no source's next ... is called, no call of a stage's function
// starts and the sink delivers nothing more, but for a step already on its
// way"; "Cancelling the caller's ctx, ..., or a sink that stops early
// (sink.First, a break out of sink.All) cancels the run; the user functions
// see it through their ctx"; (Leaks) "When a sink returns, no goroutine of
// the run is running".

// r81ctxs records the contexts the functions were given.
type r81ctxs struct {
	mu   sync.Mutex
	ctxs []context.Context
}

func (c *r81ctxs) add(ctx context.Context) {
	c.mu.Lock()
	c.ctxs = append(c.ctxs, ctx)
	c.mu.Unlock()
}

func (c *r81ctxs) allDone(t *testing.T, label string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ctx := range c.ctxs {
		if ctx.Err() == nil {
			t.Fatalf("%s: the ctx of call %d is not done once the sink returned", label, i)
		}
	}
}

// r81ctxPipe is an Ordered stage of kind, with a hook called with each
// item's ctx before its output is computed.
func r81ctxPipe(kind string, src stage.Stream[int], w int, hook func(ctx context.Context, v int), opts ...stage.Option) (stage.Stream[int], []int) {
	opts = append([]stage.Option{stage.Workers(w), stage.Ordered()}, opts...)
	switch kind {
	case "Map":
		return stage.Map(src, func(ctx context.Context, v int) (int, error) { hook(ctx, v); return 5 * v, nil }, opts...), nil
	case "Filter":
		return stage.Filter(src, func(ctx context.Context, v int) (bool, error) { hook(ctx, v); return v%3 != 0, nil }, opts...), nil
	case "FlatMap":
		return stage.FlatMap(src, func(ctx context.Context, v int) ([]int, error) { hook(ctx, v); return []int{v, v}, nil }, opts...), nil
	case "Concurrent":
		tasks := stage.Map(src, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
			return func(ctx context.Context) (int, error) { hook(ctx, v); return -v, nil }, nil
		}, stage.Workers(1))
		return stage.Concurrent(tasks, opts...), nil
	}
	panic(kind)
}

func r81ctxWant(kind string, n int) []int {
	var want []int
	for v := range n {
		switch kind {
		case "Map":
			want = append(want, 5*v)
		case "Filter":
			if v%3 != 0 {
				want = append(want, v)
			}
		case "FlatMap":
			want = append(want, v, v)
		case "Concurrent":
			want = append(want, -v)
		}
	}
	return want
}

// The caller's ctx cancelled inside the call of item k: the sink returns
// a cancellation, the values it delivered are a prefix of the outputs in
// order, and every call's ctx is done.
func TestReview81CancelInCall(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 3, 8} {
			for _, k := range []int{0, 1, 100, 299} {
				for _, sk := range r81sinks {
					n := 300
					label := fmt.Sprintf("%s/w=%d/k=%d/%s", kind, w, k, sk.name)
					ctx, cancel := context.WithCancel(context.Background())
					var ctxs r81ctxs
					s, _ := r81ctxPipe(kind, r81sources[(k+w)%3].make(n), w, func(c context.Context, v int) {
						ctxs.add(c)
						if v == k {
							cancel()
						}
					})
					want := r81ctxWant(kind, n)
					var got []int
					var err error
					r81guard(t, label, func() { got, err = sk.run(t, ctx, s) })
					cancel()
					if sk.first && err == nil {
						if r81equal(got, want[:1]) != nil {
							t.Fatalf("%s: First = %v, want %v", label, got, want[:1])
						}
					} else if !errors.Is(err, context.Canceled) {
						t.Fatalf("%s: err %v, want context.Canceled", label, err)
					}
					if e := r81prefix(got, want); e != nil {
						t.Fatalf("%s: %v", label, e)
					}
					ctxs.allDone(t, label)
				}
			}
		}
	}
}

// The caller's ctx cancelled from the sink's callback at its (k+1)th
// value: the sink delivers nothing more and returns a cancellation (even
// at the last value: "a cancellation of ctx while f works on the last item
// comes before the end").
func TestReview81CancelInCallback(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 4, 16} {
			n := 300
			want := r81ctxWant(kind, n)
			for _, k := range []int{0, 1, 57, len(want) - 1} {
				for _, sname := range []string{"ForEach", "Run", "All"} {
					label := fmt.Sprintf("%s/w=%d/k=%d/%s", kind, w, k, sname)
					ctx, cancel := context.WithCancel(context.Background())
					var ctxs r81ctxs
					s, _ := r81ctxPipe(kind, r81sources[(k+w)%3].make(n), w, func(c context.Context, v int) { ctxs.add(c) })
					var got []int
					var err error
					r81guard(t, label, func() {
						take := func(v int) {
							got = append(got, v)
							if len(got) == k+1 {
								cancel()
							}
						}
						switch sname {
						case "ForEach":
							err = sink.ForEach(ctx, s, func(_ context.Context, v int) error { take(v); return nil })
						case "Run":
							err = stage.Run(ctx, s, func(_ context.Context, v int, e error) error {
								if e != nil {
									return e
								}
								take(v)
								return nil
							})
						case "All":
							for v, e := range sink.All(ctx, s) {
								if e != nil {
									err = e
									break
								}
								take(v)
							}
						}
					})
					cancel()
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("%s: err %v, want context.Canceled", label, err)
					}
					if e := r81equal(got, want[:k+1]); e != nil {
						t.Fatalf("%s: values delivered after the cancellation: %v", label, e)
					}
					ctxs.allDone(t, label)
				}
			}
		}
	}
}

// The caller's ctx cancelled by the source as it produces item m (a step
// of the run's own goroutines, wherever they run).
func TestReview81CancelInSource(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 5} {
			for _, m := range []int{1, 2, 150, 299} {
				n := 300
				label := fmt.Sprintf("%s/w=%d/m=%d", kind, w, m)
				ctx, cancel := context.WithCancel(context.Background())
				src := stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(context.Context) (int, error) {
						if i >= n {
							return 0, io.EOF
						}
						if i == m {
							cancel()
						}
						i++
						return i - 1, nil
					}, nil
				}))
				var ctxs r81ctxs
				s, _ := r81ctxPipe(kind, src, w, func(c context.Context, v int) { ctxs.add(c) })
				want := r81ctxWant(kind, n)
				var got []int
				var err error
				r81guard(t, label, func() { got, err = sink.Slice(ctx, s) })
				cancel()
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("%s: err %v, want context.Canceled", label, err)
				}
				if e := r81prefix(got, want); e != nil {
					t.Fatalf("%s: %v", label, e)
				}
				ctxs.allDone(t, label)
			}
		}
	}
}

// A ctx cancelled before the run: no value, a cancellation, and no call of
// the function ("Once the run is cancelled ... no call of a stage's
// function starts").
func TestReview81CancelBefore(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, sk := range r81sinks {
			label := fmt.Sprintf("%s/%s", kind, sk.name)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var calls atomic.Int32
			s, _ := r81ctxPipe(kind, r81sources[0].make(100), 4, func(context.Context, int) { calls.Add(1) })
			var got []int
			var err error
			r81guard(t, label, func() { got, err = sk.run(t, ctx, s) })
			if !errors.Is(err, context.Canceled) || len(got) != 0 {
				t.Fatalf("%s: %v, %v; want no value and context.Canceled", label, got, err)
			}
			if c := calls.Load(); c != 0 {
				t.Fatalf("%s: %d calls of the function in a run cancelled before it started", label, c)
			}
		}
	}
}

// A break out of sink.All at its (k+1)th value: the loop saw exactly the
// first k+1 outputs in order, no goroutine is left when the loop ends, and
// every call's ctx is done.
func TestReview81BreakAll(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 3, 16} {
			for pi, prof := range r81profiles {
				n := 200
				want := r81ctxWant(kind, n)
				for _, k := range []int{0, 1, 2, 100, len(want) - 2, len(want) - 1} {
					label := fmt.Sprintf("%s/w=%d/%s/k=%d", kind, w, prof.name, k)
					r := newR81run(n, w)
					var ctxs r81ctxs
					s, _ := r81ctxPipe(kind, r81sources[(pi+k)%3].make(n), w, func(c context.Context, v int) {
						ctxs.add(c)
						r.called(v)
						prof.cost(r, v)
					})
					var got []int
					r81guard(t, label, func() {
						for v, err := range sink.All(context.Background(), s) {
							if err != nil {
								t.Errorf("%s: %v", label, err)
								break
							}
							got = append(got, v)
							if len(got) == k+1 {
								break
							}
						}
					})
					if e := r81equal(got, want[:k+1]); e != nil {
						t.Fatalf("%s: %v", label, e)
					}
					if k < len(want)-1 {
						ctxs.allDone(t, label)
					}
					for i := range r.calls {
						if c := r.calls[i].Load(); c > 1 {
							t.Fatalf("%s: item %d called %d times", label, i, c)
						}
					}
				}
			}
		}
	}
}

// sink.First: the first output, whatever the costs; every call's ctx is
// done once it returned.
func TestReview81First(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 4, 16} {
			for pi, prof := range r81profiles {
				for _, n := range []int{1, 2, 3, 100} {
					label := fmt.Sprintf("%s/w=%d/%s/n=%d", kind, w, prof.name, n)
					r := newR81run(n, w)
					var ctxs r81ctxs
					s, _ := r81ctxPipe(kind, r81sources[(pi+n)%3].make(n), w, func(c context.Context, v int) {
						ctxs.add(c)
						r.called(v)
						prof.cost(r, v)
					})
					want := r81ctxWant(kind, n)
					var v int
					var ok bool
					var err error
					r81guard(t, label, func() { v, ok, err = sink.First(context.Background(), s) })
					if err != nil || ok != (len(want) > 0) || (ok && v != want[0]) {
						t.Fatalf("%s: First = %v, %v, %v; want %v", label, v, ok, err, want[:min(1, len(want))])
					}
					if len(want) > 1 {
						ctxs.allDone(t, label)
					}
				}
			}
		}
	}
}

// Until's stop done inside the call of item k, Until before or after the
// Ordered stage: the sink returns nil; what the source produced goes
// through, in order: the values are the outputs of items 0..m-1 for some
// m > k, and exactly those items were called, once.
func TestReview81Until(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 4} {
			for _, k := range []int{0, 1, 120, 299} {
				for _, where := range []string{"before", "after"} {
					n := 300
					label := fmt.Sprintf("%s/w=%d/k=%d/%s", kind, w, k, where)
					stop, stopNow := context.WithCancel(context.Background())
					calls := make([]atomic.Int32, n)
					src := r81sources[(k+w)%3].make(n)
					if where == "before" {
						src = stage.Until(src, stop)
					}
					s, _ := r81ctxPipe(kind, src, w, func(_ context.Context, v int) {
						calls[v].Add(1)
						if v == k {
							stopNow()
						}
					})
					if where == "after" {
						s = stage.Until(s, stop)
					}
					var got []int
					var err error
					r81guard(t, label, func() { got, err = sink.Slice(context.Background(), s) })
					stopNow()
					if err != nil {
						t.Fatalf("%s: err %v, want nil (a drain)", label, err)
					}
					m := 0
					for m < n && calls[m].Load() == 1 {
						m++
					}
					for i := range n {
						if c := calls[i].Load(); c > 1 || (c == 1) != (i < m) {
							t.Fatalf("%s: item %d called %d times (the called items are not 0..%d)", label, i, c, m-1)
						}
					}
					if m <= k {
						t.Fatalf("%s: only %d items called, item %d was", label, m, k)
					}
					if e := r81equal(got, r81ctxWant(kind, m)); e != nil {
						t.Fatalf("%s: the items produced (0..%d) did not all go through in order: %v", label, m-1, e)
					}
				}
			}
		}
	}
}
