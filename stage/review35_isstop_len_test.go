package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r35IsErr struct{}

func (r35IsErr) Error() string        { return "says stop" }
func (r35IsErr) Is(target error) bool { return target == stage.ErrStop }

type r35PanicIs struct{}

func (r35PanicIs) Error() string { return "panics" }
func (r35PanicIs) Is(error) bool { panic("Is") }

type r35PanicUnwrap struct{}

func (r35PanicUnwrap) Error() string { return "panics" }
func (r35PanicUnwrap) Unwrap() error { panic("Unwrap") }

type r35Multi struct{ errs []error }

func (m r35Multi) Error() string   { return "multi" }
func (m r35Multi) Unwrap() []error { return m.errs }

// Doc: "IsStop reports whether err ... is ErrStop or wraps it (as errors.Is
// sees it), and the ErrStop is not inside an *Error, a *SourceError or a
// *PanicError"; "if one panics, IsStop reports false".
func TestReview35IsStop(t *testing.T) {
	inErr := &stage.Error{Stage: "x", Err: stage.ErrStop}
	inSrc := &stage.SourceError{Err: stage.ErrStop}
	inPanic := &stage.PanicError{Value: stage.ErrStop}
	other := &stage.Error{Stage: "y", Err: io.EOF}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"ErrStop", stage.ErrStop, true},
		{"wrapped", fmt.Errorf("a: %w", stage.ErrStop), true},
		{"double-wrapped", fmt.Errorf("a: %w", fmt.Errorf("b: %w", stage.ErrStop)), true},
		{"Is-method", r35IsErr{}, true},
		{"Is-method-wrapped", fmt.Errorf("w: %w", r35IsErr{}), true},
		{"text-only", errors.New(stage.ErrStop.Error()), false},
		{"in-Error", inErr, false},
		{"in-SourceError", inSrc, false},
		{"in-PanicError", inPanic, false},
		{"wrapped-in-Error", fmt.Errorf("w: %w", inErr), false},
		{"Error-of-wrapped", &stage.Error{Err: fmt.Errorf("w: %w", stage.ErrStop)}, false},
		{"PanicError-of-wrapped", &stage.PanicError{Value: fmt.Errorf("w: %w", stage.ErrStop)}, false},
		{"Error-of-Is-method", &stage.Error{Err: r35IsErr{}}, false},
		{"join-stop-and-other-Error", errors.Join(stage.ErrStop, other), true},
		{"join-other-Error-and-stop", errors.Join(other, fmt.Errorf("w: %w", stage.ErrStop)), true},
		{"join-stop-and-SourceError", errors.Join(&stage.SourceError{Err: io.EOF}, stage.ErrStop), true},
		{"join-stop-and-PanicError", errors.Join(&stage.PanicError{Value: 1}, stage.ErrStop), true},
		{"multi-only-inside", r35Multi{[]error{inErr, inSrc, inPanic}}, false},
		{"join-inside-only", errors.Join(inErr, inSrc), false},
		{"Is-panics", r35PanicIs{}, false},
		{"Unwrap-panics", r35PanicUnwrap{}, false},
		{"wrapped-Unwrap-panics", fmt.Errorf("w: %w", r35PanicUnwrap{}), false},
		{"join-stop-Unwrap-panics", errors.Join(r35PanicUnwrap{}, stage.ErrStop), false},
		{"nil-Error-ptr", fmt.Errorf("w: %w", (*stage.Error)(nil)), false},
		{"nil-SourceError-ptr", fmt.Errorf("w: %w", (*stage.SourceError)(nil)), false},
		{"nil-PanicError-ptr", fmt.Errorf("w: %w", (*stage.PanicError)(nil)), false},
	} {
		var got bool
		if v := r35Panics(func() { got = stage.IsStop(c.err) }); v != nil {
			t.Errorf("%s: IsStop panicked: %v", c.name, v)
			continue
		}
		if got != c.want {
			t.Errorf("%s: IsStop = %v, want %v", c.name, got, c.want)
		}
	}
}

// Doc (IsStop): "err is ErrStop or wraps it (as errors.Is sees it), and the
// ErrStop is not inside an *Error, a *SourceError or a *PanicError." Here an
// ErrStop stands outside any *Error (errors.Is finds it at the top of the
// join), next to an *Error that wraps another ErrStop. IsStop says false,
// although it says true when the sibling *Error wraps io.EOF instead: the
// verdict turns on a sibling's content, not on where the stop is.
func TestReview35IsStopJoinedOutside(t *testing.T) {
	inErr := &stage.Error{Stage: "x", Err: stage.ErrStop}
	other := &stage.Error{Stage: "y", Err: io.EOF}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"join(ErrStop, *Error{io.EOF}) [control]", errors.Join(stage.ErrStop, other)},
		{"join(ErrStop, *Error{ErrStop})", errors.Join(stage.ErrStop, inErr)},
		{"join(*Error{ErrStop}, ErrStop)", errors.Join(inErr, stage.ErrStop)},
		{"join(ErrStop, *SourceError{ErrStop})", errors.Join(stage.ErrStop, &stage.SourceError{Err: stage.ErrStop})},
		{"Unwrap() []error{*Error{ErrStop}, ErrStop}", r35Multi{[]error{inErr, stage.ErrStop}}},
	} {
		if !stage.IsStop(c.err) {
			t.Errorf("IsStop(%s) = false, want true: an ErrStop stands outside every *Error", c.name)
		}
	}
}

// Run's callback: a joined stop ends the run without an error.
func TestReview35IsStopInRun(t *testing.T) {
	other := &stage.Error{Stage: "y", Err: io.EOF}
	for _, c := range []struct {
		name    string
		err     error
		wantNil bool
	}{
		{"join-stop-and-other-Error", errors.Join(stage.ErrStop, other), true},
		{"in-Error", &stage.Error{Err: stage.ErrStop}, false},
	} {
		var got error
		r35Run(t, func() {
			got = stage.Run(context.Background(), source.Slice(ints(5)), func(context.Context, int, error) error { return c.err })
		})
		if (got == nil) != c.wantNil {
			t.Errorf("%s: Run = %v", c.name, got)
		}
	}
}

// Doc (Stream.Len): a Slice or Indexed source of n, through Map or
// Concurrent, carries n; "a Filter, FlatMap, Apply, Batch, Merge or Tee makes
// it unknown"; the zero Stream's Len is -1. Info.Total: Map, Concurrent,
// Until keep it.
func TestReview35Len(t *testing.T) {
	sl := source.Slice(ints(5))
	ix := stage.Indexed(7, func(i int) int { return i })
	tasks := stage.Map(sl, func(_ context.Context, x int) (func(context.Context) (int, error), error) { return nil, nil })
	cases := []struct {
		name string
		got  int
		want int
	}{
		{"zero", stage.Stream[int]{}.Len(), -1},
		{"slice", sl.Len(), 5},
		{"slice-empty", source.Slice([]int{}).Len(), 0},
		{"slice-nil", source.Slice[int](nil).Len(), 0},
		{"indexed", ix.Len(), 7},
		{"map", stage.Map(ix, double).Len(), 7},
		{"map-ordered-keyby-handle", stage.Map(sl, double, stage.Ordered(), stage.KeyBy(func(x int) int { return x }), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil }))).Len(), 5},
		{"concurrent", stage.Concurrent(tasks).Len(), 5},
		{"until", stage.Until(sl, context.Background()).Len(), 5},
		{"filter", stage.Filter(sl, func(context.Context, int) (bool, error) { return true, nil }).Len(), -1},
		{"flatmap", stage.FlatMap(sl, func(context.Context, int) ([]int, error) { return nil, nil }).Len(), -1},
		{"apply", stage.Apply(sl, func(context.Context, int, func(int) bool) error { return nil }).Len(), -1},
		{"batch", stage.Batch(sl, 2, 0).Len(), -1},
		{"merge1", stage.Merge(sl).Len(), -1},
		{"merge2", stage.Merge(source.Slice(ints(2)), source.Slice(ints(3))).Len(), -1},
		{"merge0", stage.Merge[int]().Len(), -1},
		{"tee", stage.Tee(source.Slice(ints(5)), 2)[0].Len(), -1},
		{"tee1", stage.Tee(source.Slice(ints(5)), 1)[0].Len(), -1},
		{"func", source.Func(func(context.Context) (int, error) { return 0, io.EOF }).Len(), -1},
		{"chan", source.Chan(make(chan int)).Len(), -1},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: Len = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// Info.Total is what Stream.Len says of the stage's input.
func TestReview35LenTotal(t *testing.T) {
	o := &r35Names{}
	sl := source.Slice(ints(5))
	s := stage.Map(stage.Until(stage.Map(sl, double), context.Background()), double)
	s = stage.Map(stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }), double)
	r35Run(t, func() {
		if _, err := sink.Count(stage.Observe(context.Background(), o), s); err != nil {
			t.Error(err)
		}
	})
	var got []int
	for _, i := range o.get() {
		got = append(got, i.Total)
	}
	if fmt.Sprint(got) != "[5 5 5 -1]" {
		t.Errorf("Totals %v, want [5 5 5 -1]", got)
	}
	_ = time.Second
}
