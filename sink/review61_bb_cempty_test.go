package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// c61SliceAcks is an AckSource over items that records each item's Done.
func c61SliceAcks[T any](items []T) (stage.Stream[T], *r61Acks) {
	a := r61NewAcks(len(items))
	return stage.AckSource(func(context.Context) (func(context.Context) (T, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (T, stage.Ack, error) {
			var zero T
			if i == len(items) {
				return zero, nil, io.EOF
			}
			i++
			return items[i-1], r61Ack{a, i - 1}, nil
		}, nil
	}), a
}

// stage.Ack: "Done(nil) when the item's way through the pipeline has ended
// well: the sink committed it ..., or every output it led to was committed;
// or it was dropped on purpose: a Filter that did not keep it, a FlatMap or
// Apply call with no output". Apply: "Apply is the primitive every stage is
// written with"; Unbatch "flattens a stream of slices into their elements".
// An empty slice leads to no output: its item's way has ended well and must
// be told nil (else a broker redelivers it for ever).
func TestReview61BBCEmptyOutputsAcked(t *testing.T) {
	items := [][]int{{}, {1}, nil, {2, 3}, {}}
	shapes := map[string]func(stage.Stream[[]int]) stage.Stream[int]{
		"unbatch": func(s stage.Stream[[]int]) stage.Stream[int] { return stage.Unbatch(s) },
		"map-unbatch": func(s stage.Stream[[]int]) stage.Stream[int] {
			return stage.Unbatch(stage.Map(s, c61idS, stage.Workers(2)))
		},
		"flatmap": func(s stage.Stream[[]int]) stage.Stream[int] { return stage.FlatMap(s, c61idS, stage.Workers(2)) },
		"flatmap-ord": func(s stage.Stream[[]int]) stage.Stream[int] {
			return stage.FlatMap(s, c61idS, stage.Workers(3), stage.Ordered())
		},
		"apply-keyby": func(s stage.Stream[[]int]) stage.Stream[int] {
			return stage.Apply(s, func(_ context.Context, v []int, emit func(int) bool) error {
				for _, x := range v {
					emit(x)
				}
				return nil
			}, stage.Workers(2), stage.KeyBy(func(v []int) int { return len(v) }))
		},
		"tee-unbatch": func(s stage.Stream[[]int]) stage.Stream[int] {
			b := stage.Tee(s, 2)
			return stage.Merge(stage.Unbatch(b[0]), stage.FlatMap(b[1], c61idS))
		},
	}
	for name, shape := range shapes {
		for _, sk := range []string{"foreach", "slice", "all"} {
			t.Run(name+"/"+sk, func(t *testing.T) {
				src, a := c61SliceAcks(items)
				s := shape(src)
				var n int
				var err error
				runcheck.Run(t, "run", func() {
					switch sk {
					case "foreach":
						err = sink.ForEach(context.Background(), s, func(context.Context, int) error { n++; return nil })
					case "slice":
						var got []int
						got, err = sink.Slice(context.Background(), s)
						n = len(got)
					case "all":
						for _, e := range sink.All(context.Background(), s) {
							if e != nil {
								err = e
							}
							n++
						}
					}
				})
				want := 3
				if name == "tee-unbatch" {
					want = 6
				}
				if err != nil || n != want {
					t.Fatalf("%d values, %v; want %d, nil", n, err, want)
				}
				a.mu.Lock()
				defer a.mu.Unlock()
				for i := range items {
					if a.done[i] != 1 || a.errs[i] != nil {
						t.Fatalf("item %d (%v): told %d times (%v); want Done(nil) once. All: %s", i, items[i], a.done[i], a.errs[i], a.stateLocked())
					}
				}
			})
		}
	}
}

func c61idS(_ context.Context, v []int) ([]int, error) { return v, nil }

func (a *r61Acks) stateLocked() string {
	s := ""
	for v := range a.n {
		s += fmt.Sprintf("%d:%d/%v ", v, a.done[v], a.errs[v])
	}
	return s
}

// sink.ForEach: "f may return stage.ErrStop ... ForEach then returns nil (or
// the *ForwardedError of what was forwarded before)". stage.Run: "Run takes
// what the last stage has ready in one batch and calls f for each of its
// items". Forwarded errors after the stopping item, even if ready in the
// same batch, were not "forwarded before".
func TestReview61BBCStopForwardedBefore(t *testing.T) {
	for range 30 {
		for _, opts := range [][]stage.Option{
			{stage.Workers(4), stage.Ordered(), stage.Buffer(16)},
			{stage.Workers(1), stage.Buffer(16)},
		} {
			in := make([]int, 20)
			for i := range in {
				in[i] = i
			}
			s := stage.Map(source.Slice(in), func(_ context.Context, v int) (int, error) {
				if v%2 == 0 {
					return 0, errC61
				}
				return v, nil
			}, append(opts, stage.OnError(stage.Forward))...)
			var err error
			runcheck.Run(t, "run", func() {
				err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
					if v == 3 {
						return stage.ErrStop
					}
					return nil
				})
			})
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != 2 || len(fe.Sample) != 2 {
				t.Fatalf("%v: ForEach = %v; want a *ForwardedError of the 2 errors before the stop", opts, err)
			}
		}
	}
}

// sink.Reduce: "A panic in f ends the run with a *stage.Error (Stage
// "reduce") wrapping a *stage.PanicError. Reduce returns the accumulator as
// it stands when the run ends, with the error that ended it and a
// *ForwardedError, joined." Error.Index: "Forwarded errors count as items."
func TestReview61BBCReducePanicAfterForwarded(t *testing.T) {
	s := stage.Map(source.Slice([]int{0, 1, 2, 3, 4}), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			return 0, errC61
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var acc int
	var err error
	runcheck.Run(t, "run", func() {
		acc, err = sink.Reduce(context.Background(), s, 100, func(a, v int) int {
			if v == 3 {
				panic("r3")
			}
			return a + v
		})
	})
	var e *stage.Error
	var pe *stage.PanicError
	var fe *sink.ForwardedError
	if acc != 102 || !errors.As(err, &e) || e.Stage != "reduce" || e.Index != 3 || !errors.As(err, &pe) || pe.Value != "r3" || !errors.As(err, &fe) || fe.Count != 1 {
		t.Fatalf("Reduce = %d, %v (%+v); want 102, reduce *Error at 3 with the panic, joined with 1 forwarded", acc, err, e)
	}
}
