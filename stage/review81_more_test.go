package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// More promises over Ordered stages whose calls may run in the consumer's
// goroutine: observers, acknowledgements, Retry, the sinks' callbacks'
// errors and stops, Reduce, Chan.

// Stats (Watcher "Received", "Finished"): every call is seen, whichever
// goroutine ran it; once the run is over, Running is 0.
func TestReview81Stats(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 8} {
			for _, pol := range []string{"ok", "forward"} {
				n := 500
				label := fmt.Sprintf("%s/w=%d/%s", kind, w, pol)
				var st stage.Stats
				ctx := stage.Observe(context.Background(), &st)
				fail := map[int]bool{}
				var opts []stage.Option
				if pol == "forward" {
					for i := 3; i < n; i += 11 {
						fail[i] = true
					}
					opts = append(opts, stage.OnError(stage.Forward))
				}
				opts = append(opts, stage.Name("x"))
				s, _ := r81failPipe(kind, r81sources[w%3].make(n), w, fail, false, func(int) {}, opts...)
				r81guard(t, label, func() { _, _ = sink.Count(ctx, s) })
				c, ok := st.Get("x")
				if !ok || c.Received != int64(n) || c.Finished != int64(n) || c.Failed != int64(len(fail)) || c.InFlight != 0 || c.Running != 0 {
					t.Fatalf("%s: counts %+v, want %d received and finished, %d failed", label, c, n, len(fail))
				}
			}
		}
	}
}

type r81ack struct {
	calls *atomic.Int32
	err   *atomic.Pointer[error]
}

func (a r81ack) Done(err error) {
	a.calls.Add(1)
	if err != nil {
		a.err.Store(&err)
	}
}

// Acknowledgements (Ack): Done(nil) once per item whose outputs were
// committed or that a Filter dropped; Done(err) for an item whose
// forwarded error reached the sink.
func TestReview81Acks(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 4, 16} {
			n := 300
			label := fmt.Sprintf("%s/w=%d", kind, w)
			calls := make([]atomic.Int32, n)
			errs := make([]atomic.Pointer[error], n)
			src := stage.NeverWaits(stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
				i := 0
				return func(context.Context) (int, stage.Ack, error) {
					if i >= n {
						return 0, nil, io.EOF
					}
					i++
					return i - 1, r81ack{&calls[i-1], &errs[i-1]}, nil
				}, nil
			}))
			fail := map[int]bool{}
			for i := 5; i < n; i += 13 {
				fail[i] = true
			}
			s, _ := r81failPipe(kind, src, w, fail, false, func(int) {}, stage.OnError(stage.Forward))
			var err error
			r81guard(t, label, func() { _, err = sink.Slice(context.Background(), s) })
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != len(fail) {
				t.Fatalf("%s: err %v", label, err)
			}
			for i := range n {
				c := calls[i].Load()
				e := errs[i].Load()
				if c != 1 || (e != nil) != fail[i] || (e != nil && !errors.Is(*e, errR81)) {
					t.Fatalf("%s: item %d: Done called %d times, error %v (failed: %v)", label, i, c, e, fail[i])
				}
			}
		}
	}
}

// Retry: an item that fails its first attempt is called again and its
// output keeps its place; the others are called once.
func TestReview81Retry(t *testing.T) {
	for _, w := range []int{2, 4, 16} {
		n := 300
		label := fmt.Sprintf("w=%d", w)
		calls := make([]atomic.Int32, n)
		s := stage.Map(r81sources[w%3].make(n), func(_ context.Context, v int) (int, error) {
			if calls[v].Add(1) == 1 && v%7 == 3 {
				return 0, errR81
			}
			return v * 2, nil
		}, stage.Workers(w), stage.Ordered(), stage.Retry(2, 0))
		var got []int
		var err error
		r81guard(t, label, func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		want := make([]int, n)
		for i := range want {
			want[i] = 2 * i
		}
		if e := r81equal(got, want); e != nil {
			t.Fatalf("%s: %v", label, e)
		}
		for i := range n {
			want := int32(1)
			if i%7 == 3 {
				want = 2
			}
			if c := calls[i].Load(); c != want {
				t.Fatalf("%s: item %d called %d times, want %d", label, i, c, want)
			}
		}
	}
}

// ForEach's callback failing at its (k+1)th value: "the run's context is
// cancelled with a *stage.Error (Stage "foreach") as its cause, and
// ForEach returns that error"; returning ErrStop ends the run with nil.
// No callback after it.
func TestReview81ForEachErrStop(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 5} {
			n := 200
			s, outs := r81failPipe(kind, r81sources[w%3].make(n), w, map[int]bool{}, false, func(int) {})
			var want []int
			for i := range n {
				want = append(want, outs(i)...)
			}
			for _, k := range []int{0, 1, 50, len(want) - 1} {
				for _, stop := range []bool{false, true} {
					label := fmt.Sprintf("%s/w=%d/k=%d/stop=%v", kind, w, k, stop)
					var got []int
					var err error
					r81guard(t, label, func() {
						err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
							got = append(got, v)
							if len(got) == k+1 {
								if stop {
									return stage.ErrStop
								}
								return errR81
							}
							return nil
						})
					})
					if e := r81equal(got, want[:k+1]); e != nil {
						t.Fatalf("%s: %v", label, e)
					}
					if stop {
						if err != nil {
							t.Fatalf("%s: ErrStop: err %v, want nil", label, err)
						}
						continue
					}
					var e *stage.Error
					if !errors.As(err, &e) || e.Stage != "foreach" || e.Index != k || !errors.Is(err, errR81) {
						t.Fatalf("%s: err %v, want a *stage.Error of foreach, item %d", label, err, k)
					}
				}
			}
		}
	}
}

// Reduce folds in arrival order, which for an Ordered stage is input
// order: a fold that is not commutative gives the sequential result.
// Chan sends in arrival order too.
func TestReview81ReduceChan(t *testing.T) {
	for pi, p := range r81profiles {
		for _, w := range []int{2, 9} {
			n := 250
			label := fmt.Sprintf("%s/w=%d", p.name, w)
			r := newR81run(n, w)
			s := r81chainStage("Map", r81sources[pi%3].make(n), r, p, stage.Workers(w), stage.Ordered())
			fold := func(acc uint64, v int) uint64 { return acc*1099511628211 + uint64(v) + 1 }
			var want uint64 = 7
			for i := range n {
				want = fold(want, i)
			}
			var got uint64
			var err error
			r81guard(t, label, func() { got, err = sink.Reduce(context.Background(), s, uint64(7), fold) })
			if err != nil || got != want {
				t.Fatalf("%s: Reduce = %d, %v; want %d", label, got, err, want)
			}
			r.exactlyOnce(t, label)
			r2 := newR81run(n, w)
			s = r81chainStage("Map", r81sources[pi%3].make(n), r2, p, stage.Workers(w), stage.Ordered())
			ch := make(chan int, 3)
			var vals []int
			r81guard(t, label, func() {
				done := make(chan struct{})
				go func() {
					defer close(done)
					for v := range ch {
						vals = append(vals, v)
					}
				}()
				err = sink.Chan(context.Background(), s, ch)
				close(ch)
				<-done
			})
			if err != nil {
				t.Fatal(err)
			}
			if e := r81equal(vals, r81ints(n)); e != nil {
				t.Fatalf("%s: Chan: %v", label, e)
			}
		}
	}
}

// An Ordered Apply emitting 0..5 outputs per item, one item 2000: all of
// an item's outputs leave before the next item's.
func TestReview81ApplyOrdered(t *testing.T) {
	for _, w := range []int{2, 4, 16} {
		for _, n := range []int{1, 2, 100} {
			label := fmt.Sprintf("w=%d/n=%d", w, n)
			cnt := func(v int) int {
				if v == n/2 {
					return 2000
				}
				return v % 6
			}
			s := stage.Apply(r81sources[n%3].make(n), func(_ context.Context, v int, emit func(int) bool) error {
				for j := range cnt(v) {
					if !emit(v*10000 + j) {
						return errors.New("emit refused")
					}
				}
				return nil
			}, stage.Workers(w), stage.Ordered())
			var want []int
			for i := range n {
				for j := range cnt(i) {
					want = append(want, i*10000+j)
				}
			}
			var got []int
			var err error
			r81guard(t, label, func() { got, err = sink.Slice(context.Background(), s) })
			if err != nil {
				t.Fatal(err)
			}
			if e := r81equal(got, want); e != nil {
				t.Fatalf("%s: %v", label, e)
			}
		}
	}
}

// A sink callback's *Error Index is the item's position in the stream the
// sink runs, forwarded errors counting as items.
func TestReview81ForEachIndexWithForwarded(t *testing.T) {
	for _, kind := range []string{"Map", "Concurrent"} {
		for _, w := range []int{2, 4, 16} {
			for _, k := range []int{3, 40, 299} {
				n := 300
				label := fmt.Sprintf("%s/w=%d/k=%d", kind, w, k)
				fail := map[int]bool{}
				for i := 2; i < n; i += 5 {
					fail[i] = true
				}
				s, outs := r81failPipe(kind, r81sources[(w+k)%3].make(n), w, fail, false, func(int) {}, stage.OnError(stage.Forward))
				stopAt := outs(k)[0] // item k is not a failing one
				var err error
				r81guard(t, label, func() {
					err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
						if v == stopAt {
							return errR81
						}
						return nil
					})
				})
				var e *stage.Error
				if !errors.As(err, &e) || e.Stage != "foreach" || e.Index != k || e.Input != stopAt {
					t.Fatalf("%s: err %v (%+v), want the foreach *Error of index %d", label, err, e, k)
				}
			}
		}
	}
}

// Timeout on an Ordered stage whose calls may run on the sink's goroutine:
// a call that waits for its ctx gets a DeadlineExceeded error (its own,
// not the run's), which Forward keeps in its place.
func TestReview81Timeout(t *testing.T) {
	for _, w := range []int{2, 4} {
		for _, k := range []int{0, 150, 299} {
			n := 300
			label := fmt.Sprintf("w=%d/k=%d", w, k)
			s := stage.Map(r81sources[(w+k)%3].make(n), func(ctx context.Context, v int) (int, error) {
				if v == k || v == k/2+1 {
					<-ctx.Done()
					return 0, ctx.Err()
				}
				return v, nil
			}, stage.Workers(w), stage.Ordered(), stage.Timeout(2*time.Millisecond), stage.OnError(stage.Forward))
			var got []string
			r81guard(t, label, func() {
				for v, err := range sink.All(context.Background(), s) {
					if err != nil {
						var e *stage.Error
						if !errors.As(err, &e) || !errors.Is(err, context.DeadlineExceeded) {
							t.Errorf("%s: forwarded %v", label, err)
							return
						}
						got = append(got, fmt.Sprint("e", e.Index))
						continue
					}
					got = append(got, fmt.Sprint(v))
				}
			})
			var want []string
			for i := range n {
				if i == k || i == k/2+1 {
					want = append(want, fmt.Sprint("e", i))
				} else {
					want = append(want, fmt.Sprint(i))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: got %v\nwant %v", label, got, want)
			}
		}
	}
}

// Handle's h returning an error: "the run fails with it as with FailFast,
// and the sink returns h's error".
func TestReview81HandleFails(t *testing.T) {
	errH := errors.New("review81: handler refuses")
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 8} {
			n := 300
			label := fmt.Sprintf("%s/w=%d", kind, w)
			fail := map[int]bool{10: true, 200: true}
			s, outs := r81failPipe(kind, r81sources[w%3].make(n), w, fail, false, func(int) {}, stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
				if e.Index == 200 {
					return errH
				}
				return nil
			})))
			var want []int
			for i := range 200 {
				if !fail[i] {
					want = append(want, outs(i)...)
				}
			}
			var got []int
			var err error
			r81guard(t, label, func() { got, err = sink.Slice(context.Background(), s) })
			if !errors.Is(err, errH) {
				t.Fatalf("%s: err %v, want the handler's error", label, err)
			}
			if e := r81prefix(got, want); e != nil {
				t.Fatalf("%s: %v", label, e)
			}
		}
	}
}
