package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR85Boom = errors.New("review85: boom")

// r85Wait waits for ch; the Watchdog only detects a hang.
func r85Wait(t testing.TB, label string, ch <-chan struct{}) bool {
	t.Helper()
	select {
	case <-ch:
		return true
	case <-time.After(runcheck.Watchdog):
		t.Errorf("%s: hung", label)
		return false
	}
}

func r85Ints(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func r85ID(_ context.Context, v int) (int, error) { return v, nil }

// r85Streams are pipelines of 200 items with plenty ready for the sink.
func r85Streams() map[string]func() stage.Stream[int] {
	return map[string]func() stage.Stream[int]{
		"bare slice": func() stage.Stream[int] { return source.Slice(r85Ints(200)) },
		"slice map w4 b16": func() stage.Stream[int] {
			return stage.Map(source.Slice(r85Ints(200)), r85ID, stage.Workers(4), stage.Buffer(16))
		},
		"slice map cheap": func() stage.Stream[int] { return stage.Map(source.Slice(r85Ints(200)), r85ID, stage.Workers(4)) },
		"slice map ordered": func() stage.Stream[int] {
			return stage.Map(source.Slice(r85Ints(200)), r85ID, stage.Workers(4), stage.Ordered(), stage.Buffer(8))
		},
		"chan map": func() stage.Stream[int] {
			ch := make(chan int, 200)
			for i := range 200 {
				ch <- i
			}
			close(ch)
			return stage.Map(source.Chan(ch), r85ID, stage.Workers(3))
		},
		"func map w1 b8": func() stage.Stream[int] {
			i := 0
			return stage.Map(source.Func(func(context.Context) (int, error) {
				if i == 200 {
					return 0, io.EOF
				}
				i++
				return i - 1, nil
			}), r85ID, stage.Workers(1), stage.Buffer(8))
		},
		"batch unbatch": func() stage.Stream[int] {
			return stage.Unbatch(stage.Batch(source.Slice(r85Ints(200)), 16, 0))
		},
	}
}

// Cancellation: "Once the run is cancelled, ... the sink delivers nothing
// more, but for a step already on its way: when another goroutine cancels the
// run, one of the run's that looked at the run just before may take its step
// just after"; "from the moment its Done channel is closed the run takes no
// new step, as with a standard context".
//
// The sink's callback itself cancels the caller's ctx (a standard one, and
// one of the caller's own type) while the pipeline has many items ready:
// no goroutine but the sink's own cancelled, so no further item reaches the
// callback (nor the loop body of All), and the sink returns the cancellation.
func TestReview85CancelInTheCallbackDeliversNothingMore(t *testing.T) {
	for name, mk := range r85Streams() {
		for _, ctxKind := range []string{ctxtest.Std, ctxtest.Own} {
			for _, kind := range []string{"foreach", "all", "reduce", "chan"} {
				t.Run(fmt.Sprintf("%s/%s/%s", name, ctxKind, kind), func(t *testing.T) {
					ctx, cancel := ctxtest.New(ctxKind)
					defer cancel()
					s := mk()
					calls := 0
					var err error
					var pairsAfter []string
					runcheck.Run(t, kind, func() {
						switch kind {
						case "foreach":
							err = sink.ForEach(ctx, s, func(context.Context, int) error {
								calls++
								if calls == 3 {
									cancel()
								}
								return nil
							})
						case "reduce":
							_, err = sink.Reduce(ctx, s, 0, func(acc, v int) int {
								calls++
								if calls == 3 {
									cancel()
								}
								return acc + v
							})
						case "all":
							for v, e := range sink.All(ctx, s) {
								if calls >= 3 {
									pairsAfter = append(pairsAfter, fmt.Sprint(v, e))
									err = e
									continue
								}
								if e != nil {
									t.Errorf("err %v before the cancellation", e)
								}
								calls++
								if calls == 3 {
									cancel()
								}
							}
						case "chan":
							out := make(chan int) // unbuffered: the reader below decides
							done := make(chan struct{})
							go func() {
								defer close(done)
								err = sink.Chan(ctx, s, out)
							}()
							for calls < 3 {
								<-out
								calls++
							}
							cancel()
							select {
							case v := <-out:
								// The sink was blocked on out already with the
								// next value: that is a step on its way only if
								// it had looked before the cancellation; Chan
								// promises only that it stops waiting.
								_ = v
								<-done
							case <-done:
							}
						}
					})
					if kind == "all" {
						if len(pairsAfter) != 1 || !errors.Is(err, context.Canceled) {
							t.Fatalf("after the body cancelled, the loop got %q, want one (0, cancellation) pair", pairsAfter)
						}
						return
					}
					if calls != 3 {
						t.Errorf("callback called %d times, want 3 (cancelled in the third)", calls)
					}
					if !errors.Is(err, context.Canceled) {
						t.Errorf("err %v, want the cancellation", err)
					}
				})
			}
		}
	}
}

// ForEach: "An error returned by f (or a panic in f) ends the run as a
// FailFast error does: the run's context is cancelled with a *stage.Error
// (Stage "foreach") as its cause, and ForEach returns that error"; Error.Index:
// "for a sink callback, in the stream the sink runs). Forwarded errors count
// as items"; "Input is the item the function was called with"; "The user's
// error is Err, unchanged". Package doc: forwarded errors are returned in a
// *ForwardedError "joined with the error that ended the run".
func TestReview85ForEachErrorNamesTheItem(t *testing.T) {
	s := stage.Map(source.Slice(r85Ints(8)), func(_ context.Context, v int) (int, error) {
		if v%2 == 0 {
			return 0, fmt.Errorf("even %d", v)
		}
		return v * 10, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var fctx context.Context
	var seen []int
	var err error
	runcheck.Run(t, "foreach", func() {
		err = sink.ForEach(context.Background(), s, func(ctx context.Context, v int) error {
			seen = append(seen, v)
			if v == 30 {
				fctx = ctx
				return errR85Boom
			}
			return nil
		})
	})
	if fmt.Sprint(seen) != "[10 30]" {
		t.Fatalf("f saw %v", seen)
	}
	cause, ok := context.Cause(fctx).(*stage.Error)
	if !ok || cause.Stage != "foreach" || cause.Index != 3 || cause.Input != any(30) || cause.Err != errR85Boom {
		t.Fatalf("run's cause = %#v", context.Cause(fctx))
	}
	found := false
	r85Walk(err, func(e error) {
		if e == error(cause) {
			found = true
		}
	})
	if !found {
		t.Fatalf("ForEach = %v: does not hold the run's cause", err)
	}
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 2 {
		t.Fatalf("ForEach = %v: want the 2 forwarded errors before the failure", err)
	}
}

// r85Walk calls f for every error in err's tree.
func r85Walk(err error, f func(error)) {
	if err == nil {
		return
	}
	f(err)
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			r85Walk(e, f)
		}
	case interface{ Unwrap() error }:
		r85Walk(u.Unwrap(), f)
	}
}

// ForEach: "f may return stage.ErrStop (or an error wrapping it: see
// stage.IsStop) to end the run early without an error: ForEach then returns
// nil (or the *ForwardedError of what was forwarded before)"; IsStop: "of an
// err that joins several errors, one ErrStop outside them is enough"; "a
// panic, whatever its value, is a failure (panic(ErrStop) does not stop a
// run)".
func TestReview85ForEachStopKeepsWhatWasForwardedBefore(t *testing.T) {
	errs := make([]error, 8)
	for i := range errs {
		errs[i] = fmt.Errorf("item %d", i)
	}
	mk := func() stage.Stream[int] {
		return stage.Map(source.Slice(r85Ints(8)), func(_ context.Context, v int) (int, error) {
			if v != 2 && v != 5 {
				return 0, errs[v]
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(stage.Forward), stage.Buffer(6))
	}
	stops := map[string]error{
		"ErrStop": stage.ErrStop,
		"wrapped": fmt.Errorf("done: %w", stage.ErrStop),
		"joined":  errors.Join(errR85Boom, stage.ErrStop),
	}
	for name, stop := range stops {
		t.Run(name, func(t *testing.T) {
			var err error
			calls := 0
			runcheck.Run(t, "foreach", func() {
				err = sink.ForEach(context.Background(), mk(), func(_ context.Context, v int) error {
					calls++
					return stop
				})
			})
			var fe *sink.ForwardedError
			if calls != 1 || !errors.As(err, &fe) || fe.Count != 2 || len(fe.Sample) != 2 ||
				!errors.Is(fe.Sample[0], errs[0]) || !errors.Is(fe.Sample[1], errs[1]) || errors.Is(err, errs[3]) {
				t.Fatalf("calls %d, ForEach = %v: want the ForwardedError of items 0 and 1 only", calls, err)
			}
			if errors.Is(err, stage.ErrStop) || errors.Is(err, errR85Boom) {
				t.Fatalf("ForEach = %v: the stop came back as an error", err)
			}
		})
	}
	t.Run("panic(ErrStop)", func(t *testing.T) {
		runcheck.InChildTest(t, func(t *testing.T) {
			var err error
			runcheck.Run(t, "foreach", func() {
				err = sink.ForEach(context.Background(), source.Slice(r85Ints(3)), func(context.Context, int) error {
					panic(stage.ErrStop)
				})
			})
			var se *stage.Error
			var pe *stage.PanicError
			if !errors.As(err, &se) || se.Stage != "foreach" || !errors.As(err, &pe) || pe.Value != stage.ErrStop {
				t.Fatalf("ForEach = %v, want a foreach *Error wrapping the panic", err)
			}
		})
	})
}

// Reduce: "A panic in f ends the run with a *stage.Error (Stage "reduce")
// wrapping a *stage.PanicError. Reduce returns the accumulator as it stands
// when the run ends"; a source's failure lets every item before it through.
func TestReview85ReduceAccumulatorAsItStands(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var acc int
		var err error
		runcheck.Run(t, "reduce", func() {
			acc, err = sink.Reduce(context.Background(), source.Slice([]int{1, 2, 3, 4}), 100, func(a, v int) int {
				if v == 3 {
					panic("three")
				}
				return a + v
			})
		})
		var se *stage.Error
		var pe *stage.PanicError
		if acc != 103 || !errors.As(err, &se) || se.Stage != "reduce" || se.Index != 2 || se.Input != any(3) ||
			!errors.As(err, &pe) || pe.Value != "three" {
			t.Fatalf("Reduce = %d, %v (%#v)", acc, err, se)
		}
	})
	seq2 := func(yield func(int, error) bool) {
		for i := 1; i <= 3; i++ {
			if !yield(i, nil) {
				return
			}
		}
		yield(0, errR85Boom)
	}
	var acc int
	var err error
	runcheck.Run(t, "reduce", func() {
		acc, err = sink.Reduce(context.Background(),
			stage.Map(source.Seq2(seq2), r85ID, stage.Workers(3)), 0, func(a, v int) int { return a + v })
	})
	var src *stage.SourceError
	if acc != 6 || !errors.As(err, &src) || !errors.Is(err, errR85Boom) {
		t.Fatalf("Reduce = %d, %v", acc, err)
	}
}

// Slice: "When s knows its length (stage.Stream.Len), the slice is made with
// room for that many values before the run (at most 4096 values and 64 KiB).
// Without any value it returns a nil slice."
//
// An Indexed source of known length whose at panics at a position: the items
// before go through, then the SourceError; the slice returned holds fewer
// values than its room, so its capacity is the room made before the run.
func TestReview85SliceRoomIsBounded(t *testing.T) {
	t.Run("int64", func(t *testing.T) { r85SliceRoom[int64](t, 10000, 100, 4096) })
	t.Run("64 bytes", func(t *testing.T) { r85SliceRoom[[64]byte](t, 10000, 100, 1024) })
	t.Run("struct{}", func(t *testing.T) { r85SliceRoom[struct{}](t, 10000, 100, 4096) })
	t.Run("40 KiB", func(t *testing.T) { r85SliceRoom[[40 << 10]byte](t, 3, 2, 2) })
	t.Run("100 KiB", func(t *testing.T) { r85SliceRoom[[100 << 10]byte](t, 5, 1, 1) })
	t.Run("no value", func(t *testing.T) { r85SliceRoom[int](t, 50, 0, 0) })
}

func r85SliceRoom[T any](t *testing.T, n, failAt, maxCap int) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var zero T
		s := stage.Indexed(n, func(i int) T {
			if i == failAt {
				panic("at")
			}
			return zero
		})
		if s.Len() != n {
			t.Fatalf("Len = %d", s.Len())
		}
		var got []T
		var err error
		runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
		var se *stage.SourceError
		if !errors.As(err, &se) {
			t.Fatalf("err %v, want a SourceError", err)
		}
		if len(got) != failAt {
			t.Fatalf("%d values, want the %d before the failure", len(got), failAt)
		}
		if failAt == 0 && got != nil {
			t.Fatalf("no value, but a non-nil slice of cap %d", cap(got))
		}
		if cap(got) > maxCap {
			t.Fatalf("cap %d for %d values of %d bytes each: room made beyond the bound (%d)", cap(got), len(got), unsafe.Sizeof(zero), maxCap)
		}
	})
}

// Slice: "Without any value it returns a nil slice", when every item was
// forwarded and when the run fails first, over a stream of known length.
func TestReview85SliceNilWithoutValues(t *testing.T) {
	s := stage.Map(source.Slice(r85Ints(5)), func(context.Context, int) (int, error) { return 0, errR85Boom },
		stage.OnError(stage.Forward), stage.Workers(2))
	var got []int
	var err error
	runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
	var fe *sink.ForwardedError
	if got != nil || !errors.As(err, &fe) || fe.Count != 5 {
		t.Fatalf("Slice = %#v, %v", got, err)
	}
	s2 := stage.Map(source.Slice(r85Ints(5)), func(context.Context, int) (int, error) { return 0, errR85Boom }, stage.Workers(2))
	runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s2) })
	if got != nil || !errors.Is(err, errR85Boom) {
		t.Fatalf("Slice = %#v, %v", got, err)
	}
}

// Chan: "If the run fails while Chan waits on out, Chan stops waiting and
// returns the error that ended the run"; package doc: "or, once everything
// a failed source produced was delivered, the *stage.SourceError"; a
// source's failure "lets every item before it through".
//
// A source fails while Chan waits on an out nobody reads yet: Chan must go on
// to deliver every item the source produced before, then return the
// SourceError. And a stage's FailFast error while Chan waits on out: Chan
// returns it without anyone reading out.
func TestReview85ChanSinkThroughASourceFailure(t *testing.T) {
	reached := make(chan struct{})
	seq2 := func(yield func(int, error) bool) {
		for i := 1; i <= 3; i++ {
			if !yield(i, nil) {
				return
			}
		}
		close(reached)
		yield(0, errR85Boom)
	}
	s := stage.Map(source.Seq2(seq2), r85ID, stage.Workers(1), stage.Buffer(8))
	out := make(chan int)
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = sink.Chan(context.Background(), s, out)
	}()
	r85Wait(t, "the source's error", reached)
	var got []int
	for len(got) < 3 {
		select {
		case v := <-out:
			got = append(got, v)
		case <-done:
			t.Fatalf("Chan returned %v after delivering %v of the 3 items before the source's failure", err, got)
		case <-time.After(runcheck.Watchdog):
			t.Fatalf("hung")
		}
	}
	r85Wait(t, "chan", done)
	var se *stage.SourceError
	if fmt.Sprint(got) != "[1 2 3]" || !errors.As(err, &se) || !errors.Is(err, errR85Boom) {
		t.Fatalf("Chan delivered %v, returned %v", got, err)
	}

	// FailFast while Chan waits: nobody ever reads out.
	gate := make(chan struct{})
	s2 := stage.Map(source.Slice(r85Ints(2)), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			r85Wait(t, "gate", gate)
			return 0, errR85Boom
		}
		close(gate)
		return v, nil
	}, stage.Workers(2), stage.Buffer(1))
	out2 := make(chan int)
	runcheck.Run(t, "chan", func() { err = sink.Chan(context.Background(), s2, out2) })
	var ie *stage.Error
	if !errors.As(err, &ie) || !errors.Is(err, errR85Boom) || len(out2) != 0 {
		t.Fatalf("Chan = %v", err)
	}
}

// First: "(zero, false, err) when the first item is a forwarded error";
// package doc: "First returns it when it is the first item"; and "always the
// first pair of `for v, err := range All(ctx, s) { ...; break }`".
func TestReview85FirstForwardedErrorIsReturnedAsItIs(t *testing.T) {
	mk := func() stage.Stream[int] {
		return stage.Map(source.Slice(r85Ints(3)), func(_ context.Context, v int) (int, error) {
			if v == 0 {
				return 0, errR85Boom
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(stage.Forward), stage.Name("m"))
	}
	var v int
	var ok bool
	var err error
	runcheck.Run(t, "first", func() { v, ok, err = sink.First(context.Background(), mk()) })
	se, isErr := err.(*stage.Error)
	if v != 0 || ok || !isErr || se.Stage != "m" || se.Index != 0 || se.Err != errR85Boom {
		t.Fatalf("First = %v %v %#v, want (0, false, the forwarded *stage.Error)", v, ok, err)
	}
	var fe *sink.ForwardedError
	if errors.As(err, &fe) {
		t.Fatalf("First wrapped the forwarded error in a ForwardedError")
	}
	var av int
	var aerr error
	runcheck.Run(t, "all", func() {
		for v, e := range sink.All(context.Background(), mk()) {
			av, aerr = v, e
			break
		}
	})
	if ae, ok := aerr.(*stage.Error); av != 0 || !ok || ae.Index != 0 || ae.Err != errR85Boom {
		t.Fatalf("All's first pair = %v %v", av, aerr)
	}
}

// ForwardedError: "Sample []error // the first min(Count, SampleSize) of
// them, in arrival order"; "Error reports the count and the first error";
// "errors.Is and errors.As see through it to each kept error". Count: "how
// many values reached the end (forwarded errors are not counted...)".
func TestReview85ForwardedSampleAndCount(t *testing.T) {
	errs := make([]error, 20)
	for i := range errs {
		errs[i] = fmt.Errorf("failure #%d", i)
	}
	s := stage.Map(source.Slice(r85Ints(25)), func(_ context.Context, v int) (int, error) {
		if v < 20 {
			return 0, errs[v]
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var n int
	var err error
	runcheck.Run(t, "count", func() { n, err = sink.Count(context.Background(), s) })
	var fe *sink.ForwardedError
	if n != 5 || !errors.As(err, &fe) || fe.Count != 20 || len(fe.Sample) != sink.SampleSize {
		t.Fatalf("Count = %d, %v", n, err)
	}
	for i, e := range fe.Sample {
		if !errors.Is(e, errs[i]) {
			t.Errorf("Sample[%d] = %v, want failure #%d", i, e, i)
		}
		if !errors.Is(err, errs[i]) {
			t.Errorf("errors.Is does not see failure #%d", i)
		}
	}
	if errors.Is(err, errs[sink.SampleSize]) {
		t.Errorf("errors.Is sees an error beyond the sample")
	}
	if msg := fe.Error(); !strings.Contains(msg, "20") || !strings.Contains(msg, errs[0].Error()) {
		t.Errorf("Error() = %q", msg)
	}
	if msg := (&sink.ForwardedError{Count: 3}).Error(); !strings.Contains(msg, "3") {
		t.Errorf("hand-made Error() = %q", msg)
	}

	// Chan: "Forwarded errors are not sent; they are returned in a *ForwardedError."
	out := make(chan int, 25)
	runcheck.Run(t, "chan", func() { err = sink.Chan(context.Background(), s, out) })
	if len(out) != 5 || !errors.As(err, &fe) || fe.Count != 20 {
		t.Fatalf("Chan sent %d, returned %v", len(out), err)
	}
}

// All: "Each range over the iterator runs s anew"; stage: "Several sinks may
// run one Stream at the same time". Two ranges over one iterator at once,
// each broken out of at a different point, and one to the end.
func TestReview85AllRangesRunAnewAtTheSameTime(t *testing.T) {
	var calls atomic.Int32
	s := stage.Map(source.Slice(r85Ints(100)), func(_ context.Context, v int) (int, error) {
		calls.Add(1)
		return v, nil
	}, stage.Workers(3), stage.Ordered())
	seq := sink.All(context.Background(), s)
	got := r85Out{}
	runcheck.Run(t, "all", func() {
		var wg sync.WaitGroup
		for g := range 3 {
			wg.Go(func() {
				var vs []int
				for v, err := range seq {
					if err != nil {
						t.Errorf("err %v", err)
					}
					vs = append(vs, v)
					if g == 1 && v == 10 {
						break
					}
				}
				got.set(g, vs)
			})
		}
		wg.Wait()
	})
	if len(got.m[0]) != 100 || len(got.m[2]) != 100 || len(got.m[1]) != 11 {
		t.Fatalf("ranges got %d, %d, %d items", len(got.m[0]), len(got.m[1]), len(got.m[2]))
	}
	for _, g := range []int{0, 1, 2} {
		for i, v := range got.m[g] {
			if v != i {
				t.Fatalf("range %d: item %d is %d", g, i, v)
			}
		}
	}
}

type r85Out struct {
	mu sync.Mutex
	m  map[int][]int
}

func (o *r85Out) set(g int, vs []int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[int][]int{}
	}
	o.m[g] = vs
}

// All: "If the run fails, the last pair is (zero, err) with the error that
// ended it." A FailFast failure and a source failure: exactly one error pair,
// the last one.
func TestReview85AllFailureIsTheLastPair(t *testing.T) {
	mks := map[string]func() stage.Stream[int]{
		"failfast": func() stage.Stream[int] {
			return stage.Map(source.Slice(r85Ints(50)), func(_ context.Context, v int) (int, error) {
				if v == 20 {
					return 0, errR85Boom
				}
				return v + 1, nil
			}, stage.Workers(3))
		},
		"source": func() stage.Stream[int] {
			return stage.Map(source.Seq2(func(yield func(int, error) bool) {
				for i := 1; i <= 20; i++ {
					if !yield(i, nil) {
						return
					}
				}
				yield(0, errR85Boom)
			}), r85ID, stage.Workers(3))
		},
	}
	for name, mk := range mks {
		t.Run(name, func(t *testing.T) {
			var pairs []error
			var vals []int
			runcheck.Run(t, "all", func() {
				for v, err := range sink.All(context.Background(), mk()) {
					pairs = append(pairs, err)
					vals = append(vals, v)
				}
			})
			last := len(pairs) - 1
			if last < 0 || !errors.Is(pairs[last], errR85Boom) || vals[last] != 0 {
				t.Fatalf("last pair %v", pairs)
			}
			for _, e := range pairs[:last] {
				if e != nil {
					t.Fatalf("an error pair before the last: %v", pairs)
				}
			}
			if name == "source" && last != 20 {
				t.Fatalf("%d values before the source's error, want 20", last)
			}
		})
	}
}
