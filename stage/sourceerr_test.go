package stage_test

import (
	"context"
	"errors"
	"iter"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// failingSources fail after producing 0..9.
func failingSources() map[string]func() stage.Stream[int] {
	return map[string]func() stage.Stream[int]{
		"Func": func() stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				if i == 10 {
					return 0, errBoom
				}
				i++
				return i - 1, nil
			})
		},
		"Seq2": func() stage.Stream[int] {
			return source.Seq2(iter.Seq2[int, error](func(yield func(int, error) bool) {
				for i := range 10 {
					if !yield(i, nil) {
						return
					}
				}
				if !yield(0, errBoom) {
					return // the source stops at the error
				}
				yield(11, nil)
			}))
		},
		"Func panics": func() stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				if i == 10 {
					panic(errBoom)
				}
				i++
				return i - 1, nil
			})
		},
	}
}

func TestSourceErrorEndsTheRunAfterItsItems(t *testing.T) {
	for name, src := range failingSources() {
		for _, m := range modes {
			for _, policy := range []stage.ErrorPolicy{stage.FailFast, stage.Forward} {
				t.Run(name+"/"+m.String()+"/"+policy.String(), func(t *testing.T) {
					s := stage.Map(src(), double, m.opts(stage.OnError(policy))...)
					var got []int
					var errs []error
					for v, err := range sink.All(context.Background(), s) {
						if err != nil {
							errs = append(errs, err)
							continue
						}
						if len(errs) > 0 {
							t.Fatalf("value %d after the source error", v)
						}
						got = append(got, v)
					}
					var srcErr *stage.SourceError
					if len(errs) != 1 || !errors.As(errs[0], &srcErr) || !errors.Is(errs[0], errBoom) {
						t.Fatalf("errors %v, want one *stage.SourceError wrapping errBoom, last", errs)
					}
					if name == "Func panics" {
						var pe *stage.PanicError
						if !errors.As(errs[0], &pe) || len(pe.Stack) == 0 {
							t.Fatalf("err = %v, want a *stage.PanicError with a stack", errs[0])
						}
					}
					slices.Sort(got)
					if want := []int{0, 2, 4, 6, 8, 10, 12, 14, 16, 18}; !slices.Equal(got, want) {
						t.Fatalf("got %v, want %v: every item before the error", got, want)
					}
				})
			}
		}
	}
}

func TestSourceErrorInMergeStopsEverySource(t *testing.T) {
	src := failingSources()["Func"]()
	endless := source.Func(func(context.Context) (int, error) { return 100, nil })
	n, err := sink.Count(context.Background(), stage.Merge(src, endless))
	var srcErr *stage.SourceError
	if !errors.As(err, &srcErr) {
		t.Fatalf("Count = %d, %v; want a *stage.SourceError", n, err)
	}
}

func TestIndexedPanicIsASourceError(t *testing.T) {
	src := stage.Indexed(100, func(i int) int {
		if i == 50 {
			panic("bad position")
		}
		return i
	})
	_, err := sink.Count(context.Background(), stage.Map(src, double, stage.Workers(4)))
	var srcErr *stage.SourceError
	var pe *stage.PanicError
	if !errors.As(err, &srcErr) || !errors.As(err, &pe) || pe.Value != "bad position" {
		t.Fatalf("err = %v, want a *stage.PanicError in a *stage.SourceError", err)
	}
}
