package stage_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// fanOut emits x%9 outputs for item x: 100x, 100x+1, ...
func fanOut(_ context.Context, x int, emit func(int) bool) error {
	for k := range x % 9 {
		if !emit(100*x + k) {
			return nil
		}
	}
	return nil
}

func fanOutWant(n int) []int {
	var want []int
	for x := range n {
		for k := range x % 9 {
			want = append(want, 100*x+k)
		}
	}
	return want
}

func TestApplyManyOutputsPerItem(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			got, err := sink.Slice(context.Background(), stage.Apply(source.Slice(ints(200)), fanOut, m.opts()...))
			if err != nil {
				t.Fatal(err)
			}
			want := fanOutWant(200)
			if !m.ordered && m.workers != 1 {
				slices.Sort(got)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

func TestApplyOutputsBeforeAnErrorGoOn(t *testing.T) {
	f := func(_ context.Context, x int, emit func(int) bool) error {
		emit(x)
		if x == 2 {
			return errBoom
		}
		emit(x)
		return nil
	}
	for _, m := range modes {
		if !m.ordered && m.workers != 1 {
			continue // the order of outputs is the point
		}
		t.Run(m.String(), func(t *testing.T) {
			var got []int
			var errAt int
			for v, err := range sink.All(context.Background(), stage.Apply(source.Slice(ints(4)), f, m.opts(stage.OnError(stage.Forward))...)) {
				if err != nil {
					var se *stage.Error
					if !errors.As(err, &se) || se.Stage != "apply#1" || se.Index != 2 {
						t.Fatalf("err = %v, want the apply stage's error for item 2", err)
					}
					errAt = len(got)
					continue
				}
				got = append(got, v)
			}
			if want := []int{0, 0, 1, 1, 2, 3, 3}; !slices.Equal(got, want) || errAt != 5 {
				t.Fatalf("got %v with the error after %d values; want %v with it after 5", got, errAt, want)
			}
		})
	}
}

func TestApplyEmitReportsCancellation(t *testing.T) {
	endless := func(_ context.Context, _ int, emit func(int) bool) error {
		for i := 0; ; i++ {
			if !emit(i) {
				return nil
			}
		}
	}
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			hangGuard(t, func() {
				n := 0
				for range sink.All(context.Background(), stage.Apply(source.Slice(ints(3)), endless, m.opts()...)) {
					if n++; n == 1000 {
						break
					}
				}
			})
		})
	}
}

func TestMergeEdges(t *testing.T) {
	ctx := context.Background()
	n, err := sink.Count(ctx, stage.Merge[int]())
	if n != 0 || err != nil {
		t.Fatalf("Count(Merge()) = %d, %v; want 0, nil", n, err)
	}
	got, err := sink.Slice(ctx, stage.Merge(source.Slice(ints(3))))
	if !slices.Equal(got, ints(3)) || err != nil {
		t.Fatalf("Merge of one = %v, %v", got, err)
	}
	// Forwarded errors pass through a merge.
	failing := stage.Map(source.Slice(ints(4)), func(_ context.Context, x int) (int, error) {
		if x == 1 {
			return 0, errBoom
		}
		return x, nil
	}, stage.OnError(stage.Forward))
	n, err = sink.Count(ctx, stage.Merge(failing, source.Slice(ints(5))))
	var se *stage.Error
	if n != 8 || !errors.As(err, &se) || se.Index != 1 {
		t.Fatalf("Count = %d, %v; want 8 and the forwarded error of item 1", n, err)
	}
}
