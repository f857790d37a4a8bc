package sink_test

// Review 13: the sinks' promises, from the package documentation.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func r13Ints(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func r13ID(_ context.Context, v int) (int, error) { return v, nil }

// Doc (First): "always the first pair of `for v, err := range All(ctx, s) {
// ...; break }`, so what happens in the run after the first item (a worker
// that read ahead into a failing source, say) never changes it." Item 0's
// call waits until the source has failed at its second call.
func TestReview13FirstIgnoresReadAheadIntoFailingSource(t *testing.T) {
	for _, opts := range [][]stage.Option{{stage.Workers(4)}, {stage.Workers(4), stage.Ordered()}, {stage.Workers(-1)}, {stage.Workers(2), stage.Buffer(2)}} {
		for _, useAll := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/all=%v", len(opts), useAll), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // watchdog only
				defer cancel()
				failed := make(chan struct{})
				calls := 0
				src := source.Func(func(context.Context) (int, error) {
					calls++
					if calls == 1 {
						return 7, nil
					}
					close(failed)
					return 0, errors.New("source broke after the first item")
				})
				s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
					select {
					case <-failed:
					case <-ctx.Done():
					}
					return v, nil
				}, opts...)
				var v int
				var ok bool
				var err error
				runcheck.Run(t, "first", func() {
					if useAll {
						for v, err = range sink.All(ctx, s) {
							ok = err == nil
							break
						}
						return
					}
					v, ok, err = sink.First(ctx, s)
				})
				if v != 7 || !ok || err != nil {
					t.Fatalf("First = %v %v %v, want 7 true nil", v, ok, err)
				}
			})
		}
	}
}

// Doc (README, Results): "A callback that returns stage.ErrStop ends the run
// with nil, whatever happened meanwhile (a failure elsewhere, a cancellation
// of ctx while it ran)".
func TestReview13ErrStopWinsOverWhatHappenedMeanwhile(t *testing.T) {
	for _, what := range []string{"cancel", "failfast", "source-error"} {
		for _, opts := range [][]stage.Option{{stage.Workers(2)}, {stage.Workers(2), stage.Ordered()}, {stage.Workers(-1)}, {stage.Workers(2), stage.Buffer(3)}} {
			t.Run(fmt.Sprintf("%s/%d", what, len(opts)), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				inCallback := make(chan struct{})
				n := 0
				src := source.Func(func(ctx context.Context) (int, error) {
					n++
					switch {
					case n <= 2:
						return n - 1, nil
					case what == "source-error":
						<-inCallback
						return 0, errors.New("source broke")
					default:
						<-ctx.Done()
						return 0, ctx.Err()
					}
				})
				s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
					if v == 1 {
						<-inCallback
						if what == "failfast" {
							return 0, errors.New("item 1 failed meanwhile")
						}
						<-ctx.Done()
						return 0, ctx.Err()
					}
					return v, nil
				}, opts...)
				var err error
				runcheck.Run(t, "errstop", func() {
					err = sink.ForEach(ctx, s, func(rctx context.Context, v int) error {
						close(inCallback)
						if what == "cancel" {
							cancel()
						}
						if what != "source-error" {
							<-rctx.Done() // the run has been cut short by now
						}
						return stage.ErrStop
					})
				})
				if err != nil {
					t.Fatalf("err = %v, want nil: the callback returned ErrStop", err)
				}
			})
		}
	}
}

// Doc (Chan): "If the run fails while Chan waits on out, Chan stops waiting
// and returns the error that ended the run." Also a cancellation of ctx.
func TestReview13ChanStopsWaitingOnFailure(t *testing.T) {
	for _, how := range []string{"failfast", "cancel"} {
		t.Run(how, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				sent := make(chan struct{})
				out := make(chan int) // nobody receives
				boom := errors.New("item 1 failed")
				s := stage.Map(source.Slice(r13Ints(2)), func(ctx context.Context, v int) (int, error) {
					if v == 1 {
						<-sent
						if how == "cancel" {
							cancel()
							<-ctx.Done()
							return 0, ctx.Err()
						}
						return 0, boom
					}
					close(sent)
					return v, nil
				}, stage.Workers(2), stage.Buffer(1))
				err := sink.Chan(ctx, s, out)
				want := boom
				if how == "cancel" {
					want = context.Canceled
				}
				if !errors.Is(err, want) {
					t.Fatalf("err = %v, want %v", err, want)
				}
			})
		})
	}
}

// Doc (All): "Breaking out of the loop stops the run ... Whatever the run
// would have reported after the break (an error of an item the loop never
// saw) is dropped"; "Each range over the iterator runs s anew"; "A panic in
// the loop body stops the run the same way and then continues."
func TestReview13AllBreakRangeTwicePanic(t *testing.T) {
	s := stage.Map(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0 // per run
		return func(context.Context) (int, error) {
			i++
			if i > 1 {
				return 0, errors.New("fails after the first item")
			}
			return i, nil
		}, nil
	}), r13ID, stage.Workers(3))
	all := sink.All(context.Background(), s)
	for round := range 2 {
		var got []int
		runcheck.Run(t, "all", func() {
			for v, err := range all {
				if err != nil {
					t.Errorf("round %d: yielded %v after the first item", round, err)
				}
				got = append(got, v)
				break
			}
		})
		if len(got) != 1 {
			t.Fatalf("round %d: %v", round, got)
		}
	}
	for _, val := range []any{"body", stage.ErrStop} {
		var rec any
		runcheck.Run(t, "panic", func() {
			defer func() { rec = recover() }()
			for range sink.All(context.Background(), stage.Map(source.Slice(r13Ints(50)), r13ID, stage.Workers(4))) {
				panic(val)
			}
		})
		if rec != val {
			t.Fatalf("recovered %v, want the body's panic %v", rec, val)
		}
	}
}

// Doc (stage.Run): "A panic in f is not recovered: Run cancels the run, waits
// for it, and lets the panic continue".
func TestReview13RunCallbackPanicContinues(t *testing.T) {
	for _, val := range []any{"callback", stage.ErrStop, io.EOF} {
		var rec any
		var finished atomic.Bool
		runcheck.Run(t, "run", func() {
			defer func() { rec = recover() }()
			_ = stage.Run(context.Background(), stage.Map(source.Slice(r13Ints(50)), func(ctx context.Context, v int) (int, error) {
				if v > 3 {
					<-ctx.Done()
				}
				return v, nil
			}, stage.Workers(8)), func(context.Context, int, error) error {
				panic(val)
			})
			finished.Store(true)
		})
		if rec != val || finished.Load() {
			t.Fatalf("recovered %v (returned normally: %v), want the panic %v to continue", rec, finished.Load(), val)
		}
	}
}

// Doc (Reduce): "A panic in f ends the run with a *stage.Error (Stage
// "reduce") wrapping a *stage.PanicError. Reduce returns the accumulator as
// it stands when the run ends".
func TestReview13ReducePanicKeepsAccumulator(t *testing.T) {
	var acc int
	var err error
	runcheck.Run(t, "reduce", func() {
		acc, err = sink.Reduce(context.Background(), stage.Map(source.Slice(r13Ints(10)), r13ID, stage.Workers(1)), 100,
			func(a, v int) int {
				if v == 5 {
					panic("fold")
				}
				return a + v
			})
	})
	var se *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &se) || se.Stage != "reduce" || !errors.As(err, &pe) || acc != 110 {
		t.Fatalf("acc %d, err %v; want 110 and a *stage.Error(reduce) > *PanicError", acc, err)
	}
}

// Doc (Slice): "When s knows its length ..., the slice is made with room for
// that many values before the run ... Without any value it returns a nil
// slice."
func TestReview13SliceNilWithoutValues(t *testing.T) {
	fail := func(context.Context, int) (int, error) { return 0, errors.New("no") }
	cases := map[string]struct {
		s   stage.Stream[int]
		ctx func() context.Context
	}{
		"handled":  {stage.Map(source.Slice(r13Ints(5)), fail, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil }))), context.Background},
		"forward":  {stage.Map(source.Slice(r13Ints(5)), fail, stage.OnError(stage.Forward)), context.Background},
		"failfast": {stage.Map(source.Slice(r13Ints(5)), fail), context.Background},
		"cancelled": {stage.Map(source.Slice(r13Ints(5)), r13ID), func() context.Context {
			c, cancel := context.WithCancel(context.Background())
			cancel()
			return c
		}},
		"empty": {source.Slice([]int{}), context.Background},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var got []int
			runcheck.Run(t, "slice", func() { got, _ = sink.Slice(c.ctx(), c.s) })
			if got != nil {
				t.Fatalf("got %#v (len %d cap %d), want a nil slice", got, len(got), cap(got))
			}
		})
	}
}

// Doc (ForwardedError): "how many arrived, and the first SampleSize of them"
// "in arrival order"; Count: "forwarded errors are not counted but returned".
func TestReview13ForwardedSample(t *testing.T) {
	const n = 100
	var count int
	var err error
	runcheck.Run(t, "count", func() {
		count, err = sink.Count(context.Background(), stage.Map(source.Slice(r13Ints(n)), func(_ context.Context, v int) (int, error) {
			if v%3 == 1 {
				return 0, fmt.Errorf("bad %d", v)
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(stage.Forward)))
	})
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 33 || count != n-33 || len(fe.Sample) != sink.SampleSize {
		t.Fatalf("count %d err %v", count, err)
	}
	for i, e := range fe.Sample {
		var se *stage.Error
		if !errors.As(e, &se) || se.Index != 3*i+1 {
			t.Fatalf("sample %d: %v, want item %d", i, e, 3*i+1)
		}
	}
}
