package source_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type review71Key struct{}

// "next returns io.EOF to end the stream (the value returned with it is not
// delivered; io.EOF itself ...: an error that wraps it is a failure ...);
// any other error ends the run with a *stage.SourceError after the items
// produced before it went through. A panic in next becomes a
// *stage.PanicError in a *stage.SourceError."
func TestReview71FuncEndings(t *testing.T) {
	wrapped := fmt.Errorf("cut: %w", io.EOF)
	type tc struct {
		name   string
		last   func() (int, error) // what next does after 0, 1, 2
		err    error               // nil: success
		panics bool
	}
	cases := []tc{
		{"eof-with-value", func() (int, error) { return 99, io.EOF }, nil, false},
		{"wrapped-eof", func() (int, error) { return 99, wrapped }, wrapped, false},
		{"error-with-value", func() (int, error) { return 99, errReview71Boom }, errReview71Boom, false},
		{"panic", func() (int, error) { panic("next panic") }, nil, true},
		{"panic-error", func() (int, error) { panic(errReview71Boom) }, errReview71Boom, true},
	}
	for _, c := range cases {
		for _, workers := range []int{0, 1, 5} { // 0: the sink reads the source directly
			t.Run(fmt.Sprintf("%s/w%d", c.name, workers), func(t *testing.T) {
				var i atomic.Int64
				s := source.Func(func(context.Context) (int, error) {
					v := int(i.Add(1)) - 1
					if v < 3 {
						return v, nil
					}
					return c.last()
				})
				if workers > 0 {
					s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers), stage.Ordered())
				}
				var got []int
				var err error
				runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
				if fmt.Sprint(got) != "[0 1 2]" {
					t.Fatalf("got %v (err %v), want [0 1 2]", got, err)
				}
				if c.err == nil && !c.panics {
					if err != nil {
						t.Fatalf("err = %v, want nil", err)
					}
					return
				}
				var se *stage.SourceError
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want a *stage.SourceError", err)
				}
				if c.err != nil && !errors.Is(err, c.err) {
					t.Fatalf("err = %v, want it to wrap %v", err, c.err)
				}
				var pe *stage.PanicError
				if c.panics != errors.As(err, &pe) {
					t.Fatalf("err = %v: *stage.PanicError inside is %v, want %v", err, !c.panics, c.panics)
				}
			})
		}
	}
}

// "The run calls next only when a stage is ready for an item, never
// concurrently, and with the run's context."
//
// Under Workers(-1), huge Workers and several stages, next never overlaps
// itself, and its ctx carries the caller's value.
func TestReview71FuncNeverConcurrent(t *testing.T) {
	for _, workers := range []int{-1, 100000, 16} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			var inflight atomic.Int32
			var bad atomic.Int64
			var i atomic.Int64
			next := func(ctx context.Context) (int, error) {
				if inflight.Add(1) != 1 {
					bad.Add(1)
				}
				defer inflight.Add(-1)
				if ctx.Value(review71Key{}) != "caller" {
					bad.Add(1)
				}
				runtime.Gosched()
				v := int(i.Add(1))
				if v > 3000 {
					return 0, io.EOF
				}
				return v, nil
			}
			s := stage.Filter(stage.Map(source.Func(next), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers)),
				func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(workers))
			ctx := context.WithValue(context.Background(), review71Key{}, "caller")
			var n int
			var err error
			runcheck.Run(t, "count", func() { n, err = sink.Count(ctx, s) })
			if err != nil || n != 3000 || bad.Load() != 0 {
				t.Fatalf("Count = %d, %v; %d overlapping calls or calls without the caller's value", n, err, bad.Load())
			}
		})
	}
}

// stage.ErrGoexit: "the run fails with ErrGoexit" for a goroutine of the run
// ended by runtime.Goexit in user code; source.Func's next, under a stage of
// several workers, runs on the stage's goroutines (stage.Source).
func TestReview71FuncNextGoexit(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var i atomic.Int64
		s := stage.Map(source.Func(func(context.Context) (int, error) {
			if i.Add(1) == 3 {
				runtime.Goexit()
			}
			return 1, nil
		}), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3), stage.Buffer(1))
		var err error
		runcheck.Run(t, "count", func() { _, err = sink.Count(context.Background(), s) })
		if !errors.Is(err, stage.ErrGoexit) {
			t.Fatalf("Count err = %v, want stage.ErrGoexit", err)
		}
	})
}

// "A nil next panics." (Func), "A nil ch panics." (Chan), "A nil seq
// panics." (Seq, Seq2).
func TestReview71NilSourcesPanic(t *testing.T) {
	for name, f := range map[string]func(){
		"func": func() { source.Func[int](nil) },
		"chan": func() { source.Chan[int](nil) },
		"seq":  func() { source.Seq[int](nil) },
		"seq2": func() { source.Seq2[int](nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: a nil argument did not panic", name)
				}
			}()
			f()
		}()
	}
}
