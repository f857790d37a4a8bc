package source_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

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

// "Every source is lazy: nothing is read until a sink runs the stream";
// "Building a Stream runs nothing and calls no user code".
func TestReview85SourcesAreLazy(t *testing.T) {
	var calls atomic.Int32
	r := &r85Reader{chunks: []r85Chunk{{data: []byte("a\n")}}}
	ch := make(chan int, 1)
	ch <- 1
	seq := func(yield func(int) bool) { calls.Add(1) }
	seq2 := func(yield func(int, error) bool) { calls.Add(1) }
	next := func(context.Context) (int, error) { calls.Add(1); return 0, io.EOF }
	id := func(_ context.Context, v int) (int, error) { calls.Add(1); return v, nil }
	_ = stage.Map(source.Seq(seq), id, stage.Workers(3))
	_ = stage.Map(source.Seq2(seq2), id)
	_ = stage.Map(source.Func(next), id, stage.Ordered())
	_ = stage.Map(source.Chan(ch), id)
	_ = stage.Map(source.Lines(r), func(_ context.Context, v string) (string, error) { calls.Add(1); return v, nil })
	_ = stage.NeverWaits(source.Func(next))
	if calls.Load() != 0 || len(ch) != 1 || r.reads != 0 {
		t.Fatalf("building ran user code: %d calls, %d left in ch, %d reads", calls.Load(), len(ch), r.reads)
	}
}

// Func: "the item returned with an error is not delivered" (Source), "the
// value returned with it is not delivered" (io.EOF); Seq2: "(anything, err)
// for a failure".
func TestReview85ValueWithAnErrorIsNotDelivered(t *testing.T) {
	for _, final := range []error{io.EOF, errR85Boom} {
		i := 0
		next := func(context.Context) (int, error) {
			i++
			if i == 3 {
				return 99, final
			}
			return i, nil
		}
		var got []int
		var err error
		runcheck.Run(t, "func", func() { got, err = sink.Slice(context.Background(), source.Func(next)) })
		if fmt.Sprint(got) != "[1 2]" {
			t.Errorf("Func ending with (99, %v): %v", final, got)
		}
		var se *stage.SourceError
		if final == io.EOF && err != nil || final != io.EOF && (!errors.As(err, &se) || !errors.Is(err, errR85Boom)) {
			t.Errorf("Func ending with (99, %v): err %v", final, err)
		}
	}
	seq2 := func(yield func(int, error) bool) {
		if yield(1, nil) && yield(99, errR85Boom) {
			yield(3, nil)
		}
	}
	var got []int
	var err error
	runcheck.Run(t, "seq2", func() { got, err = sink.Slice(context.Background(), source.Seq2(seq2)) })
	var se *stage.SourceError
	if fmt.Sprint(got) != "[1]" || !errors.As(err, &se) || !errors.Is(err, errR85Boom) {
		t.Errorf("Seq2: %v, %v", got, err)
	}
}

// Cancellation: "from the moment its Done channel is closed the run takes no
// new step, as with a standard context, and a failure that comes after (...)
// is not the run's: the sink returns the caller's cancellation"; Run: "when
// ctx was cancelled, an error for which errors.Is(err, context.Canceled) ...
// holds — even if a source had failed before".
//
// A source that fails after the caller's ctx ended (both a standard context
// and one of the caller's own type): the sink returns the cancellation.
func TestReview85SourceFailureAfterCancellationIsTheCancellation(t *testing.T) {
	for _, ctxKind := range []string{ctxtest.Std, ctxtest.Own} {
		for _, kind := range []string{"seq2", "func"} {
			t.Run(fmt.Sprintf("%s/%s", ctxKind, kind), func(t *testing.T) {
				ctx, cancel := ctxtest.New(ctxKind)
				var s stage.Stream[int]
				if kind == "seq2" {
					s = source.Seq2(func(yield func(int, error) bool) {
						if !yield(1, nil) {
							return
						}
						cancel()
						yield(0, errR85Boom)
					})
				} else {
					i := 0
					s = source.Func(func(context.Context) (int, error) {
						i++
						if i == 1 {
							return 1, nil
						}
						cancel()
						return 0, errR85Boom
					})
				}
				var err error
				runcheck.Run(t, "slice", func() { _, err = sink.Slice(ctx, s) })
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err %v, want the cancellation", err)
				}
			})
		}
	}
}

// Chan: "a run that stops early (an error, sink.First, a break) leaves the
// rest in ch: Chan never closes ch and never drains it. A receive is
// abandoned when the run ends."
//
// First over a Merge of a waiting channel source and a slice: the blocked
// receive is abandoned; a value sent afterwards stays in ch; and a break out
// of All over a bare Chan after two values leaves the others.
func TestReview85ChanReceiveAbandonedLeavesLaterValues(t *testing.T) {
	ch := make(chan int, 1)
	var v int
	var ok bool
	var err error
	runcheck.Run(t, "first", func() {
		v, ok, err = sink.First(context.Background(), stage.Merge(source.Chan(ch), source.Slice([]int{7})))
	})
	if v != 7 || !ok || err != nil {
		t.Fatalf("First = %v %v %v", v, ok, err)
	}
	ch <- 1
	if len(ch) != 1 {
		t.Fatalf("a value sent after the run was taken")
	}
	<-ch

	ch2 := make(chan int, 10)
	for i := range 10 {
		ch2 <- i
	}
	var got []int
	runcheck.Run(t, "all", func() {
		for v, err := range sink.All(context.Background(), source.Chan(ch2)) {
			if err != nil {
				t.Errorf("err %v", err)
			}
			got = append(got, v)
			if len(got) == 2 {
				break
			}
		}
	})
	if fmt.Sprint(got) != "[0 1]" || len(ch2) != 8 {
		t.Fatalf("got %v, %d left in ch, want 8", got, len(ch2))
	}
	close(ch2)
	var rest []int
	runcheck.Run(t, "slice", func() { rest, err = sink.Slice(context.Background(), source.Chan(ch2)) })
	if fmt.Sprint(rest) != "[2 3 4 5 6 7 8 9]" || err != nil {
		t.Fatalf("second run: %v %v", rest, err)
	}
}

// Seq: "when the run ends, early or not, the iterator is stopped (its
// deferred calls run) before the sink returns"; All: "A panic in the loop
// body stops the run the same way and then continues".
//
// The panic out of an All loop over Seq (bare, and through a stage) reaches
// the caller only after the iterator's deferred calls ran, with its own value.
func TestReview85SeqStoppedBeforeAPanicOutOfAllContinues(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, staged := range []bool{false, true} {
			var deferred atomic.Bool
			seq := func(yield func(int) bool) {
				defer deferred.Store(true)
				for i := 0; ; i++ {
					if !yield(i) {
						return
					}
				}
			}
			s := source.Seq(iter.Seq[int](seq))
			if staged {
				s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3), stage.Buffer(2))
			}
			type token struct{}
			var rec any
			var sawDeferred bool
			runcheck.Run(t, "all", func() {
				defer func() {
					rec = recover()
					sawDeferred = deferred.Load()
				}()
				for _, err := range sink.All(context.Background(), s) {
					if err != nil {
						t.Errorf("err %v", err)
					}
					panic(token{})
				}
			})
			if _, ok := rec.(token); !ok {
				t.Fatalf("staged %v: recovered %#v, want the body's own panic value", staged, rec)
			}
			if !sawDeferred {
				t.Fatalf("staged %v: the panic continued before the iterator's deferred calls ran", staged)
			}
		}
	})
}

// Seq2: "The first error ends the run with a *stage.SourceError after the
// items before it went through". First: "what happens in the run after the
// first item (a worker that read ahead into a failing source, say) never
// changes it".
//
// The first item's call waits until the source has produced its error (a
// second worker read ahead into it): First still returns the item, and a
// Slice still gets it before the SourceError.
func TestReview85ReadAheadIntoAFailingSource(t *testing.T) {
	for _, sinkKind := range []string{"first", "slice"} {
		t.Run(sinkKind, func(t *testing.T) {
			reached := make(chan struct{})
			seq2 := func(yield func(string, error) bool) {
				if !yield("one", nil) {
					return
				}
				close(reached)
				yield("", errR85Boom)
			}
			s := stage.Map(source.Seq2(seq2), func(_ context.Context, v string) (string, error) {
				r85Wait(t, "source error", reached)
				return strings.ToUpper(v), nil
			}, stage.Workers(4))
			switch sinkKind {
			case "first":
				var v string
				var ok bool
				var err error
				runcheck.Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
				if v != "ONE" || !ok || err != nil {
					t.Fatalf("First = %q %v %v, want ONE true nil", v, ok, err)
				}
			default:
				var got []string
				var err error
				runcheck.Run(t, "slice", func() { got, err = sink.Slice(context.Background(), s) })
				var se *stage.SourceError
				if fmt.Sprint(got) != "[ONE]" || !errors.As(err, &se) || !errors.Is(err, errR85Boom) {
					t.Fatalf("Slice = %v %v", got, err)
				}
			}
		})
	}
}

// Func: "never concurrently, and with the run's context" and "Each run calls
// the same next"; Source: "never once the run is cancelled or its input has
// ended". A next that waits on ctx while a ForEach callback cancels the
// caller's ctx: next sees its ctx end, is not called again, the sink
// returns the cancellation.
func TestReview85FuncWaitingNextSeesTheCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), r85Key{}, "v"))
	defer cancel()
	var calls, afterCancel atomic.Int32
	var cancelled atomic.Bool
	next := func(nctx context.Context) (int, error) {
		if cancelled.Load() {
			afterCancel.Add(1)
		}
		if nctx.Value(r85Key{}) != "v" {
			t.Errorf("next's ctx is not derived from the caller's")
		}
		n := calls.Add(1)
		if n <= 3 {
			return int(n), nil
		}
		<-nctx.Done() // waits: honours ctx
		return 0, nctx.Err()
	}
	var got []int
	var err error
	runcheck.Run(t, "foreach", func() {
		err = sink.ForEach(ctx, source.Func(next), func(_ context.Context, v int) error {
			got = append(got, v)
			if v == 3 {
				cancelled.Store(true)
				cancel()
			}
			return nil
		})
	})
	if !errors.Is(err, context.Canceled) || fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("ForEach = %v, %v", got, err)
	}
	if afterCancel.Load() != 0 {
		t.Fatalf("next called %d times after the cancellation", afterCancel.Load())
	}
}

type r85Key struct{}

// r85NilDoneCtx is a context type of the caller's that is never cancelled:
// its Done is nil, as context.Background's.
type r85NilDoneCtx struct{ context.Context }

func (r85NilDoneCtx) Done() <-chan struct{} { return nil }
func (r85NilDoneCtx) Err() error            { return nil }

// Package sink: "returns only when every goroutine of the run has exited"
// for a caller's ctx of a type the context package cannot see into that is
// never done (nil Done), and one that is done before the run ("from the
// moment its Done channel is closed the run takes no new step"; "none after
// the run was cancelled").
func TestReview85UserContextsNeverDoneAndDoneBefore(t *testing.T) {
	var calls atomic.Int32
	mk := func() stage.Stream[int] {
		i := 0
		return stage.Map(source.Func(func(context.Context) (int, error) {
			calls.Add(1)
			if i == 50 {
				return 0, io.EOF
			}
			i++
			return i, nil
		}), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3))
	}
	var n int
	var err error
	runcheck.Run(t, "count", func() { n, err = sink.Count(r85NilDoneCtx{context.Background()}, mk()) })
	if n != 50 || err != nil {
		t.Fatalf("Count = %d, %v", n, err)
	}
	u := ctxtest.NewDoneCtx()
	u.Cancel()
	calls.Store(0)
	runcheck.Run(t, "count", func() { n, err = sink.Count(u, mk()) })
	if n != 0 || !errors.Is(err, context.Canceled) || calls.Load() != 0 {
		t.Fatalf("Count over a done ctx = %d, %v, %d calls of next", n, err, calls.Load())
	}
	var first int
	var ok bool
	runcheck.Run(t, "first", func() {
		first, ok, err = sink.First(r85NilDoneCtx{context.Background()}, source.Seq2(func(yield func(int, error) bool) {
			yield(4, nil)
		}))
	})
	if first != 4 || !ok || err != nil {
		t.Fatalf("First = %d %v %v", first, ok, err)
	}
}

// A pipeline's output as another's source: source.Seq2(sink.All(ctx, inner)).
// Seq2: "when the run ends, early or not, the iterator is stopped (its
// deferred calls run) before the sink returns"; All: "Breaking out of the loop
// stops the run; the loop statement ends only once every goroutine of the run
// has exited". So the inner run has ended, every goroutine of it gone, when
// the outer sink returns: after First, after an ErrStop, after a cancellation
// (the inner source waits on ctx), and the inner run's failure is the outer
// run's *SourceError after the items before it.
func TestReview85PipelineAsASourceOfAnother(t *testing.T) {
	var innerNext atomic.Int32
	inner := func(n int, fail bool) stage.Stream[int] {
		i := 0
		return stage.Map(source.Func(func(ctx context.Context) (int, error) {
			innerNext.Add(1)
			if i == n {
				if fail {
					return 0, errR85Boom
				}
				<-ctx.Done() // waits for more, as a queue would
				return 0, ctx.Err()
			}
			i++
			return i, nil
		}), func(_ context.Context, v int) (int, error) { return v * 10, nil }, stage.Workers(3))
	}
	double := func(_ context.Context, v int) (int, error) { return v * 2, nil }

	// First.
	ctx := context.Background()
	var v int
	var ok bool
	var err error
	runcheck.Run(t, "first", func() {
		v, ok, err = sink.First(ctx, stage.Map(source.Seq2(sink.All(ctx, inner(1000, false))), double, stage.Workers(2)))
	})
	if !ok || err != nil || v%20 != 0 || v == 0 {
		t.Fatalf("First = %d %v %v", v, ok, err)
	}

	// ErrStop after 5.
	var got []int
	runcheck.Run(t, "foreach", func() {
		err = sink.ForEach(ctx, source.Seq2(sink.All(ctx, inner(1000, false))), func(_ context.Context, v int) error {
			got = append(got, v)
			if len(got) == 5 {
				return stage.ErrStop
			}
			return nil
		})
	})
	if err != nil || len(got) != 5 {
		t.Fatalf("ForEach = %v, %v", got, err)
	}

	// Cancellation while the inner source waits for more.
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got = nil
	runcheck.Run(t, "foreach", func() {
		err = sink.ForEach(cctx, source.Seq2(sink.All(cctx, inner(3, false))), func(_ context.Context, v int) error {
			got = append(got, v)
			if len(got) == 3 {
				cancel()
			}
			return nil
		})
	})
	if !errors.Is(err, context.Canceled) || len(got) != 3 {
		t.Fatalf("ForEach = %v, %v", got, err)
	}

	// The inner run fails after 4 items: the outer run gets them all, then
	// its SourceError wrapping the inner run's.
	runcheck.Run(t, "slice", func() {
		got, err = sink.Slice(ctx, stage.Map(source.Seq2(sink.All(ctx, inner(4, true))), double, stage.Workers(3), stage.Ordered()))
	})
	var se *stage.SourceError
	sort.Ints(got)
	if fmt.Sprint(got) != "[20 40 60 80]" || !errors.As(err, &se) || !errors.Is(err, errR85Boom) {
		t.Fatalf("Slice = %v, %v: want the 4 items before the inner failure, then its error", got, err)
	}
}

// Until: "Once stop is done, no source upstream is asked for another item";
// source package: a source takes an item "only when a stage, or the sink, is
// ready to work on it". A stop done before the run: no Read, no call of next,
// no step of the iterator, no receive; the sink returns nil with no item.
func TestReview85UntilDoneBeforeTheRunTakesNothing(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	drain()
	var calls atomic.Int32
	r := &r85Reader{chunks: []r85Chunk{{data: []byte("a\nb\n")}}}
	ch := make(chan int, 2)
	ch <- 1
	ch <- 2
	id := func(_ context.Context, v int) (int, error) { calls.Add(1); return v, nil }
	streams := map[string]stage.Stream[int]{
		"func": source.Func(func(context.Context) (int, error) { calls.Add(1); return 1, nil }),
		"seq": source.Seq(func(yield func(int) bool) {
			calls.Add(1)
			yield(1)
		}),
		"seq2": source.Seq2(func(yield func(int, error) bool) {
			calls.Add(1)
			yield(1, nil)
		}),
		"chan":  source.Chan(ch),
		"lines": stage.Map(source.Lines(r), func(_ context.Context, v string) (int, error) { calls.Add(1); return len(v), nil }),
	}
	for name, s := range streams {
		for _, staged := range []bool{false, true} {
			in := s
			if staged {
				in = stage.Map(s, id, stage.Workers(3))
			}
			var got []int
			var err error
			runcheck.Run(t, name, func() { got, err = sink.Slice(context.Background(), stage.Until(in, stop)) })
			if len(got) != 0 || err != nil {
				t.Errorf("%s staged %v: %v, %v", name, staged, got, err)
			}
		}
	}
	if calls.Load() != 0 || len(ch) != 2 || r.reads != 0 {
		t.Fatalf("a drained run took items: %d calls, %d left in ch, %d reads", calls.Load(), len(ch), r.reads)
	}
}
